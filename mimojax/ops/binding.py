"""Keys and binding algebra of the VSAs used by MIMONets (App. A.1, Table A1).

* MAP (MIMOFormer): bipolar keys, binding and unbinding are the Hadamard product.
* HRR (MIMOConv): binding is circular convolution of a key with each pixel's channel vector
  (position-wise HRR, PWHRR, Eq. 5); Plate's approximate inverse is circular correlation.
* MBAT (MIMOConv unbinding): a matrix per channel applied after pooling (Eq. 6).

Plus sampling of keys and the binding-key regulariser of App. B.3 (Eq. 26). Pure functions:
randomness only enters through explicit ``rng`` arguments.
"""

import jax
import jax.numpy as jnp
import numpy as np


def rademacher_keys(rng, shape, dtype=jnp.float32):
  """i.i.d. bipolar (+-1, each with probability 1/2) keys, the MAP keys of App. A.1."""
  return jnp.where(jax.random.bernoulli(rng, 0.5, shape), 1, -1).astype(dtype)


def gaussian_keys(rng, shape, dtype=jnp.float32):
  """i.i.d. N(0, 1/D) keys with D = ``shape[-1]`` (the HRR keys of Sec. 3 / App. A.1)."""
  shape = tuple(shape)
  if not shape or shape[-1] < 1:
    raise ValueError(f"shape must end in the key dimension D >= 1, got {shape}")
  return (jax.random.normal(rng, shape, jnp.float32) / np.sqrt(shape[-1])).astype(dtype)


def map_bind(x, keys):
  """MAP binding: Hadamard product ``x * keys`` on the last axis (keys broadcast)."""
  return x * keys


def map_unbind(s, keys):
  """MAP unbinding: Hadamard product with the same keys.

  Exact inverse of :func:`map_bind` for bipolar keys (``keys * keys == 1``); for other keys
  it is the transpose, not the inverse.
  """
  return s * keys


def _operands(x, keys, axis: int):
  """Normalises ``axis`` to a negative index valid for both operands (they align right)."""
  if not -x.ndim <= axis < x.ndim:
    raise ValueError(f"axis = {axis} is out of range for x of shape {x.shape}")
  neg_axis = axis - x.ndim if axis >= 0 else axis
  if keys.ndim < -neg_axis or keys.shape[neg_axis] != x.shape[neg_axis]:
    raise ValueError(
        f"keys of shape {keys.shape} must broadcast against x of shape {x.shape} with the "
        f"key dimension {x.shape[neg_axis]} at axis {neg_axis}")
  out_dtype = jnp.result_type(x, keys)
  if not jnp.issubdtype(out_dtype, jnp.floating):
    out_dtype = jnp.float32
  compute_dtype = jnp.promote_types(out_dtype, jnp.float32)
  return x.astype(compute_dtype), keys.astype(compute_dtype), neg_axis, out_dtype


def hrr_bind(x, keys, axis: int = -1):
  """HRR binding: circular convolution ``y[i] = sum_k keys[k] x[(i - k) mod D]`` along ``axis``.

  Computed as the product with the D x D :func:`circulant` of the keys, in float32 (or
  wider) at highest precision: D^2 multiply-adds per vector, as the paper counts them, and
  no FFT (XLA:CPU's FFT fails a layout check on batch-sharded operands). ``keys``
  broadcast against ``x`` (right-aligned) and must have size ``D`` at the same (negative)
  axis. PWHRR (Eq. 5) is ``hrr_bind`` over the channel axis of NHWC images, with keys shaped
  e.g. ``(N, 1, 1, C)`` against ``x`` of shape ``(B, N, H, W, C)``.
  """
  return _circulant_product(x, keys, axis, "...j,...ij->...i")


def circulant(keys):
  """Circulant matrices ``C[..., i, j] = keys[..., (i - j) mod D]`` of keys ``(..., D)``, so
  that ``C @ x`` is :func:`hrr_bind` of ``x`` with ``keys`` on the last axis (Eq. 5 as the
  D x D product the paper's MAC count assumes)."""
  keys = jnp.asarray(keys)
  d = keys.shape[-1]
  index = (jnp.arange(d)[:, None] - jnp.arange(d)[None, :]) % d
  return keys[..., index]


def hrr_unbind(s, keys, axis: int = -1):
  """HRR unbinding: circular correlation ``y[i] = sum_k keys[k] s[(i + k) mod D]``.

  Binding with Plate's involution ``keys[-k mod D]`` (the transposed circulant), the
  approximate inverse of :func:`hrr_bind`: exact when ``|rfft(keys)| == 1`` everywhere
  (unitary keys), and for N(0, 1/D) keys ``hrr_unbind(hrr_bind(x, a), a) = x + O(1/sqrt(D))``
  noise.
  """
  return _circulant_product(s, keys, axis, "...j,...ji->...i")


def _circulant_product(x, keys, axis: int, subscripts: str):
  """``einsum(subscripts, x, circulant(keys))`` along ``axis`` (moved last and back)."""
  x, keys, ax, out_dtype = _operands(jnp.asarray(x), jnp.asarray(keys), axis)
  y = jnp.einsum(subscripts, jnp.moveaxis(x, ax, -1), circulant(jnp.moveaxis(keys, ax, -1)),
                 precision=jax.lax.Precision.HIGHEST)
  return jnp.moveaxis(y, -1, ax).astype(out_dtype)


def torch_pwhrr_key_to_hrr(w):
  """Converts official PyTorch PWHRR keys to :func:`hrr_bind` keys.

  The official code (IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/superposition.py``,
  ``pointwiseConvThroughChannels``) stores keys as a ``Conv1d`` weight (cross-correlation,
  circular padding ``C/2``, output index 0 dropped). That equals circular convolution with the
  permuted key ``k[..., n] = w[..., (C/2 - 1 - n) mod C]``, which this returns. ``w`` is
  ``(..., C)`` (e.g. the torch weight ``(N, 1, C)`` squeezed to ``(N, C)``), ``C`` even.
  """
  c = w.shape[-1]
  if c % 2:
    raise ValueError(f"key dimension C must be even for the torch PWHRR layout, got {c}")
  index = (c // 2 - 1 - np.arange(c)) % c
  return w[..., index]


def mbat_unbind(h, matrix):
  """MBAT unbinding (Eq. 6): ``h[..., d] @ matrix[..., d, d']``.

  ``matrix`` is one ``(D, D')`` matrix or a stack ``(..., D, D')`` (e.g. one per channel,
  ``(N, D, D')`` against ``h`` of shape ``(B, N, D)``) broadcasting against ``h``'s leading
  axes.
  """
  if matrix.ndim < 2 or h.ndim < 1 or matrix.shape[-2] != h.shape[-1]:
    raise ValueError(
        f"matrix of shape {matrix.shape} must be (..., D, D') with D = h.shape[-1] for h of "
        f"shape {h.shape}")
  return jnp.einsum("...d,...de->...e", h, matrix)


def superpose(x, axis: int):
  """Superposition (bundling) by summation over the channel ``axis``."""
  return jnp.sum(x, axis=axis)


def key_orthonormality_penalty(keys):
  """Binding-key regulariser of App. B.3, Eq. 26 with mu = 1 (scale it by mu outside).

  For keys ``(N, D)`` (rows a_i): mean over the N(N-1)/2 pairs i < j of the squared cosine
  similarity, plus the mean over i of ``(||a_i|| - 1)^2``. The first term is 0 for N = 1.
  Rows are normalised as ``a / max(||a||, 1e-12)`` (the official code's ``F.normalize``).
  """
  if keys.ndim != 2:
    raise ValueError(f"keys must have shape (N, D), got shape {keys.shape}")
  num = keys.shape[0]
  keys = keys.astype(jnp.promote_types(keys.dtype, jnp.float32))
  norms = jnp.linalg.norm(keys, axis=-1)
  norm_term = jnp.mean((norms - 1.0) ** 2)
  if num < 2:
    return norm_term
  unit = keys / jnp.maximum(norms, 1e-12)[:, None]
  cosine = jnp.matmul(unit, unit.T, precision=jax.lax.Precision.HIGHEST)
  upper = jnp.triu(cosine, k=1)
  return jnp.sum(upper**2) / (num * (num - 1) / 2) + norm_term
