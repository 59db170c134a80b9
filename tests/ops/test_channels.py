"""Tests for mimojax.ops.channels against explicit index loops."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.ops import channels


def _batch(b, *rest):
  return np.arange(b * int(np.prod(rest, dtype=int)), dtype=np.float32).reshape((b,) + rest)


@pytest.mark.parametrize("m,n", [(1, 1), (2, 2), (2, 3), (4, 1)])
def test_to_grid_index_order_and_round_trip(m, n):
  x = _batch(2 * m * n, 3, 2)
  grid = np.asarray(channels.to_grid(jnp.asarray(x), m, n))
  chex.assert_shape(grid, (2, m, n, 3, 2))
  for g in range(2):
    for i in range(m):
      for j in range(n):
        np.testing.assert_array_equal(grid[g, i, j], x[(g * m + i) * n + j])
  np.testing.assert_array_equal(np.asarray(channels.from_grid(grid)), x)


@pytest.mark.parametrize("num_channels,inputs_per_pass", [(4, 4), (4, 2), (4, 1), (6, 3), (1, 1)])
def test_assign_channels_puts_input_k_mod_n_in_channel_k(num_channels, inputs_per_pass):
  x = _batch(3 * inputs_per_pass, 2, 2, 5)
  y = np.asarray(channels.assign_channels(jnp.asarray(x), num_channels, inputs_per_pass))
  chex.assert_shape(y, (3, num_channels, 2, 2, 5))
  for g in range(3):
    for k in range(num_channels):
      np.testing.assert_array_equal(y[g, k], x[g * inputs_per_pass + k % inputs_per_pass])


@pytest.mark.parametrize("num_channels,inputs_per_pass", [(4, 4), (4, 2), (4, 1), (6, 2)])
def test_merge_replicas_averages_replicas(num_channels, inputs_per_pass):
  rng = np.random.default_rng(0)
  groups = 3
  y = rng.normal(size=(groups, num_channels, 7)).astype(np.float32)
  out = np.asarray(channels.merge_replicas(jnp.asarray(y), num_channels, inputs_per_pass))
  chex.assert_shape(out, (groups * inputs_per_pass, 7))
  for g in range(groups):
    for i in range(inputs_per_pass):
      replicas = [y[g, k] for k in range(num_channels) if k % inputs_per_pass == i]
      np.testing.assert_allclose(out[g * inputs_per_pass + i], np.mean(replicas, 0), rtol=1e-6)


def test_merge_inverts_assign():
  x = _batch(8, 3)
  for n in (1, 2, 4):
    assigned = channels.assign_channels(jnp.asarray(x), 4, n)
    np.testing.assert_array_equal(np.asarray(channels.merge_replicas(assigned, 4, n)), x)


def test_static_assignment_equals_grid_with_one_row():
  x = _batch(8, 5)
  np.testing.assert_array_equal(np.asarray(channels.assign_channels(jnp.asarray(x), 4, 4)),
                                np.asarray(channels.to_grid(jnp.asarray(x), 1, 4))[:, 0])


def test_jit_and_vmap():
  x = jnp.asarray(_batch(8, 3))
  jitted = jax.jit(lambda v: channels.from_grid(channels.to_grid(v, 2, 2)))
  np.testing.assert_array_equal(np.asarray(jitted(x)), np.asarray(x))
  seeds = jnp.stack([x, x + 1])
  out = jax.vmap(lambda v: channels.assign_channels(v, 4, 2))(seeds)
  chex.assert_shape(out, (2, 4, 4, 3))
  np.testing.assert_array_equal(np.asarray(out[1]),
                                np.asarray(channels.assign_channels(x + 1, 4, 2)))


def test_errors_name_sizes():
  x = jnp.zeros((6, 3))
  with pytest.raises(ValueError, match="batch size 6 .* m\\*n = 4"):
    channels.to_grid(x, 2, 2)
  with pytest.raises(ValueError, match="batch size 6 .* inputs_per_pass = 4"):
    channels.assign_channels(x, 4, 4)
  with pytest.raises(ValueError, match="inputs_per_pass = 3 must divide num_channels = 4"):
    channels.assign_channels(x, 4, 3)
  with pytest.raises(ValueError, match="num_channels = 4"):
    channels.merge_replicas(jnp.zeros((2, 3, 5)), 4, 2)
  with pytest.raises(ValueError, match="m must be a positive int"):
    channels.to_grid(x, 0, 2)
  with pytest.raises(ValueError, match="shape"):
    channels.from_grid(jnp.zeros((4, 2)))
