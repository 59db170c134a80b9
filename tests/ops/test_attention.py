"""Tests for mimojax.ops.attention against explicit quadratic forms and loops.

Checks FAVOR+S -> FAVOR+ at M = N = 1, the normaliser identity (Eq. 67, 68), padding (pads
contribute nothing; the eps per pad of the official code, IBM/multiple-input-multiple-output-nets,
as a variant) and the error falling with D. The functions run under cached ``jax.jit``
wrappers (one compilation per static configuration and shape), which keeps the file fast and
checks jit compatibility throughout.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.ops import attention

RTOL, ATOL = 1e-4, 1e-5
FLAT = (2, 12, 2, 8)  # (B, L, H, D); few distinct shapes keep compilation cheap
LONG = 140  # several causal chunks, the last one partial

# Tests only check values: skip LLVM optimisation to cut compile time about 4x.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

_KERNELS = {
    "relu": lambda p: functools.partial(attention.relu_kernel, projection=p),
    "exp": lambda p: functools.partial(attention.exp_kernel, projection=p),
    "dpfp": lambda p: attention.dpfp_kernel,
}


@functools.partial(_jit, static_argnames=("kernel", "causal"))
def _favor(q, k, v, p, mask=None, *, kernel="relu", causal=False):
  return attention.favor_attention(q, k, v, _KERNELS[kernel](p), mask=mask, causal=causal)


@functools.partial(_jit, static_argnames=("kernel", "causal"))
def _favor_s(q, k, v, keys, p, mask=None, *, kernel="relu", causal=False):
  """(att. output, superposed output) in one program; kernel "exact":
  ``favor_s_exact_attention``."""
  if kernel == "exact":
    return tuple(attention.favor_s_exact_attention(q, k, v, keys, mask=mask, causal=causal,
                                                   superposed_output=superposed)
                 for superposed in (False, True))
  return tuple(attention.favor_s_attention(q, k, v, keys, _KERNELS[kernel](p), mask=mask,
                                           causal=causal, superposed_output=superposed)
               for superposed in (False, True))


_softmax = _jit(attention.softmax_attention, static_argnames=("causal", "dropout_fn"))


def _normal(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _bipolar(seed, shape):
  return np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def _mask(seed, shape, p_real=0.7):
  mask = np.random.default_rng(seed).random(shape) < p_real
  mask[..., 0] = True  # every causal query keeps a real key
  return mask


_gaussian_orthogonal_matrix = _jit(attention.gaussian_orthogonal_matrix, static_argnums=(1, 2))


def _projection(seed, r, d):
  return np.asarray(_gaussian_orthogonal_matrix(jax.random.key(seed), r, d))


# ----- numpy references (float64) ------------------------------------------------------------


def _np_relu_features(x, p, eps=1e-3):
  return np.maximum(x.astype(np.float64) @ p.T.astype(np.float64) * x.shape[-1] ** -0.25, 0) + eps


def _np_exp_features(x, p):
  """Unstabilised positive softmax features exp(w.x' - |x'|^2/2)/sqrt(R), x' = D^-1/4 x."""
  x = x.astype(np.float64) * x.shape[-1] ** -0.25
  return np.exp(x @ p.T.astype(np.float64) - 0.5 * np.sum(x * x, -1, keepdims=True)) / np.sqrt(
      p.shape[0])


def _np_softmax(q, k, v, mask, causal):
  """Loops over (batch, head) of softmax(q k^T / sqrt(D)) v with masked/causal keys."""
  *batch, length, heads, dim = q.shape
  q, k, v = (x.reshape(-1, length, heads, x.shape[-1]).astype(np.float64) for x in (q, k, v))
  mask = np.ones((q.shape[0], length), bool) if mask is None else mask.reshape(-1, length)
  out = np.zeros(q.shape[:-1] + (v.shape[-1],))
  for b in range(q.shape[0]):
    for h in range(heads):
      scores = q[b, :, h] @ k[b, :, h].T / np.sqrt(dim)
      allowed = np.broadcast_to(mask[b][None, :], scores.shape)
      if causal:
        allowed = allowed & np.tril(np.ones_like(allowed))
      scores = np.where(allowed, scores, -np.inf)
      weights = np.exp(scores - scores.max(-1, keepdims=True))
      out[b, :, h] = (weights / weights.sum(-1, keepdims=True)) @ v[b, :, h]
  return out.reshape(*batch, length, heads, -1)


def _np_favor(q, k, v, features, mask, causal):
  """Quadratic form: out = (W v) / (W 1) with W_ij = phi(q_i).phi(k_j) [mask_j] [j <= i]."""
  *batch, length, heads, _ = q.shape
  q, k, v = (x.reshape(-1, length, heads, x.shape[-1]) for x in (q, k, v))
  mask = np.ones((q.shape[0], length), bool) if mask is None else mask.reshape(-1, length)
  out = np.zeros(q.shape[:-1] + (v.shape[-1],))
  for b in range(q.shape[0]):
    for h in range(heads):
      w = features(q[b, :, h]) @ features(k[b, :, h]).T * mask[b][None, :]
      if causal:
        w = np.tril(w)
      out[b, :, h] = (w @ v[b, :, h]) / w.sum(-1, keepdims=True)
  return out.reshape(*batch, length, heads, -1)


def _np_favor_s(q, k, v, keys, features, mask, causal):
  """Explicit per-(m, n) loops of Eq. 11, 19, 63, 67, 68 for q, k, v (G, M, N, L, H, D).

  ``features`` None: the exact kernel, W = exp(q~ k~^T / sqrt(D)). Returns (att. output
  (G, M, N, L, H, D), superposed output (G, N, L, H, D), S (G, N, L, H, D), B (G, M, N, L, H)).
  """
  g_, m_, n_, l_, h_, d_ = q.shape
  mask = np.ones((g_, m_, n_, l_), bool) if mask is None else mask
  real = mask[..., None].astype(np.float64)
  out = np.zeros(q.shape)
  sup = np.zeros((g_, n_, l_, h_, d_))
  s_all = np.zeros((g_, n_, l_, h_, d_))
  b_all = np.zeros((g_, m_, n_, l_, h_))
  for g in range(g_):
    for h in range(h_):
      q_t = [sum(q[g, m, n, :, h] * keys[m, n] for m in range(m_)) for n in range(n_)]
      k_t = [sum(k[g, m, n, :, h] * real[g, m, n] * keys[m, n] for n in range(n_))
             for m in range(m_)]
      v_t = [sum(v[g, m, n, :, h] * real[g, m, n] * keys[m, n] for n in range(n_))
             for m in range(m_)]
      bundle_real = [mask[g, m].any(0) for m in range(m_)]
      for n in range(n_):
        s = np.zeros((l_, d_))
        for m in range(m_):
          if features is None:
            w = np.exp(q_t[n].astype(np.float64) @ k_t[m].T / np.sqrt(d_))
          else:
            w = features(q_t[n]) @ features(k_t[m]).T
          w = w * bundle_real[m][None, :]
          if causal:
            w = np.tril(w)
          s += w @ v_t[m]
          b_all[g, m, n, :, h] = w.sum(-1)
        s_all[g, n, :, h] = s
        for m in range(m_):
          out[g, m, n, :, h] = s * keys[m, n] / b_all[g, m, n, :, h][:, None]
        sup[g, n, :, h] = s / b_all[g, :, n, :, h].sum(0)[:, None]
  return out, sup, s_all, b_all


def _grid_inputs(seed, g=2, m=2, n=2, length=12, heads=2, dim=8):
  shape = (g, m, n, length, heads, dim)
  q, k, v = (_normal(seed + i, shape) for i in range(3))
  return q, k, v, _bipolar(seed + 3, (m, n, dim))


# ----- softmax ----------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_softmax_matches_explicit(causal, masked):
  q, k, v = (_normal(i, FLAT) for i in range(3))
  mask = _mask(5, FLAT[:2]) if masked else None
  out = _softmax(q, k, v, mask, causal=causal)
  np.testing.assert_allclose(out, _np_softmax(q, k, v, mask, causal), rtol=RTOL, atol=ATOL)


def test_softmax_dropout_fn_acts_on_weights():
  q, k, v = (_normal(i, FLAT) for i in range(3))
  drop = np.random.default_rng(0).random(FLAT[:1] + (FLAT[2], FLAT[1], FLAT[1])) < 0.5
  out = _softmax(q, k, v, causal=True, dropout_fn=lambda w: w * drop)
  scores = np.einsum("bqhd,bkhd->bhqk", q, k).astype(np.float64) / np.sqrt(FLAT[-1])
  scores = np.where(np.tril(np.ones((FLAT[1], FLAT[1]), bool)), scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights = weights / weights.sum(-1, keepdims=True) * drop
  np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", weights, v), rtol=RTOL,
                             atol=ATOL)


# ----- random features and feature maps -------------------------------------------------------


@pytest.mark.parametrize("r,d", [(10, 4), (16, 8)])  # truncated last block; two full blocks
def test_gaussian_orthogonal_matrix_blocks(r, d):
  p = _projection(0, r, d)
  chex.assert_shape(p, (r, d))
  directions = p / np.linalg.norm(p, axis=-1, keepdims=True)
  for start in range(0, r, d):
    block = directions[start:start + d]  # the last block may be truncated
    np.testing.assert_allclose(block @ block.T, np.eye(len(block)), atol=1e-5)
  norms = np.linalg.norm(p, axis=-1)
  assert np.all(norms > 0) and np.unique(np.round(norms, 5)).size == r  # independent chi draws


def test_gaussian_orthogonal_matrix_chi_norms_and_determinism():
  p = np.concatenate([_projection(seed, 16, 8) for seed in range(256)])  # 4096 rows
  # chi_D norms: E[|w|^2] = D; rows are marginally N(0, I_D), so each coordinate has variance 1.
  np.testing.assert_allclose(np.mean(np.sum(p**2, -1)), 8.0, rtol=0.05)
  np.testing.assert_allclose(np.var(p, axis=0), np.ones(8), rtol=0.1)
  np.testing.assert_array_equal(p[:16], _projection(0, 16, 8))
  assert not np.allclose(p[:16], p[16:32])


def test_relu_kernel_matches_definition():
  x, p = _normal(0, (3, 5, 8)), _normal(1, (6, 8))
  np.testing.assert_allclose(attention.relu_kernel(x, p), _np_relu_features(x, p), rtol=1e-5)
  np.testing.assert_allclose(attention.relu_kernel(x, p, eps=0.5),
                             _np_relu_features(x, p, eps=0.5), rtol=1e-5)


def test_exp_kernel_is_closed_form_up_to_shared_factor():
  x, p = _normal(0, (2, 6, 3, 8)), _normal(1, (16, 8))
  phi = np.asarray(attention.exp_kernel(x, p), np.float64)
  ratio = phi / _np_exp_features(x, p)
  for b in range(2):  # one factor per leading index, shared by positions, heads and features
    np.testing.assert_allclose(ratio[b], ratio[b].flat[0], rtol=1e-4)
    assert np.max(phi[b]) == pytest.approx(16**-0.5, rel=1e-6)


def test_exp_kernel_query_factor_is_per_position():
  x, p = _normal(0, (2, 6, 3, 8)), _normal(1, (16, 8))
  phi = np.asarray(attention.exp_kernel(x, p, is_query=True), np.float64)
  ratio = phi / _np_exp_features(x, p)
  np.testing.assert_allclose(ratio, np.broadcast_to(ratio[..., :1], ratio.shape), rtol=1e-4)
  np.testing.assert_allclose(phi.max(-1), 16**-0.5, rtol=1e-6)


def test_favor_exp_kernel_gradient_finite_when_key_features_are_tiny():
  """A key whose features are all tiny (exponents far below the largest key's) gives the
  query that sees only it a tiny normaliser; the gradient must stay finite (a plain
  reciprocal's -1 / B^2 overflows at this scale, checked when the test was written)."""
  q, k, v = (_normal(i, FLAT) for i in range(3))
  k[:, 0] *= 6.0  # key 0, the only key query 0 sees causally
  p = _projection(0, 16, 8)
  kernel_fn = functools.partial(attention.exp_kernel, projection=p)
  loss = lambda q, k: jnp.sum(attention.favor_attention(q, k, v, kernel_fn, causal=True) ** 2)
  grads = jax.grad(loss, argnums=(0, 1))(q, k)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def _assert_favor_exp_matches_numpy(q, k, v, causal):
  """FAVOR+ with exp features equals the float64 numpy form (stabilisers cancel)."""
  p = _projection(0, 16, 8)
  out = _favor(q, k, v, p, kernel="exp", causal=causal)
  expected = _np_favor(q, k, v, lambda x: _np_exp_features(x, p), None, causal)
  np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_exp_kernel_query_norms_far_apart(causal):
  """A query whose exponent is ~100 below another's must not underflow to an all-zero row
  (a stabiliser shared by all queries would zero it and return 0 instead of attention)."""
  q, k, v = (_normal(i, FLAT) for i in range(3))
  q[:, 0] *= 12.0  # position 0: exponents far below the other queries'
  _assert_favor_exp_matches_numpy(q, k, v, causal)


def test_exp_kernel_estimates_softmax_kernel():
  x = 0.5 * _normal(0, (1, 2, 1, 8))  # two positions, one head
  phi = np.asarray(attention.exp_kernel(x, _projection(2, 4096, 8)), np.float64)[0, :, 0]
  gram = phi @ phi.T  # the shared stabiliser cancels in the cosine-like ratio below
  estimate = gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1])
  xs = x[0, :, 0].astype(np.float64)
  exact = np.exp((xs[0] @ xs[1] - 0.5 * xs[0] @ xs[0] - 0.5 * xs[1] @ xs[1]) / np.sqrt(8))
  np.testing.assert_allclose(estimate, exact, rtol=0.05)


@pytest.mark.parametrize("nu", [1, 3])
def test_dpfp_kernel_matches_definition(nu):
  x = _normal(0, (4, 5))
  out = np.asarray(attention.dpfp_kernel(x, nu=nu))
  d = x.shape[-1]
  chex.assert_shape(out, (4, 2 * d * nu))
  r = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], -1)
  for j in range(1, nu + 1):
    for i in range(2 * d):
      np.testing.assert_allclose(out[:, (j - 1) * 2 * d + i], r[:, i] * r[:, (i + j) % (2 * d)],
                                 rtol=1e-6)


# ----- FAVOR+ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("length", [FLAT[1], LONG])
def test_favor_matches_quadratic_form(causal, masked, length):
  shape = (FLAT[0], length) + FLAT[2:]
  q, k, v = (_normal(i, shape) for i in range(3))
  mask = _mask(4, shape[:2]) if masked else None
  p = _projection(0, 16, 8)
  out = _favor(q, k, v, p, mask, causal=causal)
  expected = _np_favor(q, k, v, lambda x: _np_relu_features(x, p), mask, causal)
  np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_exp_kernel_stabiliser_cancels(causal):
  _assert_favor_exp_matches_numpy(*(_normal(i, FLAT) for i in range(3)), causal)


def test_favor_dpfp_kernel_and_value_dim():
  q, k = _normal(0, FLAT), _normal(1, FLAT)
  v = _normal(2, FLAT[:-1] + (3,))  # value dimension differs from D
  out = _favor(q, k, v, None, kernel="dpfp")
  expected = _np_favor(q, k, v, lambda x: np.asarray(attention.dpfp_kernel(x), np.float64),
                       None, False)
  np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_sequence_without_real_tokens_gives_zeros(causal):
  q, k, v = (_normal(i, FLAT) for i in range(3))
  mask = np.ones(FLAT[:2], bool)
  mask[1] = False
  out = np.asarray(_favor(q, k, v, _projection(0, 16, 8), mask, causal=causal))
  assert np.all(np.isfinite(out)) and np.all(out[1] == 0)


def test_reference_eps_per_pad_variant_via_zeroed_inputs():
  """Official-code padding (``MIMOFormer/code/attention_performer.py``): zeroing k, v and
  passing no mask adds eps * #pads * sum_r phi(q)_r to every denominator and leaves A
  unchanged."""
  q, k, v = (_normal(i, FLAT) for i in range(3))
  real, length = 7, FLAT[1]
  mask = (np.arange(length) < real)[:, None, None]
  p = _projection(7, 16, 8)
  out = _favor(q, k * mask, v * mask, p)
  phi_q = _np_relu_features(q[0, :, 0], p)
  phi_k = _np_relu_features(k[0, :real, 0], p)
  num = phi_q @ phi_k.T @ v[0, :real, 0]
  den = phi_q @ phi_k.sum(0) + 1e-3 * (length - real) * phi_q.sum(-1)
  np.testing.assert_allclose(out[0, :, 0], num / den[:, None], rtol=RTOL, atol=ATOL)


# ----- FAVOR+S --------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(2, 2), (3, 2)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_favor_s_matches_explicit_loops(grid, causal, masked):
  m, n = grid
  q, k, v, keys = _grid_inputs(10, m=m, n=n)
  mask = None
  if masked:
    mask = _mask(7, q.shape[:-2], p_real=0.6)
    mask[:, :, :, 5] = False  # position 5 padded in every channel of every bundle
  p = _projection(1, 16, 8)
  out_att, out_sup, _, _ = _np_favor_s(q, k, v, keys, lambda x: _np_relu_features(x, p), mask,
                                       causal)
  att, sup = _favor_s(q, k, v, keys, p, mask, causal=causal)
  chex.assert_shape([att, sup], [q.shape, q.shape[:1] + q.shape[2:]])
  chex.assert_trees_all_close((att, sup), (out_att, out_sup), rtol=RTOL, atol=ATOL)


def test_favor_s_causal_across_chunks():
  q, k, v, keys = _grid_inputs(20, g=1, length=LONG, heads=1)
  mask = _mask(3, q.shape[:-2])
  p = _projection(2, 16, 8)
  out_att, out_sup, _, _ = _np_favor_s(q, k, v, keys, lambda x: _np_relu_features(x, p), mask,
                                       True)
  chex.assert_trees_all_close(_favor_s(q, k, v, keys, p, mask, causal=True),
                              (out_att, out_sup), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", ["relu", "exp", "dpfp"])
def test_favor_s_reduces_to_favor_with_ones_keys(causal, kernel):
  """M = N = 1 with keys of ones equals FAVOR+ (with padding too)."""
  q, k, v, _ = _grid_inputs(30, m=1, n=1)
  mask = _mask(1, q.shape[:-2])
  p = _projection(3, 16, 8)
  ones = np.ones((1, 1, 8), np.float32)
  att, sup = _favor_s(q, k, v, ones, p, mask, kernel=kernel, causal=causal)
  expected = _favor(q[:, 0, 0], k[:, 0, 0], v[:, 0, 0], p, mask[:, 0, 0], kernel=kernel,
                    causal=causal)
  chex.assert_trees_all_close((att[:, 0, 0], sup[:, 0]), (expected, expected), rtol=1e-5,
                              atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_favor_s_exact_kernel_matches_explicit_loops(causal, masked):
  """favor_s_exact_attention: Eq. 19 / 67 / 68 with W = exp(q~ k~^T / sqrt(D)) in place of
  features."""
  q, k, v, keys = _grid_inputs(15, m=3, n=2)
  q, k = 0.3 * q, 0.3 * k  # bundled scores of a few units, as after training's scaling
  mask = None
  if masked:
    mask = _mask(8, q.shape[:-2], p_real=0.6)
    mask[:, :, :, 4] = False  # padded in every channel of every bundle
  out_att, out_sup, _, _ = _np_favor_s(q, k, v, keys, None, mask, causal)
  chex.assert_trees_all_close(_favor_s(q, k, v, keys, None, mask, kernel="exact",
                                       causal=causal),
                              (out_att, out_sup), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_s_exact_kernel_on_one_channel_is_softmax_attention(causal):
  """M = N = 1 with a bipolar key: binding cancels (a * a = 1), so the exact kernel gives
  softmax(q k^T / sqrt(D)) v, padding included."""
  q, k, v, key = _grid_inputs(35, m=1, n=1)
  mask = _mask(2, q.shape[:-2])
  att, _ = _favor_s(q, k, v, key, None, mask, kernel="exact", causal=causal)
  expected = _softmax(q[:, 0, 0], k[:, 0, 0], v[:, 0, 0], mask=mask[:, 0, 0], causal=causal)
  np.testing.assert_allclose(att[:, 0, 0], expected, rtol=1e-5, atol=1e-6)


def test_exp_features_estimate_the_exact_kernel():
  """FAVOR+S with many positive features approaches the exact-kernel FAVOR+S."""
  q, k, v, keys = _grid_inputs(36, g=1, heads=1)
  q, k = 0.3 * q, 0.3 * k
  exact, _ = _favor_s(q, k, v, keys, None, kernel="exact", causal=True)
  errors = [np.abs(np.asarray(_favor_s(q, k, v, keys, _projection(seed, r, 8), kernel="exp",
                                       causal=True)[0]) - exact).mean()
            for r in (16, 4096) for seed in (0, 1)]
  assert max(errors[2:]) < 0.25 * min(errors[:2]), errors


@pytest.mark.parametrize("causal", [False, True])
def test_favor_s_single_channel_key_is_rotated_projection(causal):
  """M = N = 1 with key a equals FAVOR+ with projection P diag(a) (ReLU kernel)."""
  q, k, v, key = _grid_inputs(40, m=1, n=1)
  mask = _mask(1, q.shape[:-2])
  p = _projection(4, 16, 8)
  att, _ = _favor_s(q, k, v, key, p, mask, causal=causal)
  expected = _favor(q[:, 0, 0], k[:, 0, 0], v[:, 0, 0], p * key[0, 0][None, :], mask[:, 0, 0],
                    causal=causal)
  np.testing.assert_allclose(att[:, 0, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_s_normaliser_identity(causal):
  """Eq. 67/68: sum_m B^(m,n) normalises the superposed output; o * a * B^(m,n) = S_n."""
  q, k, v, keys = _grid_inputs(50, m=3, n=2)
  mask = _mask(2, q.shape[:-2])
  p = _projection(5, 16, 8)
  _, _, s_ref, b_ref = _np_favor_s(q, k, v, keys, lambda x: _np_relu_features(x, p), mask,
                                   causal)
  att, sup = (np.asarray(x, np.float64) for x in _favor_s(q, k, v, keys, p, mask,
                                                          causal=causal))
  for m in range(3):
    num = att[:, m] * keys[m][None, :, None, None, :] * b_ref[:, m][..., None]
    np.testing.assert_allclose(num, s_ref, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(sup * b_ref.sum(1)[..., None], s_ref, rtol=RTOL, atol=ATOL)
  # Public-API form: 1 / sup_n = sum_m 1 / (o_mn * a_mn) wherever S_n is not tiny.
  harmonic = np.sum(1 / (att * keys[None, :, :, None, None, :]), axis=1)
  big = np.abs(s_ref) > 1e-2
  np.testing.assert_allclose((1 / sup)[big], harmonic[big], rtol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_s_normalisers_and_mass_spread(causal):
  """favor_s_normalisers gives B^(m,n) per query row up to a common row factor, and
  favor_s_exact_normalisers those of the exact kernel; bundle_mass_spread is the row mean of
  Var_m log B^(m,n)."""
  q, k, v, keys = _grid_inputs(51, m=3, n=2)
  mask = _mask(3, q.shape[:-2])
  p = _projection(6, 16, 8)
  fn = _KERNELS["relu"](p)
  for normalisers, kernel in (
      (functools.partial(attention.favor_s_normalisers, kernel_fn=fn),
       lambda x: _np_relu_features(x, p)),
      (attention.favor_s_exact_normalisers, None)):
    _, _, _, b_ref = _np_favor_s(q, k, v, keys, kernel, mask, causal)
    den = _jit(functools.partial(normalisers, mask=mask, causal=causal))(q, k, keys)
    b_rows = np.moveaxis(b_ref, 1, -1)  # (G, N, L, H, M)
    chex.assert_shape(den, b_rows.shape)
    ratio = np.asarray(den, np.float64) / b_rows
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[..., :1], ratio.shape), rtol=RTOL)
  spread = float(attention.bundle_mass_spread(den))
  np.testing.assert_allclose(spread, np.mean(np.var(np.log(b_rows), axis=-1)), rtol=1e-4)
  assert float(attention.bundle_mass_spread(jnp.full((4, 3), 2.5))) == 0.0


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", ["relu", "exp"])
def test_padding_contributes_nothing(causal, kernel):
  """Appending pad tokens to every sequence of a group leaves outputs at real positions."""
  extra = 5
  length = FLAT[1] - extra
  q, k, v, keys = _grid_inputs(60)
  mask = _mask(4, q.shape[:-2])
  mask[..., length:] = False
  q2, k2, v2 = (np.where(np.arange(FLAT[1])[:, None, None] < length, x, 0.7)  # any content
                for x in (q, k, v))
  short = [x[:, :, :, :length] for x in (q, k, v, mask)]
  p = _projection(6, 16, 8)
  att, sup = _favor_s(*short[:3], keys, p, short[3], kernel=kernel, causal=causal)
  att2, sup2 = _favor_s(q2, k2, v2, keys, p, mask, kernel=kernel, causal=causal)
  chex.assert_trees_all_close((att2[:, :, :, :length], sup2[:, :, :length]), (att, sup),
                              rtol=1e-4, atol=1e-5)
  flat = lambda x: x[:, 0, 0]
  out = _favor(*(flat(x) for x in short[:3]), p, flat(short[3]), kernel=kernel, causal=causal)
  out2 = _favor(flat(q2), flat(k2), flat(v2), p, flat(mask), kernel=kernel, causal=causal)
  np.testing.assert_allclose(np.asarray(out2)[:, :length], out, rtol=1e-4, atol=1e-5)


@_jit
def _grid_and_channels(q, k, v, keys, p, rescale):
  """FAVOR+S att. on the grid and FAVOR+ on every channel (q, k rescaled), same P."""
  kernel_fn = _KERNELS["relu"](p)
  return (attention.favor_s_attention(q, k, v, keys, kernel_fn),
          attention.favor_attention(q * rescale, k * rescale, v, kernel_fn))


def test_favor_s_error_falls_with_dimension():
  """Seeded: FAVOR+S att. approaches per-channel FAVOR+ as D grows.

  The unbound output also carries the other M*N - 1 channels bound with foreign keys (Eq. 22),
  a term of constant norm that is only quasi-orthogonal to channel (m, n). The error is thus
  measured in the channel's own direction, |<o_s - o_f, o_f>| / |o_f|^2 (RMS over tokens),
  with queries aligned to keys so that the intended score dominates (App. D). Same P for both
  (i.i.d. Gaussian rows: the claim does not need orthogonal blocks).
  """
  m = n = 2
  errors = []
  for dim in (64, 1024):
    errs = []
    for seed in range(2):
      rng = np.random.default_rng(seed)
      k, v = rng.standard_normal((2, 2, m, n, 16, 1, dim)).astype(np.float32)
      q = k[:, :, :, rng.permutation(16)] + 0.5 * rng.standard_normal(k.shape).astype(np.float32)
      keys = _bipolar(seed, (m, n, dim))
      p = rng.standard_normal((256, dim)).astype(np.float32)  # i.i.d. rows suffice here
      scale = (np.sqrt(dim) * m * n) ** -0.5  # the official code's pre-scalings
      o_s, o_f = _grid_and_channels(q * scale, k * scale, v, keys, p, dim**-0.25 / scale)
      proj = np.sum((o_s - o_f) * o_f, -1) / np.sum(o_f * o_f, -1)
      errs.append(np.sqrt(np.mean(proj**2)))
    errors.append(np.mean(errs))
  assert errors[1] * 2 <= errors[0], errors


# ----- transformations, gradients, errors -----------------------------------------------------


def test_eager_equals_jit_and_vmap():
  q, k, v, keys = _grid_inputs(70)
  mask = _mask(5, q.shape[:-2])
  p = _projection(8, 16, 8)
  kernel_fn = functools.partial(attention.relu_kernel, projection=p)
  eager = attention.favor_s_attention(q, k, v, keys, kernel_fn, mask=mask)
  np.testing.assert_allclose(_favor_s(q, k, v, keys, p, mask)[0], eager, rtol=1e-5, atol=1e-6)
  batched = _jit(jax.vmap(lambda q, k, v, m: attention.favor_s_attention(
      q, k, v, keys, kernel_fn, mask=m)))
  np.testing.assert_allclose(batched(q, k, v, mask), eager, rtol=1e-5, atol=1e-6)


def test_gradients_are_finite():
  q, k, v, keys = _grid_inputs(80)
  mask = _mask(6, q.shape[:-2])
  mask[1] = False  # a whole group without real tokens
  p = _projection(9, 16, 8)
  flat = lambda x: x[:, 0, 0]

  def loss(q, k, v):
    total = jnp.sum(attention.softmax_attention(flat(q), flat(k), flat(v), mask=flat(mask),
                                                causal=True)**2)
    total += jnp.sum(attention.favor_attention(flat(q), flat(k), flat(v), _KERNELS["relu"](p),
                                               mask=flat(mask), causal=True)**2)
    for kernel, causal, superposed in [("relu", True, False), ("relu", False, True),
                                       ("exp", False, False), ("dpfp", False, False)]:
      total += jnp.sum(attention.favor_s_attention(
          q, k, v, keys, _KERNELS[kernel](p), mask=mask, causal=causal,
          superposed_output=superposed)**2)
    total += jnp.sum(attention.favor_s_exact_attention(q, k, v, keys, mask=mask, causal=True)**2)
    return total

  for grad in _jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v):
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_shape_errors():
  q, k, v, keys = _grid_inputs(90)
  kernel_fn = functools.partial(attention.relu_kernel, projection=_projection(0, 16, 8))
  with pytest.raises(ValueError, match="keys shape"):
    attention.favor_s_attention(q, k, v, keys[:1], kernel_fn)
  with pytest.raises(ValueError, match="q, k, v shapes"):
    attention.favor_s_attention(q, k[..., :4], v, keys, kernel_fn)
  with pytest.raises(ValueError, match="mask shape"):
    attention.favor_s_attention(q, k, v, keys, kernel_fn, mask=np.ones(q.shape[:-3], bool))
  with pytest.raises(ValueError, match=r"\(\.\.\., M, N, L, H, D\)"):
    attention.favor_s_attention(q[0, 0, 0], k[0, 0, 0], v[0, 0, 0], keys, kernel_fn)
  flat = q[:, 0, 0]
  with pytest.raises(ValueError, match="k shape"):
    attention.favor_attention(flat, flat[:, :5], flat, kernel_fn)
  with pytest.raises(ValueError, match="v shape"):
    attention.favor_attention(flat, flat, flat[:, :5], kernel_fn)
  with pytest.raises(ValueError, match="mask shape"):
    attention.softmax_attention(flat, flat, flat, mask=np.ones((2, 3), bool))
  with pytest.raises(ValueError, match="num_features"):
    attention.gaussian_orthogonal_matrix(jax.random.key(0), 0, 4)
  with pytest.raises(ValueError, match="nu"):
    attention.dpfp_kernel(flat, nu=0)
