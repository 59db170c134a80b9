"""Isometry regularisers for convolution and dense kernels (App. B.2, Eq. 23-25).

A linear layer preserves inner products iff it is an isometry. For a convolution W this is
encouraged by penalising ``1/2 ||Conv(W, W) - delta||_F^2`` where ``Conv(U, V)`` is the
zero-padded self-correlation of Eq. 25,

    O[a, b, c, d] = sum_{r, s, t} U[a, r, c*stride + s - (kh-1), d*stride + t - (kw-1)] V[b, r, s, t],

(out-of-range U entries are 0) and ``delta`` is the identity at the spatial centre. Following
the official code (IBM/multiple-input-multiple-output-nets:
``MIMOConv/src/models/superwideisonet.py``, ``ortho_conv``), the Gram is taken on W (torch
layout ``(C_o, C_i, k, k)``) when ``C_i >= C_o`` and on ``W^T`` (first two axes swapped)
otherwise; for ``C_i == C_o`` the code uses W where the paper's text says ``W^T``. Gram
shapes are ``(c, c, 5, 5)`` for a 3x3 kernel at stride 1, ``(c, c, 3, 3)`` at stride 2 and
``(c, c, 1, 1)`` for 1x1 kernels, with ``c = min(C_i, C_o)``.

Precision: the penalty is computed in float32 (float64 if the kernel is float64) with
``Precision.HIGHEST`` convolutions; the official code sums the per-layer terms in float64.
The scale gamma (1e-4 in the official code) is applied by the caller.
"""

from typing import Callable

import jax
import jax.numpy as jnp


def _pair(name: str, value) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
  if (not isinstance(pair, (tuple, list)) or len(pair) != 2
      or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)):
    raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
  return tuple(pair)


def _delta_penalty(gram):
  """``1/2 ||gram - delta||_F^2`` for gram ``(c, c, gh, gw)``, delta = I_c at the centre."""
  c, _, gh, gw = gram.shape
  delta = jnp.zeros(gram.shape, gram.dtype).at[:, :, gh // 2, gw // 2].set(
      jnp.eye(c, dtype=gram.dtype))
  return 0.5 * jnp.sum((gram - delta) ** 2)


def conv_gram(kernel, stride=1):
  """The Gram ``Conv(W, W)`` (or ``Conv(W^T, W^T)``) of Eq. 25 for an HWIO kernel.

  Returns ``(c, c, gh, gw)`` with ``c = min(C_i, C_o)`` and ``g = (k - 1) // stride * 2 + 1``
  (so the centre is the zero shift). ``stride`` must divide ``k - 1`` per spatial axis,
  otherwise the zero shift is not on the strided grid and no identity target exists.
  """
  if kernel.ndim != 4:
    raise ValueError(f"kernel must be HWIO with 4 axes, got shape {kernel.shape}")
  kh, kw, c_in, c_out = kernel.shape
  strides = _pair("stride", stride)
  for k, s in zip((kh, kw), strides):
    if (k - 1) % s:
      raise ValueError(f"stride {strides} must divide kernel size - 1 for kernel shape "
                       f"{kernel.shape} (the identity target needs the zero shift)")
  kernel = kernel.astype(jnp.promote_types(kernel.dtype, jnp.float32))
  if c_in >= c_out:  # W: rows are the C_o output filters, reduced over C_i.
    specs = ("HWCN", "HWIO", "NCHW")
  else:  # W^T: rows are the C_i input slices, reduced over C_o.
    specs = ("HWNC", "HWOI", "NCHW")
  return jax.lax.conv_general_dilated(
      kernel, kernel, window_strides=strides,
      padding=((kh - 1, kh - 1), (kw - 1, kw - 1)), dimension_numbers=specs,
      precision=jax.lax.Precision.HIGHEST, preferred_element_type=kernel.dtype)


def conv_isometry_penalty(kernel, stride=1):
  """Isometry term ``1/2 ||Conv(W, W) - delta||_F^2`` (Eq. 23/24) for an HWIO kernel.

  ``stride`` is the layer's stride (int or pair). It is 0 for a delta kernel whose centre
  is orthogonal, and equals :func:`dense_isometry_penalty` for 1x1 kernels.
  """
  return _delta_penalty(conv_gram(kernel, stride))


def dense_isometry_penalty(w):
  """The 1x1 case for a dense kernel ``w`` in Flax layout ``(C_i, C_o)``.

  With the torch weight ``W = w^T`` of shape ``(C_o, C_i)``: ``1/2 ||W W^T - I||^2`` when
  ``C_i >= C_o`` and ``1/2 ||W^T W - I||^2`` otherwise, i.e. always the smaller Gram.
  """
  if w.ndim != 2:
    raise ValueError(f"w must have shape (C_i, C_o), got shape {w.shape}")
  w = w.astype(jnp.promote_types(w.dtype, jnp.float32))
  c_in, c_out = w.shape
  hi = jax.lax.Precision.HIGHEST
  gram = jnp.matmul(w.T, w, precision=hi) if c_in >= c_out else jnp.matmul(w, w.T, precision=hi)
  return 0.5 * jnp.sum((gram - jnp.eye(gram.shape[0], dtype=gram.dtype)) ** 2)


def isometry_penalty(params, include: Callable[[str], "int | tuple[int, int] | bool | None"]):
  """Sums the isometry terms over the kernels of a parameter pytree that ``include`` selects.

  ``include`` is called once per leaf with its path joined by ``'/'`` (e.g.
  ``"stage_1/block_0/conv1/kernel"`` for nested dicts of Flax params) and returns the
  layer's **stride** to include the leaf, or ``None``/``False`` to skip it (``True`` means
  stride 1). Selected 4-D leaves are HWIO conv kernels (:func:`conv_isometry_penalty` at
  that stride); selected 2-D leaves are dense kernels (:func:`dense_isometry_penalty`,
  stride must be 1). The official code selects the residual blocks' convs and the downsample
  1x1 convs, and excludes the stem, the binding keys and the unbinding layer. Returns a
  float32 scalar (0 when nothing is selected).
  """
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    stride = include(name)
    if stride is None or stride is False:
      continue
    stride = 1 if stride is True else stride
    if leaf.ndim == 4:
      term = conv_isometry_penalty(leaf, stride)
    elif leaf.ndim == 2:
      if _pair(f"stride of {name}", stride) != (1, 1):
        raise ValueError(f"stride of dense kernel {name} must be 1, got {stride!r}")
      term = dense_isometry_penalty(leaf)
    else:
      raise ValueError(
          f"selected leaf {name} must be a 4-D HWIO or 2-D dense kernel, got shape {leaf.shape}")
    total = total + term.astype(jnp.float32)
  return total
