"""Tests for mimojax.ops.multiplex against explicit loops and the invariants of DataMUX's
muxes (reference-baselines section 5: identity at N = 1, the Hadamard mean, disjoint binary
chunks, orthogonality and the 1/sqrt(N) mix, the index prefix, the retrieval targets)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax import ops


def _groups(rng, g=3, n=4, length=5, d=8):
  return jax.random.normal(rng, (g, n, length, d))


def test_gaussian_vectors_have_the_set_norm():
  v = ops.gaussian_vectors(jax.random.key(0), 5, 64, norm=20.0)
  np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 20.0, rtol=1e-5)


def test_hadamard_mux_is_the_mean_of_bound_instances_by_loop():
  x = _groups(jax.random.key(0))
  v = ops.gaussian_vectors(jax.random.key(1), 4, 8)
  expected = sum(np.asarray(x[:, i]) * np.asarray(v[i]) for i in range(4)) / 4
  np.testing.assert_allclose(ops.hadamard_mux(x, v), expected, rtol=1e-5, atol=1e-6)


def test_hadamard_mux_permutation_symmetry():
  x = _groups(jax.random.key(0))
  v = ops.gaussian_vectors(jax.random.key(1), 4, 8)
  perm = jnp.array([2, 0, 3, 1])
  np.testing.assert_allclose(ops.hadamard_mux(x[:, perm], v[perm]), ops.hadamard_mux(x, v),
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(ops.hadamard_mux(x[:, perm], v), ops.hadamard_mux(x, v))


def test_identity_at_one_instance():
  x = _groups(jax.random.key(0), n=1)
  np.testing.assert_array_equal(ops.hadamard_mux(x, jnp.ones((1, 8))), x[:, 0])
  np.testing.assert_allclose(ops.matrix_mux(x, jnp.eye(8)[None]), x[:, 0], rtol=1e-6)


@pytest.mark.parametrize("num,dim", [(4, 16), (3, 10), (5, 12)])
def test_binary_vectors_without_overlap_are_disjoint_chunks(num, dim):
  v = np.asarray(ops.binary_vectors(num, dim))
  np.testing.assert_array_equal(v.sum(axis=0), np.ones(dim))
  chunk = dim // num
  for i in range(num):
    end = dim if i == num - 1 else (i + 1) * chunk
    np.testing.assert_array_equal(np.flatnonzero(v[i]), np.arange(i * chunk, end))


def test_binary_mux_is_an_exact_chunked_concatenation():
  x = _groups(jax.random.key(0), n=4, d=16)
  muxed = ops.hadamard_mux(x, ops.binary_vectors(4, 16))
  expected = np.concatenate([np.asarray(x[:, i, :, 4 * i:4 * i + 4]) for i in range(4)], -1) / 4
  np.testing.assert_allclose(muxed, expected, rtol=1e-6)


def test_binary_overlap_widens_inner_boundaries():
  v = np.asarray(ops.binary_vectors(2, 20, overlap=0.4))  # chunk 10, 2 features each side
  np.testing.assert_array_equal(np.flatnonzero(v[0]), np.arange(0, 12))
  np.testing.assert_array_equal(np.flatnonzero(v[1]), np.arange(8, 20))


def test_haar_matrices_are_orthogonal():
  w = np.asarray(ops.haar_orthogonal(jax.random.key(0), 3, 16))
  for i in range(3):
    np.testing.assert_allclose(w[i] @ w[i].T, np.eye(16), atol=1e-5)
  assert not np.allclose(w[0], w[1])


def test_orthogonal_mux_then_transpose_recovers_a_lone_instance():
  """With the other instances zero, W_i^T (sqrt(N) x) returns instance i."""
  x = _groups(jax.random.key(0))
  x = x.at[:, 1:].set(0.0)
  w = ops.haar_orthogonal(jax.random.key(1), 4, 8)
  muxed = ops.matrix_mux(x, w)
  recovered = 2.0 * jnp.einsum("gld,de->gle", muxed, w[0])  # x W_0 = (W_0^T x^T)^T
  np.testing.assert_allclose(recovered, x[:, 0], atol=1e-5)


def test_matrix_mux_by_loop_uses_one_over_sqrt_n():
  x = _groups(jax.random.key(0))
  w = ops.haar_orthogonal(jax.random.key(1), 4, 8)
  expected = sum(np.asarray(x[:, i]) @ np.asarray(w[i]).T for i in range(4)) / 2.0
  np.testing.assert_allclose(ops.matrix_mux(x, w), expected, rtol=1e-5, atol=1e-5)


def test_low_rank_matrices_project_on_disjoint_subspaces():
  w = np.asarray(ops.low_rank_matrices(jax.random.key(0), 4, 16))
  for i in range(4):
    assert np.linalg.matrix_rank(w[i], tol=1e-4) == 4
    for j in range(4):
      # rows of W_i^T W_j: products of the chunk-i and chunk-j columns of one orthogonal H
      np.testing.assert_allclose(w[i].T @ w[j], 0.0 if i != j else w[i].T @ w[i], atol=1e-5)
  # the sum over instances of W_i is U H^T, an orthogonal matrix
  total = w.sum(axis=0)
  np.testing.assert_allclose(total @ total.T, np.eye(16), atol=1e-5)


def test_index_prefix_layout():
  ids = jnp.arange(2 * 3 * 4).reshape(6, 4) + 1
  out = np.asarray(ops.index_prefix(ids, 3, first_id=100))
  assert out.shape == (6, 3 + 1 + 4)
  for row in range(6):
    i = row % 3
    expected = [100 + i if j == i else 103 for j in range(3)] + [104]
    np.testing.assert_array_equal(out[row, :4], expected)
    np.testing.assert_array_equal(out[row, 4:], ids[row])
  diagonal = [out[i, i] for i in range(3)]
  assert len(set(diagonal)) == 3


def test_index_prefix_rejects_partial_groups():
  with pytest.raises(ValueError, match="not divisible"):
    ops.index_prefix(jnp.zeros((5, 4), jnp.int32), 2, first_id=10)


def test_retrieval_targets_point_at_the_chosen_instance_and_token():
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 50, (3, 4, 6))
  choice = rng.integers(0, 4, (3, 6))
  out = np.asarray(ops.retrieval_targets(jnp.asarray(ids), jnp.asarray(choice)))
  for g in range(3):
    for t in range(6):
      assert out[g, t] == ids[g, choice[g, t], t]
  # one instance: the task is copying
  np.testing.assert_array_equal(
      ops.retrieval_targets(jnp.asarray(ids[:, :1]), jnp.zeros((3, 6), jnp.int32)), ids[:, 0])


# ------------------------------------------------------------------ RevMUX


def _random_mlps(rng, num, dim, hidden=32):
  """N random F_j = ReLU(W2 ReLU(W1 x + b1) + b2) (the official F_j's shape, dropout off)."""
  fns = []
  for key in jax.random.split(rng, num):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    w1 = jax.random.normal(k1, (dim, hidden)) / np.sqrt(dim)
    w2 = jax.random.normal(k3, (hidden, dim)) / np.sqrt(hidden)
    b1, b2 = jax.random.normal(k2, (hidden,)), jax.random.normal(k4, (dim,))
    fns.append(lambda x, w1=w1, b1=b1, w2=w2, b2=b2: jax.nn.relu(
        jax.nn.relu(x @ w1 + b1) @ w2 + b2))
  return fns


@pytest.mark.parametrize("num", [1, 2, 4, 8, 16])
def test_revmux_demux_inverts_mux_exactly(num):
  u = jax.random.normal(jax.random.key(0), (3, num, 5, 6))
  fns = _random_mlps(jax.random.key(1), num, 6)
  o = ops.revmux_mux(u, fns)
  assert o.shape == (3, 5, num * 6)
  np.testing.assert_allclose(ops.revmux_demux(o, fns), u, rtol=1e-5, atol=1e-5)


def test_revmux_n2_is_the_poster_coupling():
  u = jax.random.normal(jax.random.key(0), (2, 2, 4))
  f, g = _random_mlps(jax.random.key(1), 2, 4)
  o1 = u[:, 0] + f(u[:, 1])
  o2 = u[:, 1] + g(o1)
  np.testing.assert_allclose(ops.revmux_mux(u, [f, g]), np.concatenate([o1, o2], -1),
                             rtol=1e-6)


def test_revmux_layout_is_contiguous_blocks():
  """Invariant 18: with F_j = 0 the mux is the concatenation of whole instance blocks (the
  official code interleaves feature j*N + k) and the demux slices the same blocks."""
  u = jax.random.normal(jax.random.key(0), (2, 4, 3, 5))
  zero = [lambda x: jnp.zeros_like(x)] * 4
  o = ops.revmux_mux(u, zero)
  np.testing.assert_array_equal(o, np.concatenate([u[:, k] for k in range(4)], axis=-1))
  np.testing.assert_array_equal(ops.revmux_demux(o, zero), u)


def test_revmux_chain_mixes_every_instance_into_the_last_block():
  u = jax.random.normal(jax.random.key(0), (1, 4, 6))
  fns = _random_mlps(jax.random.key(1), 4, 6)
  base = ops.revmux_mux(u, fns)
  moved = ops.revmux_mux(u.at[:, 1].add(1.0), fns)
  assert not np.allclose(base[..., -6:], moved[..., -6:])


def test_revmux_rejects_mismatched_sizes():
  with pytest.raises(ValueError, match="needs 3 functions"):
    ops.revmux_mux(jnp.zeros((1, 3, 4)), [jnp.tanh] * 2)
  with pytest.raises(ValueError, match="not divisible"):
    ops.revmux_demux(jnp.zeros((1, 10)), [jnp.tanh] * 3)


def test_revmux_gradients_of_mux_and_demux_accumulate_on_the_shared_maps():
  """Invariant 14: one set of F_k parameters serves both paths, so its gradient is the sum of
  the gradient through the mux and the gradient through the demux."""
  num, dim = 4, 6
  u = jax.random.normal(jax.random.key(0), (2, num, 3, dim))
  theta = [jax.random.normal(k, (dim, dim)) / np.sqrt(dim)
           for k in jax.random.split(jax.random.key(1), num)]
  fns = lambda ws: [lambda x, w=w: jnp.tanh(x @ w) for w in ws]

  def loss(mux_ws, demux_ws):  # a nonlinear "backbone" between mux and demux
    o = jnp.sin(ops.revmux_mux(u, fns(mux_ws)))
    return jnp.sum(ops.revmux_demux(o, fns(demux_ws)) ** 2)
  shared = jax.grad(lambda ws: loss(ws, ws))(theta)
  via_mux, via_demux = jax.grad(loss, argnums=(0, 1))(theta, theta)
  for s, a, b in zip(shared, via_mux, via_demux):
    np.testing.assert_allclose(s, a + b, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(a)).sum() > 0 and np.abs(np.asarray(b)).sum() > 0
