"""Softmax attention, random-feature maps, FAVOR+ and FAVOR+S (Sec. 4.1, App. C).

Tensors follow the Flax layout: ``q, k, v`` are ``(..., L, H, D)``; masks are ``(..., L)``
booleans with True marking a real token.

Feature maps (``kernel_fn``)
  The FAVOR functions take ``kernel_fn(x, is_query=...)`` mapping ``(..., D)`` to
  non-negative features ``(..., R)``, position by position; pass a projection with
  ``functools.partial(relu_kernel, projection=P)``. A kernel may also multiply its output by a
  positive factor that cancels between the numerator and the normaliser (``exp_kernel`` does,
  to stay finite): for keys (``is_query=False``) one factor per leading index, shared by the
  last two non-feature axes (positions and heads); for queries any factor per position. The
  FAVOR functions call the kernel on ``(..., H, L, D)`` (heads before positions, the layout
  the matrix products want); FAVOR+S calls it once per bundled tensor with the bundle axis
  folded into the position axis, so a key factor is shared by all bundles.

Padding
  A padded key position (mask False) contributes nothing to ``A`` nor to the normaliser ``B``:
  the normaliser is computed as extra value columns (see ``_linear_attention``) and the whole
  value row of a padded position is zeroed. The official code instead zeroes padded keys
  *before* the feature map, so with the ReLU kernel every pad adds ``eps * 1_R`` to ``B``
  (IBM/multiple-input-multiple-output-nets: ``MIMOFormer/code/attention_performer.py``);
  callers who want that behaviour multiply ``k`` and ``v`` by the mask themselves and pass
  ``mask=None``. Queries are never masked (as in the official code).
  A query whose normaliser is 0 (no real key, or a feature map such as DPFP that vanishes)
  has numerator 0 too, and its output is 0 rather than NaN.

Causal cost
  ``causal=True`` evaluates the prefix sums over ``j <= i`` in chunks of ``_CAUSAL_CHUNK``
  positions: a masked quadratic form inside each chunk plus an exclusive prefix sum of the
  per-chunk ``(R, D)`` states. Time is ``O(L (C R + C D + R D))`` and memory
  ``O(L R D / C + L C)`` per head and sequence (C = chunk length), never ``O(L R D)``. For
  FAVOR+S the intra-chunk part costs ``O(M N L C R)`` per group (one masked score block per
  query bundle and key bundle), so causal FAVOR+S saves on the feature maps and states only.
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp

_CAUSAL_CHUNK = 64


def _check_qkv(q, k, v, mask):
  """Validates ``(..., L, H, D)`` inputs; raises ValueError naming the mismatched sizes."""
  if q.ndim < 3:
    raise ValueError(f"q must have shape (..., L, H, D), got {q.shape}")
  if k.shape != q.shape:
    raise ValueError(f"k shape {k.shape} must equal q shape {q.shape}")
  if v.shape[:-1] != k.shape[:-1]:
    raise ValueError(f"v shape {v.shape} must match k shape {k.shape} except the last axis")
  if mask is not None and tuple(mask.shape) != q.shape[:-2]:
    raise ValueError(f"mask shape {tuple(mask.shape)} must equal q.shape[:-2] = {q.shape[:-2]}")


def softmax_attention(q, k, v, mask=None, causal=False, *, dropout_fn=None):
  """Scaled dot-product attention ``softmax(q k^T / sqrt(D)) v`` (Eq. 10, left-hand side).

  Args:
    q, k: ``(..., L, H, D)``; v: ``(..., L, H, Dv)``.
    mask: optional ``(..., L)`` bool, True = real key; padded keys get zero weight.
    causal: if True, query i only attends to keys j <= i.
    dropout_fn: optional map applied to the attention weights ``(..., H, L, L)`` after the
      softmax (attention dropout; the caller owns the rng), e.g. inverted dropout.

  Returns:
    ``(..., L, H, Dv)``. A query with no admissible key attends uniformly (no NaN).
  """
  _check_qkv(q, k, v, mask)
  scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(q.shape[-1])
  allowed = jnp.ones(scores.shape[-2:], bool)
  if causal:
    allowed = jnp.tril(allowed)
  if mask is not None:
    allowed = allowed & mask[..., None, None, :]
  scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
  weights = jax.nn.softmax(scores, axis=-1)
  if dropout_fn is not None:
    weights = dropout_fn(weights)
  return jnp.einsum("...hqk,...khd->...qhd", weights, v)


def _orthonormal_rows(g):
  """Gram-Schmidt (with one re-orthogonalisation pass) on the rows of ``g`` ``(..., D, D)``.

  The rows of a Gaussian matrix orthonormalised in order are Haar-distributed, as the Q
  factor of its QR decomposition. Written as a scan of matrix-vector products rather than
  ``jnp.linalg.qr``: XLA's CPU QR can deadlock when several CPU devices run it at once.
  """
  def add_row(q, i):
    v = g[..., i, :]
    for _ in range(2):  # rows of q not yet filled are zero and project nothing
      v = v - jnp.einsum("...j,...jd->...d", jnp.einsum("...jd,...d->...j", q, v), q)
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    return q.at[..., i, :].set(v), None

  q, _ = jax.lax.scan(add_row, jnp.zeros_like(g), jnp.arange(g.shape[-1]))
  return q


def gaussian_orthogonal_matrix(rng, num_features, dim):
  """Performer random features ``P`` of shape ``(R, D)`` (App. C.1, orthogonal features).

  Rows come in blocks of ``D`` orthonormal directions (a Gaussian ``D x D`` matrix with
  its rows orthonormalised, i.e. its Q factor); the last block is truncated when ``D`` does
  not divide ``R``. Each row is rescaled by the norm of an independent Gaussian ``D``-vector
  (chi_D distributed), so every row is marginally ``N(0, I_D)`` (Performer ``scaling=0``).
  """
  if num_features < 1 or dim < 1:
    raise ValueError(f"num_features and dim must be >= 1, got num_features={num_features}, "
                     f"dim={dim}")
  num_blocks = -(-num_features // dim)
  block_rng, norm_rng = jax.random.split(rng)
  gaussians = jax.random.normal(block_rng, (num_blocks, dim, dim))
  rows = _orthonormal_rows(gaussians).reshape(num_blocks * dim, dim)[:num_features]
  norms = jnp.linalg.norm(jax.random.normal(norm_rng, (num_features, dim)), axis=-1)
  return rows * norms[:, None]


def relu_kernel(x, projection, eps=1e-3, is_query=False):
  """ReLU random features ``phi(x) = ReLU(D^-1/4 x P^T) + eps`` (App. C.2, official code).

  ``x`` is ``(..., D)`` and ``projection`` ``(R, D)``; returns ``(..., R)``. The official
  MIMOFormer/Performer code also divides q and k by ``D^1/4`` before calling the kernel (an
  effective ``D^-1/2``; FAVOR+S adds ``(MN)^-1/2``); that pre-scaling belongs to the
  attention module, not to this function. No ``1/sqrt(R)`` factor (it cancels in the
  normalised output; only ``eps`` feels it). ``is_query`` is unused: nothing to stabilise.
  """
  del is_query
  scaled = projection * x.shape[-1] ** -0.25  # (R, D): cheaper than scaling the features
  return jax.nn.relu(jnp.einsum("...d,rd->...r", x, scaled)) + eps


def exp_kernel(x, projection, is_query=False):
  """Positive softmax random features (Performer FAVOR+, App. C.1 Eq. 30).

  ``phi(x)_r = exp(w_r . x' - |x'|^2 / 2 - c) / sqrt(R)`` with ``x' = D^-1/4 x``, so that
  ``E[phi(q) . phi(k)] = exp(q . k / sqrt(D)) * exp(-c_q - c_k)``. The stabiliser ``c`` is
  gradient-stopped and cancels exactly in FAVOR's ratio (module docstring). For keys it is the
  largest exponent over the last three axes (positions, heads, features; ``x`` is
  ``(..., L, H, D)`` or ``(..., H, L, D)``) for each leading index; for queries
  (``is_query=True``) the largest over the features of each position, as in the Performer
  code, so that no query's features all underflow to 0 when query norms differ widely.
  """
  if x.ndim < 3:
    raise ValueError(f"exp_kernel needs x of shape (..., L, H, D), got {x.shape}")
  x = x * x.shape[-1] ** -0.25
  exponent = (jnp.einsum("...d,rd->...r", x, projection)
              - 0.5 * jnp.sum(x * x, axis=-1, keepdims=True))
  axes = -1 if is_query else (-3, -2, -1)
  shift = jax.lax.stop_gradient(jnp.max(exponent, axis=axes, keepdims=True))
  return jnp.exp(exponent - shift) / math.sqrt(projection.shape[0])


def dpfp_kernel(x, nu=1, is_query=False):
  """Deterministic parameter-free projection (DPFP, Schlag et al. 2021), ``2 D nu`` features.

  With ``r = [ReLU(x), ReLU(-x)]`` (length 2D), feature ``(j - 1) 2D + i`` is
  ``r_i * r_{(i + j) mod 2D}`` for ``j = 1..nu`` (the paper's Eq. for DPFP_nu). ``is_query``
  is unused.
  """
  del is_query
  if nu < 1 or nu >= 2 * x.shape[-1]:
    raise ValueError(f"nu must be in [1, 2D - 1] = [1, {2 * x.shape[-1] - 1}], got {nu}")
  r = jnp.concatenate([jax.nn.relu(x), jax.nn.relu(-x)], axis=-1)
  return jnp.concatenate([r * jnp.roll(r, -j, axis=-1) for j in range(1, nu + 1)], axis=-1)


def _rescaled(num, den):
  """``num`` and ``den`` divided by the (gradient-stopped) largest ``den`` of each query row.

  The ratio is unchanged, but ``d(1 / den) = -1 / den^2`` no longer overflows float32 when
  every key a query sees has tiny features (``exp_kernel``: exponents far below the key
  stabiliser), which would otherwise turn the whole gradient into NaN.
  """
  scale = jax.lax.stop_gradient(jnp.max(den, axis=-1, keepdims=True))
  scale = jnp.where(scale > 0, scale, 1)
  return num / scale, den / scale


def _safe_reciprocal(den):
  """``1 / den`` with 0 where ``den == 0``; gradient-safe.

  With non-negative features ``den == 0`` forces a zero numerator, so the output is 0, not NaN.
  """
  positive = den > 0
  return jnp.where(positive, 1 / jnp.where(positive, den, 1), 0)


def _features(kernel_fn, x, is_query):
  """``kernel_fn`` applied once to ``x`` of layout ``(..., H, S, L, D)``.

  S (bundles) is folded into the position axis, so the kernel sees ``(..., H, S*L, D)`` and a
  stabilising key factor constant over its last two non-feature axes is shared by all
  bundles. Returns ``(..., H, S, L, R)``.
  """
  phi = kernel_fn(x.reshape(x.shape[:-3] + (-1, x.shape[-1])), is_query=is_query)
  return phi.reshape(x.shape[:-1] + phi.shape[-1:])


def _chunked(x, chunk):
  """Zero-pads positions (axis -2) to a multiple of ``chunk``: ``(..., L, X) -> (..., T, C, X)``."""
  length = x.shape[-2]
  padded = -(-length // chunk) * chunk
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, padded - length), (0, 0)])
  return x.reshape(x.shape[:-2] + (padded // chunk, chunk, x.shape[-1]))


def _linear_attention(phi_q, phi_k, values, causal):
  """``out[n, i] = sum_m sum_j (phi_q[n, i] . phi_k[m, j]) values[m, j]`` (Eq. 19 / Eq. 31).

  Layout ``(..., H, S, L, X)``: ``phi_q`` ``(..., H, N, L, R)``, ``phi_k`` ``(..., H, M, L,
  R)``, ``values`` ``(..., H, M, L, E)``; returns ``(..., H, N, L, E)``. The callers append
  normaliser columns to the values (ones, or a one-hot of m), so numerator and normaliser
  ``B`` come out of the same two matrix products. Bidirectional: ``A = sum_{m,j} phi_k
  values^T`` is built once ((R, E) per head), then ``phi_q A``. Causal: sums over ``j <= i`` in
  chunks (module docstring).
  """
  if not causal:
    a_mat = jnp.einsum("...hmlr,...hmle->...hre", phi_k, values)
    return jnp.einsum("...hnlr,...hre->...hnle", phi_q, a_mat)
  length = phi_q.shape[-2]
  chunk = min(_CAUSAL_CHUNK, length)
  q_c, k_c, v_c = (_chunked(x, chunk) for x in (phi_q, phi_k, values))  # (..., H, S, T, C, X)
  states = jnp.einsum("...hmtcr,...hmtce->...htre", k_c, v_c)
  prefix = jnp.cumsum(states, axis=-3) - states  # exclusive: chunks strictly before t
  inter = jnp.einsum("...hntcr,...htre->...hntce", q_c, prefix)
  scores = jnp.einsum("...hntcr,...hmtsr->...hnmtcs", q_c, k_c)
  scores = jnp.where(jnp.tril(jnp.ones((chunk, chunk), bool)), scores, 0)
  intra = jnp.einsum("...hnmtcs,...hmtse->...hntce", scores, v_c)
  out = inter + intra
  return out.reshape(out.shape[:-3] + (-1, out.shape[-1]))[..., :length, :]


def _exact_kernel_attention(q_b, k_b, values, causal, key_real=None):
  """``out[n, i] = sum_m sum_j exp(q_b[n, i] . k_b[m, j] / sqrt(D)) values[m, j]``: the
  softmax kernel that positive random features estimate (Eq. 12; Eq. 20 for bundles),
  computed exactly in O(N M L^2) per head. Layout as :func:`_linear_attention`;
  ``key_real`` ``(..., M, L)`` marks real bundle positions (or None). Each query row is
  multiplied by exp(-its largest admissible score), a factor that cancels in the ratio.
  """
  scores = jnp.einsum("...hnid,...hmjd->...hnimj", q_b, k_b) / math.sqrt(q_b.shape[-1])
  length = q_b.shape[-2]
  allowed = jnp.ones((length, length), bool)
  allowed = (jnp.tril(allowed) if causal else allowed)[:, None, :]  # (i, m, j)
  if key_real is not None:
    allowed = allowed & key_real[..., None, None, None, :, :]
  scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
  shift = jax.lax.stop_gradient(jnp.max(scores, axis=(-2, -1), keepdims=True))
  weights = jnp.where(allowed, jnp.exp(scores - shift), 0)
  return jnp.einsum("...hnimj,...hmje->...hnie", weights, values)


def favor_attention(q, k, v, kernel_fn: Callable, mask=None, causal=False):
  """FAVOR+ linear attention (Eq. 10 / Eq. 31).

  ``out_i = phi(q_i) A / (phi(q_i) . B)`` with ``A = sum_j phi(k_j) v_j^T`` and
  ``B = sum_j phi(k_j)``; with ``causal=True`` the sums run over ``j <= i``.

  Args:
    q, k: ``(..., L, H, D)``; v: ``(..., L, H, Dv)``.
    kernel_fn: feature map ``kernel_fn(x, is_query)``, ``(..., D) -> (..., R)``, e.g.
      ``functools.partial(relu_kernel, projection=P)`` (module docstring).
    mask: optional ``(..., L)`` bool, True = real token. Padded keys contribute nothing to
      ``A`` or ``B`` (see the module docstring for the official code's eps-per-pad variant).
    causal: prefix sums over ``j <= i`` (chunked, module docstring).

  Returns:
    ``(..., L, H, Dv)``.
  """
  _check_qkv(q, k, v, mask)
  to_heads = lambda x: jnp.swapaxes(x, -3, -2)[..., :, None, :, :]  # (..., H, 1, L, X)
  phi_q = _features(kernel_fn, to_heads(q), is_query=True)
  phi_k = _features(kernel_fn, to_heads(k), is_query=False)
  values = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], axis=-1)
  if mask is not None:  # zero rows of [v, 1] drop padded keys from A and B alike
    values = values * mask[..., None, None].astype(values.dtype)
  res = _linear_attention(phi_q, phi_k, to_heads(values), causal)[..., 0, :, :]
  res = jnp.swapaxes(res, -3, -2)  # (..., L, H, Dv + 1)
  num, den = _rescaled(res[..., :-1], res[..., -1:])
  return num * _safe_reciprocal(den)


def _check_grid(q, k, v, keys, mask):
  """Validates FAVOR+S inputs ``(..., M, N, L, H, D)`` and keys ``(M, N, D)``."""
  if q.ndim < 5:
    raise ValueError(f"q must have shape (..., M, N, L, H, D), got {q.shape}")
  if k.shape != q.shape or v.shape != q.shape:
    raise ValueError(f"q, k, v shapes must be equal, got {q.shape}, {k.shape}, {v.shape}")
  m, n, d = q.shape[-5], q.shape[-4], q.shape[-1]
  if tuple(keys.shape) != (m, n, d):
    raise ValueError(f"keys shape {tuple(keys.shape)} must be (M, N, D) = {(m, n, d)}")
  if mask is not None and tuple(mask.shape) != q.shape[:-2]:
    raise ValueError(f"mask shape {tuple(mask.shape)} must equal q.shape[:-2] = {q.shape[:-2]}")


def _bundle(x, keys, real, over_m):
  """Binds ``x`` ``(..., M, N, L, H, D)`` to ``keys`` ``(M, N, D)`` (Eq. 11) and superposes.

  ``over_m=True`` sums over M (query bundles, indexed by n), otherwise over N (key and value
  bundles, indexed by m). ``real`` (``(..., M, N, L, 1, 1)`` or None) zeroes padded positions
  first. Returns the head-major layout ``(..., H, S, L, D)``. Written as a sum of slices: one
  fused elementwise pass (XLA's CPU reduce over a major axis is far slower).
  """
  if real is not None:
    x = x * real
  axis, key_axis = (-5, 0) if over_m else (-4, 1)
  terms = [jnp.take(x, i, axis=axis) * jnp.take(keys, i, axis=key_axis)[:, None, None, :]
           for i in range(x.shape[axis])]
  return jnp.moveaxis(sum(terms[1:], terms[0]), -2, -4)


def _favor_s(q, k, v, keys, mix, mask, causal, superposed_output):
  """``(num, den)`` of FAVOR+S on the grid (:func:`favor_s_attention` describes the maths):
  ``num`` ``(..., N, L, H, D)`` holds ``S_n``, ``den`` ``(..., N, L, H, M)`` the ``B^(m,n)``
  (``(..., N, L, H, 1)``, their sum over m, with ``superposed_output``), both divided by a
  common factor per query row. ``mix`` is :func:`_linear_attention` with a feature map or
  :func:`_exact_kernel_attention`: ``mix(q_bundled, k_bundled, values, causal, key_real)``."""
  _check_grid(q, k, v, keys, mask)
  num_m, dim = q.shape[-5], q.shape[-1]
  keys = keys.astype(q.dtype)
  real = None if mask is None else mask[..., None, None].astype(q.dtype)  # (..., M, N, L, 1, 1)
  q_bundled = _bundle(q, keys, None, over_m=True)  # (..., H, N, L, D)
  k_bundled = _bundle(k, keys, real, over_m=False)  # (..., H, M, L, D)
  v_bundled = _bundle(v, keys, real, over_m=False)  # (..., H, M, L, D)
  if superposed_output:
    norm_cols = jnp.ones(v_bundled.shape[:-1] + (1,), v_bundled.dtype)
  else:
    norm_cols = jnp.broadcast_to(jnp.eye(num_m, dtype=v_bundled.dtype)[:, None, :],
                                 v_bundled.shape[:-1] + (num_m,))
  values = jnp.concatenate([v_bundled, norm_cols], axis=-1)  # (..., H, M, L, D + cols)
  key_real = None if mask is None else jnp.any(mask, axis=-2)  # (..., M, L)
  if key_real is not None:  # a bundle padded in every channel leaves A and all C_m untouched
    values = values * key_real[..., None, :, :, None].astype(values.dtype)
  res = mix(q_bundled, k_bundled, values, causal, key_real)  # (..., H, N, L, D + cols)
  res = jnp.moveaxis(res, -4, -2)  # (..., N, L, H, D + cols)
  return _rescaled(res[..., :dim], res[..., dim:])


def _feature_mix(kernel_fn):
  """:func:`_linear_attention` on the features ``kernel_fn`` gives the bundles."""
  def mix(q_bundled, k_bundled, values, causal, key_real):
    del key_real  # padded bundle positions already carry zero values and normalisers
    phi_q = _features(kernel_fn, q_bundled, is_query=True)
    phi_k = _features(kernel_fn, k_bundled, is_query=False)
    return _linear_attention(phi_q, phi_k, values, causal)
  return mix


def _unbound_outputs(num, den, keys, superposed_output):
  """Eq. 67 (``S_n * a[m,n] / B^(m,n)``, ``(..., M, N, L, H, D)``) or, with
  ``superposed_output``, Eq. 68 (``S_n / sum_m B^(m,n)``, ``(..., N, L, H, D)``)."""
  if superposed_output:
    return num * _safe_reciprocal(den)
  num_m, dim = den.shape[-1], num.shape[-1]
  keys = keys.astype(num.dtype)
  # Same product with L and H merged (one axis fewer): XLA CPU's YNNPACK reduce fusion
  # (jaxlib 0.10.2) segfaults on the gradient's sum over M when this tensor has rank 7
  # and a unit axis (vmap over seeds with H = 1).
  flat = num.shape[:-3] + (-1,)
  inv_den = jnp.moveaxis(_safe_reciprocal(den).reshape(flat + (num_m,)), -1, -3)  # (..., M, N, LH)
  out = num.reshape(flat + (dim,))[..., None, :, :, :] * inv_den[..., None] * keys[:, :, None, :]
  return out.reshape(out.shape[:-2] + num.shape[-3:])


def favor_s_attention(q, k, v, keys, kernel_fn: Callable, mask=None, causal=False,
                      superposed_output=False):
  """FAVOR+S attention in superposition on an M x N grid (Eq. 19, App. C.3).

  Channel ``(m, n)`` is bound to the bipolar key ``a[m, n]`` (Eq. 11). Queries are bundled
  over M, ``q~_n = sum_m q[m,n] * a[m,n]``; keys and values over N,
  ``k~_m = sum_n k[m,n] * a[m,n]``, ``v~_m = sum_n v[m,n] * a[m,n]``. With
  ``Phi_q[n] = phi(q~_n)`` and ``Phi_k[m] = phi(k~_m)`` (one feature map per bundled tensor):

  * ``S_n = Phi_q[n] A`` with ``A = sum_{m,j} Phi_k[m,j] v~_{m,j}^T`` built once (Eq. 19);
  * ``B^(m,n) = Phi_q[n] . C_m`` with ``C_m = sum_j Phi_k[m,j]`` (Eq. 62/63).

  Att. variant (default): returns ``(..., M, N, L, H, D)`` with
  ``o^(m,n) = S_n * a[m,n] / B^(m,n)`` (Eq. 67). ``superposed_output=True`` (att.+MLP):
  returns ``(..., N, L, H, D)`` with ``S_n / sum_m B^(m,n)``, left bound (Eq. 68).
  ``A`` and the ``C_m`` come out of one product by appending M one-hot columns to the values.

  No rescaling happens here: the attention module scales q and k by ``(sqrt(D) M N)^-1/2``
  (official code) before the call.

  Args:
    q, k, v: ``(..., M, N, L, H, D)``.
    keys: ``(M, N, D)`` bipolar binding keys.
    kernel_fn: feature map, as for :func:`favor_attention`.
    mask: optional ``(..., M, N, L)`` bool, True = real token. Keys and values are zeroed at
      padded positions before binding; a bundled key position that is padding in every
      channel of its bundle (all n of row m) contributes nothing to ``A`` or to any
      normaliser. Padded queries are still bundled (as in the official code).
    causal: prefix sums over ``j <= i``.
    superposed_output: att.+MLP normalisation (see above).

  With M = N = 1 and keys of ones this equals :func:`favor_attention` (also with a mask).
  """
  num, den = _favor_s(q, k, v, keys, _feature_mix(kernel_fn), mask, causal, superposed_output)
  return _unbound_outputs(num, den, keys, superposed_output)


def favor_s_exact_attention(q, k, v, keys, mask=None, causal=False, superposed_output=False):
  """:func:`favor_s_attention` with the exact kernel ``exp(q~ . k~ / sqrt(D))`` that
  :func:`exp_kernel` features estimate in place of ``Phi_q[n] . Phi_k[m]`` (Eq. 12, Eq. 20
  for bundles); quadratic in L. Not in the paper: ``mimo.exact_kernel_fraction`` trains the
  first steps with it. Arguments and outputs as :func:`favor_s_attention`."""
  num, den = _favor_s(q, k, v, keys, _exact_kernel_attention, mask, causal, superposed_output)
  return _unbound_outputs(num, den, keys, superposed_output)


def favor_s_normalisers(q, k, keys, kernel_fn: Callable, mask=None, causal=False):
  """The normalisers ``B^(m,n)`` of Eq. 62/63 (att. variant) of every query row of
  :func:`favor_s_attention`: ``(..., N, L, H, M)``, each row divided by a common factor (their
  ratios are exact). q, k, keys, kernel_fn, mask as :func:`favor_s_attention`."""
  return _favor_s(q, k, k, keys, _feature_mix(kernel_fn), mask, causal, False)[1]


def favor_s_exact_normalisers(q, k, keys, mask=None, causal=False):
  """:func:`favor_s_normalisers` of :func:`favor_s_exact_attention`."""
  return _favor_s(q, k, k, keys, _exact_kernel_attention, mask, causal, False)[1]


def bundle_mass_spread(normalisers):
  """Mean over query rows of ``Var_m log B^(m,n)``: how unevenly the key bundles share a query
  bundle's kernel mass. ``normalisers`` ``(..., M)`` as :func:`favor_s_normalisers` returns them
  (``B^(m,n)`` of Eq. 62/63 in the last axis); 0 when every bundle holds the same mass, and
  invariant to a common factor per row. Not in the paper: the optional regulariser
  ``mimo.mass_balance`` against a key bundle starved of mass, whose channel then outputs
  mostly the other bundles' values under Eq. 67's per-channel normaliser.
  """
  tiny = jnp.finfo(normalisers.dtype).tiny
  return jnp.mean(jnp.var(jnp.log(jnp.maximum(normalisers, tiny)), axis=-1))
