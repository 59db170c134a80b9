"""Tests for mimojax.ops.isometry against the brute-force Eq. 25."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.ops import isometry


def _brute_gram(kernel_hwio, stride):
  """O[a,b,c,d] = sum_{r,s,t} U[a, r, c*stride + s, d*stride + t] V[b, r, s, t] with U = V the
  torch-layout operator (W if C_i >= C_o else W^T), zero-padded by k - 1 on each side."""
  w = np.transpose(np.asarray(kernel_hwio, np.float64), (3, 2, 0, 1))  # (C_o, C_i, k, k)
  if w.shape[1] < w.shape[0]:
    w = np.transpose(w, (1, 0, 2, 3))
  k = w.shape[-1]
  padded = np.pad(w, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
  size = (padded.shape[-1] - k) // stride + 1
  gram = np.zeros((w.shape[0], w.shape[0], size, size))
  for c in range(size):
    for d in range(size):
      window = padded[:, :, c * stride:c * stride + k, d * stride:d * stride + k]
      gram[:, :, c, d] = np.einsum("arst,brst->ab", window, w)
  return gram


def _brute_penalty(kernel_hwio, stride):
  gram = _brute_gram(kernel_hwio, stride)
  delta = np.zeros_like(gram)
  centre = gram.shape[-1] // 2
  delta[:, :, centre, centre] = np.eye(gram.shape[0])
  return 0.5 * np.sum((gram - delta) ** 2)


@pytest.mark.parametrize("shape,stride,gram_size", [
    ((3, 3, 6, 4), 1, 5),   # C_i > C_o: W
    ((3, 3, 4, 6), 1, 5),   # C_i < C_o: W^T
    ((3, 3, 5, 5), 1, 5),   # square: W (official code's convention)
    ((3, 3, 6, 4), 2, 3),
    ((3, 3, 4, 6), 2, 3),
    ((1, 1, 4, 6), 2, 1),
    ((1, 1, 6, 4), 1, 1),
])
def test_gram_and_penalty_match_brute_force(shape, stride, gram_size):
  rng = np.random.default_rng(sum(shape) + stride)
  kernel = jnp.asarray(rng.normal(size=shape).astype(np.float32) * 0.3)
  gram = np.asarray(isometry.conv_gram(kernel, stride))
  c = min(shape[2], shape[3])
  chex.assert_shape(gram, (c, c, gram_size, gram_size))
  np.testing.assert_allclose(gram, _brute_gram(kernel, stride), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(float(isometry.conv_isometry_penalty(kernel, stride)),
                             _brute_penalty(kernel, stride), rtol=1e-6)


def test_square_case_uses_w_not_w_transpose():
  """At stride 2 the W and W^T Grams differ; the official code uses W for C_i == C_o
  (``ortho_conv`` in IBM/multiple-input-multiple-output-nets:
  ``MIMOConv/src/models/superwideisonet.py``)."""
  kernel = np.random.default_rng(3).normal(size=(3, 3, 4, 4)).astype(np.float32)
  ours = float(isometry.conv_isometry_penalty(jnp.asarray(kernel), 2))
  w_torch = np.transpose(kernel, (3, 2, 0, 1))
  padded = np.pad(w_torch, ((0, 0), (0, 0), (2, 2), (2, 2)))
  gram = np.zeros((4, 4, 3, 3))
  for c in range(3):
    for d in range(3):
      gram[:, :, c, d] = np.einsum("arst,brst->ab", padded[:, :, 2 * c:2 * c + 3, 2 * d:2 * d + 3],
                                   w_torch)
  gram[:, :, 1, 1] -= np.eye(4)
  np.testing.assert_allclose(ours, 0.5 * np.sum(gram**2), rtol=1e-6)
  transposed = float(isometry.conv_isometry_penalty(jnp.asarray(kernel.transpose(0, 1, 3, 2)), 2))
  assert abs(ours - transposed) > 1e-3


@pytest.mark.parametrize("c_in,c_out", [(6, 4), (4, 6), (5, 5)])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_for_dirac_kernel_with_orthogonal_centre(c_in, c_out, stride):
  rng = np.random.default_rng(c_in * c_out)
  q = np.linalg.qr(rng.normal(size=(max(c_in, c_out), max(c_in, c_out))))[0]
  kernel = np.zeros((3, 3, c_in, c_out), np.float32)
  kernel[1, 1] = q[:c_in, :c_out]  # orthonormal rows or columns
  assert float(isometry.conv_isometry_penalty(jnp.asarray(kernel), stride)) < 1e-10


@pytest.mark.parametrize("c_in,c_out", [(6, 4), (4, 6), (5, 5)])
def test_dense_penalty_is_one_by_one_case(c_in, c_out):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(c_in, c_out)).astype(np.float32)
  w_torch = w.T.astype(np.float64)  # (C_o, C_i)
  gram = w_torch @ w_torch.T if c_in >= c_out else w_torch.T @ w_torch
  expected = 0.5 * np.sum((gram - np.eye(gram.shape[0])) ** 2)
  np.testing.assert_allclose(float(isometry.dense_isometry_penalty(jnp.asarray(w))), expected,
                             rtol=1e-6)
  np.testing.assert_allclose(float(isometry.conv_isometry_penalty(jnp.asarray(w)[None, None])),
                             expected, rtol=1e-6)


def test_isometry_penalty_sums_selected_kernels():
  rng = np.random.default_rng(0)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))
  params = {
      "stem": {"kernel": normal(3, 3, 3, 8)},
      "block_0": {
          "conv1": {"kernel": normal(3, 3, 8, 16) * 0.2},
          "conv2": {"kernel": normal(3, 3, 16, 16) * 0.2},
          "downsample": {"kernel": normal(1, 1, 8, 16) * 0.2},
          "bn": {"scale": jnp.ones((16,)), "bias": jnp.zeros((16,))},
      },
      "unbind": {"kernel": normal(16, 32), "bias": jnp.zeros((32,))},
  }
  seen = []

  def include(path):
    seen.append(path)
    if not path.startswith("block_") or not path.endswith("kernel"):
      return None
    return 2 if ("conv1" in path or "downsample" in path) else 1

  penalty = lambda p: isometry.isometry_penalty(p, include)
  total, grads = jax.jit(jax.value_and_grad(penalty))(params)
  block = params["block_0"]
  expected = (_brute_penalty(block["conv1"]["kernel"], 2) + _brute_penalty(block["conv2"]["kernel"], 1)
              + _brute_penalty(block["downsample"]["kernel"], 2))
  assert total.dtype == jnp.float32
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)
  assert "block_0/conv1/kernel" in seen and "unbind/bias" in seen
  assert np.all(np.isfinite(np.asarray(grads["block_0"]["conv1"]["kernel"])))
  assert not np.any(np.asarray(grads["stem"]["kernel"]))
  assert float(isometry.isometry_penalty(params, lambda path: None)) == 0.0
  dense = isometry.isometry_penalty(params, lambda path: path == "unbind/kernel")
  np.testing.assert_allclose(float(dense),
                             float(isometry.dense_isometry_penalty(params["unbind"]["kernel"])),
                             rtol=1e-6)
  per_seed = jax.jit(jax.vmap(penalty))(jax.tree_util.tree_map(lambda v: jnp.stack([v, 2 * v]),
                                                               params))
  np.testing.assert_allclose(float(per_seed[0]), expected, rtol=1e-5)


def test_errors():
  with pytest.raises(ValueError, match="HWIO"):
    isometry.conv_isometry_penalty(jnp.zeros((3, 3, 4)))
  with pytest.raises(ValueError, match="stride"):
    isometry.conv_isometry_penalty(jnp.zeros((3, 3, 4, 4)), stride=3)
  with pytest.raises(ValueError, match="stride must be a positive int"):
    isometry.conv_isometry_penalty(jnp.zeros((3, 3, 4, 4)), stride=0)
  with pytest.raises(ValueError, match="dense kernel unbind/kernel"):
    isometry.isometry_penalty({"unbind": {"kernel": jnp.zeros((4, 4))}}, lambda path: 2)
  with pytest.raises(ValueError, match="bias"):
    isometry.isometry_penalty({"bias": jnp.zeros((4,))}, lambda path: 1)
  with pytest.raises(ValueError, match="\\(C_i, C_o\\)"):
    isometry.dense_isometry_penalty(jnp.zeros((4,)))
