"""Tests for mimojax.ops.binding against explicit loops: the official PWHRR index map, the
key-orthonormality regulariser (Eq. 26) and exact bipolar unbinding."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.ops import binding


def _circular(x, k, sign):
  """y[i] = sum_n k[n] x[(i + sign*n) mod C] over the last axis, by an explicit loop."""
  c = x.shape[-1]
  y = np.zeros(np.broadcast_shapes(x.shape, k.shape), np.float64)
  for i in range(c):
    for n in range(c):
      y[..., i] += k[..., n] * x[..., (i + sign * n) % c]
  return y


def _circular_convolution(x, k):
  """y[i] = sum_n k[n] x[(i - n) mod C]."""
  return _circular(x, k, -1)


def _circular_correlation(s, k):
  """y[i] = sum_n k[n] s[(i + n) mod C]."""
  return _circular(s, k, 1)


def _torch_pwhrr(x, w):
  """The official PWHRR: Conv1d cross-correlation of each channel's C-vector with its key w,
  circular padding C/2, output index 0 dropped (IBM/multiple-input-multiple-output-nets:
  ``MIMOConv/src/superposition.py``, ``pointwiseConvThroughChannels``), as an explicit loop."""
  c = x.shape[-1]
  p = c // 2
  padded = np.concatenate([x[..., c - p:], x, x[..., :p]], axis=-1)  # circular pad p
  out = np.zeros(x.shape[:-1] + (c + 1,), np.float64)
  for i in range(c + 1):
    for k in range(c):
      out[..., i] += w[..., k] * padded[..., i + k]
  return out[..., 1:]


def test_rademacher_and_gaussian_keys():
  rng = jax.random.key(0)
  keys = binding.rademacher_keys(rng, (4, 4096))
  assert keys.dtype == jnp.float32
  chex.assert_shape(keys, (4, 4096))
  assert set(np.unique(np.asarray(keys))) == {-1.0, 1.0}
  assert abs(float(jnp.mean(keys))) < 0.05
  gauss = binding.gaussian_keys(rng, (64, 512))
  assert gauss.dtype == jnp.float32
  np.testing.assert_allclose(float(jnp.mean(gauss)), 0.0, atol=2e-3)
  np.testing.assert_allclose(float(jnp.var(gauss)), 1 / 512, rtol=0.05)
  assert binding.gaussian_keys(rng, (2, 8), jnp.bfloat16).dtype == jnp.bfloat16


def test_map_bind_unbind_bipolar_exact():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 5, 16)).astype(np.float32))
  keys = binding.rademacher_keys(jax.random.key(1), (5, 16))
  bound = binding.map_bind(x, keys)
  chex.assert_trees_all_equal((bound, binding.map_unbind(bound, keys)),
                              (np.asarray(x) * np.asarray(keys), x))


def test_superpose_sums_channel_axis():
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(binding.superpose(jnp.asarray(x), 1)), x.sum(1),
                             rtol=1e-6)


@pytest.mark.parametrize("c", [4, 7, 8, 64])
def test_hrr_bind_is_circular_convolution(c):
  rng = np.random.default_rng(c)
  x = rng.normal(size=(2, 3, c)).astype(np.float32)
  k = rng.normal(size=(3, c)).astype(np.float32)
  out = binding.hrr_bind(jnp.asarray(x), jnp.asarray(k))
  assert out.dtype == jnp.float32
  chex.assert_shape(out, x.shape)
  np.testing.assert_allclose(np.asarray(out), _circular_convolution(x, k), atol=1e-5)
  corr = binding.hrr_unbind(jnp.asarray(x), jnp.asarray(k))
  assert corr.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(corr), _circular_correlation(x, k), atol=1e-5)


def test_pwhrr_over_nhwc_channel_axis():
  """Eq. 5: each pixel's channel vector is convolved with its channel's key."""
  rng = np.random.default_rng(1)
  b, n, h, w, c = 2, 3, 4, 5, 8
  x = rng.normal(size=(b, n, h, w, c)).astype(np.float32)
  keys = rng.normal(size=(n, c)).astype(np.float32)
  out = np.asarray(binding.hrr_bind(jnp.asarray(x), jnp.asarray(keys)[:, None, None, :]))
  for bi, ni, hi, wi in itertools.product(range(b), range(n), range(h), range(w)):
    np.testing.assert_allclose(out[bi, ni, hi, wi],
                               _circular_convolution(x[bi, ni, hi, wi], keys[ni]), atol=1e-5)
  # the same binding with the channel axis not last (NCHW-like layout)
  moved = binding.hrr_bind(jnp.asarray(np.moveaxis(x, -1, 2)),
                           jnp.asarray(keys)[:, :, None, None], axis=2)
  np.testing.assert_allclose(np.moveaxis(np.asarray(moved), 2, -1), out, atol=1e-5)


@pytest.mark.parametrize("c", [4, 8, 64])
def test_torch_pwhrr_index_map(c):
  """The torch conv1d form == hrr_bind with the permuted key."""
  rng = np.random.default_rng(c)
  x = rng.normal(size=(3, 2, c)).astype(np.float32)
  w = rng.uniform(-1 / np.sqrt(c), 1 / np.sqrt(c), size=(2, c)).astype(np.float32)
  ours = binding.hrr_bind(jnp.asarray(x), binding.torch_pwhrr_key_to_hrr(jnp.asarray(w)))
  np.testing.assert_allclose(np.asarray(ours), _torch_pwhrr(x, w), atol=1e-5)
  identity = np.eye(c, dtype=np.float32)[c // 2 - 1]
  np.testing.assert_array_equal(_torch_pwhrr(x, identity).astype(np.float32), x)
  np.testing.assert_allclose(
      np.asarray(binding.hrr_bind(jnp.asarray(x), binding.torch_pwhrr_key_to_hrr(identity))),
      x, atol=1e-6)


def test_torch_key_conversion_rejects_odd_dimension():
  with pytest.raises(ValueError, match="even"):
    binding.torch_pwhrr_key_to_hrr(jnp.zeros((2, 5)))


def test_hrr_unbind_exact_for_unitary_keys():
  c = 64
  rng = np.random.default_rng(0)
  phases = rng.uniform(-np.pi, np.pi, size=(4, c // 2 + 1))
  phases[:, 0] = 0.0
  phases[:, -1] = np.pi  # real bins of a real signal: +-1
  keys = np.fft.irfft(np.exp(1j * phases), n=c, axis=-1).astype(np.float32)
  x = rng.normal(size=(5, 4, c)).astype(np.float32)
  recovered = binding.hrr_unbind(binding.hrr_bind(jnp.asarray(x), keys), keys)
  np.testing.assert_allclose(np.asarray(recovered), x, atol=1e-5)


def test_hrr_unbind_approximate_for_gaussian_keys():
  c = 4096
  keys = binding.gaussian_keys(jax.random.key(0), (2, c))
  x = jax.random.normal(jax.random.key(1), (2, c))
  s = binding.superpose(binding.hrr_bind(x, keys), 0)
  for i in range(2):
    est = binding.hrr_unbind(s, keys[i])
    cosine = jnp.dot(est, x[i]) / (jnp.linalg.norm(est) * jnp.linalg.norm(x[i]))
    other = jnp.dot(est, x[1 - i]) / (jnp.linalg.norm(est) * jnp.linalg.norm(x[1 - i]))
    assert float(cosine) > 0.5 and abs(float(other)) < 0.1


def test_hrr_shape_errors():
  with pytest.raises(ValueError, match="key dimension 8"):
    binding.hrr_bind(jnp.zeros((2, 8)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="axis = 3"):
    binding.hrr_bind(jnp.zeros((2, 8)), jnp.zeros((8,)), axis=3)


def test_hrr_gradients_and_transforms():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 2, 8)).astype(np.float32))
  k = jnp.asarray(rng.normal(size=(2, 8)).astype(np.float32))
  loss = lambda x, k: jnp.sum(jnp.sin(binding.hrr_bind(x, k)))
  gx, gk = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
  assert gx.dtype == jnp.float32 and gk.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(gx))) and np.all(np.isfinite(np.asarray(gk)))
  # binding is linear in x: grad of <hrr_bind(x, k), g> w.r.t. x is hrr_unbind(g, k)
  g = jnp.asarray(rng.normal(size=(3, 2, 8)).astype(np.float32))
  adj = jax.grad(lambda v: jnp.sum(binding.hrr_bind(v, k) * g))(x)
  np.testing.assert_allclose(np.asarray(adj), np.asarray(binding.hrr_unbind(g, k)), atol=1e-5)
  batched = jax.vmap(binding.hrr_bind)(x, jnp.stack([k, k, k]))
  np.testing.assert_allclose(np.asarray(batched), np.asarray(binding.hrr_bind(x, k)), atol=1e-6)


@pytest.mark.parametrize("matrix_shape", [(6, 5), (3, 6, 5)])
def test_mbat_unbind_matches_loop(matrix_shape):
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, 3, 6)).astype(np.float32)
  matrix = rng.normal(size=matrix_shape).astype(np.float32)
  out = np.asarray(binding.mbat_unbind(jnp.asarray(h), jnp.asarray(matrix)))
  expected = np.zeros((2, 3, 5))
  for b, n, d, e in itertools.product(range(2), range(3), range(6), range(5)):
    mat = matrix if matrix.ndim == 2 else matrix[n]
    expected[b, n, e] += h[b, n, d] * mat[d, e]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="D = h.shape"):
    binding.mbat_unbind(jnp.asarray(h), jnp.zeros((5, 5)))


def _key_penalty_loop(keys):
  n = keys.shape[0]
  norms = [np.linalg.norm(k) for k in keys]
  pairs = [(keys[i] @ keys[j] / (norms[i] * norms[j])) ** 2
           for i in range(n) for j in range(i + 1, n)]
  return (np.mean(pairs) if pairs else 0.0) + np.mean([(v - 1) ** 2 for v in norms])


def test_key_orthonormality_penalty():
  rng = np.random.default_rng(0)
  keys = rng.normal(size=(4, 16))
  np.testing.assert_allclose(
      float(binding.key_orthonormality_penalty(jnp.asarray(keys, jnp.float32))),
      _key_penalty_loop(keys), rtol=1e-5)
  orthonormal = np.linalg.qr(rng.normal(size=(16, 4)))[0].T
  assert float(binding.key_orthonormality_penalty(jnp.asarray(orthonormal))) < 1e-10
  unit = np.eye(8)[0]
  np.testing.assert_allclose(
      float(binding.key_orthonormality_penalty(jnp.asarray(np.stack([unit, unit])))), 1.0,
      rtol=1e-6)
  single = np.full((1, 8), 0.5)
  np.testing.assert_allclose(float(binding.key_orthonormality_penalty(jnp.asarray(single))),
                             (np.linalg.norm(single) - 1) ** 2, rtol=1e-6)
  grad = jax.jit(jax.grad(binding.key_orthonormality_penalty))(jnp.asarray(keys, jnp.float32))
  assert np.all(np.isfinite(np.asarray(grad)))
  with pytest.raises(ValueError, match="\\(N, D\\)"):
    binding.key_orthonormality_penalty(jnp.zeros((8,)))


def test_circulant_product_is_circular_convolution():
  rng = np.random.default_rng(3)
  keys = rng.normal(size=(3, 7)).astype(np.float32)
  x = rng.normal(size=(5, 3, 7)).astype(np.float32)
  circ = np.asarray(binding.circulant(jnp.asarray(keys)))
  chex.assert_shape(circ, (3, 7, 7))
  assert circ[1, 4, 2] == keys[1, 2] and circ[1, 0, 6] == keys[1, 1]  # [i, j] = k[(i - j) % D]
  expected = np.real(np.fft.ifft(np.fft.fft(x) * np.fft.fft(keys)))  # circular convolution
  np.testing.assert_allclose(np.einsum("bnj,nij->bni", x, circ), expected, rtol=1e-5,
                             atol=1e-5)
