"""Tests for mimojax.ops.losses against numpy formulas."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.ops import losses


def _np_ce(logits, labels):
  logits = logits.astype(np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_z = np.log(np.exp(shifted).sum(-1)) + logits.max(-1)
  return log_z - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def _data(shape, classes=5, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=shape + (classes,)).astype(np.float32) * 3
  labels = rng.integers(0, classes, size=shape).astype(np.int32)
  return logits, labels


def test_cross_entropy_and_accuracy_unmasked():
  logits, labels = _data((6, 4))
  np.testing.assert_allclose(float(losses.cross_entropy(logits, labels)),
                             _np_ce(logits, labels).mean(), rtol=1e-6)
  np.testing.assert_allclose(float(losses.accuracy(logits, labels)),
                             (logits.argmax(-1) == labels).mean(), rtol=1e-6)


@pytest.mark.parametrize("mask_shape", [(6,), (6, 4)])
@pytest.mark.parametrize("as_bool", [True, False])
def test_masked_means_weight_by_mask(mask_shape, as_bool):
  logits, labels = _data((6, 4))
  rng = np.random.default_rng(1)
  mask = rng.random(mask_shape) < 0.6 if as_bool else rng.random(mask_shape).astype(np.float32)
  weights = np.broadcast_to(np.asarray(mask, np.float64).reshape(
      mask_shape + (1,) * (2 - len(mask_shape))), (6, 4))
  ce, correct = _np_ce(logits, labels), (logits.argmax(-1) == labels)
  np.testing.assert_allclose(float(losses.cross_entropy(logits, labels, mask)),
                             (ce * weights).sum() / weights.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(losses.accuracy(logits, labels, mask)),
                             (correct * weights).sum() / weights.sum(), rtol=1e-5)


def test_masked_positions_do_not_matter_and_empty_mask_is_zero():
  logits, labels = _data((4, 3))
  mask = np.array([[1, 0, 1]] * 4, np.float32)
  garbage = logits.copy()
  garbage[:, 1] = 1e4
  assert float(losses.cross_entropy(garbage, labels, mask)) == pytest.approx(
      float(losses.cross_entropy(logits, labels, mask)), rel=1e-6)
  bad_labels = labels.copy()
  bad_labels[:, 1] = 99  # out of range where masked
  assert float(losses.cross_entropy(logits, bad_labels, mask)) == pytest.approx(
      float(losses.cross_entropy(logits, labels, mask)), rel=1e-6)
  grad = jax.grad(losses.cross_entropy)(jnp.asarray(logits), bad_labels, mask)
  assert np.all(np.isfinite(np.asarray(grad))) and not np.any(np.asarray(grad)[:, 1])
  assert float(losses.cross_entropy(logits, labels, np.zeros((4,)))) == 0.0
  assert float(losses.accuracy(logits, labels, np.zeros((4, 3), bool))) == 0.0


def test_bfloat16_logits_computed_in_float32_and_gradients():
  logits, labels = _data((8,), classes=7)
  ce = losses.cross_entropy(jnp.asarray(logits, jnp.bfloat16), labels)
  assert ce.dtype == jnp.float32
  np.testing.assert_allclose(
      float(ce), _np_ce(np.asarray(jnp.asarray(logits, jnp.bfloat16), np.float32), labels).mean(),
      rtol=1e-5)
  grad = jax.jit(jax.grad(losses.cross_entropy))(jnp.asarray(logits), labels)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(grad), (probs - np.eye(7)[labels]) / 8, atol=1e-6)


def test_vmap_over_seeds():
  logits, labels = _data((3, 6))  # leading axis = seeds
  per_seed = jax.vmap(losses.cross_entropy)(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(np.asarray(per_seed), _np_ce(logits, labels).mean(-1), rtol=1e-6)


def test_loss_shape_errors():
  logits, labels = _data((4, 3))
  with pytest.raises(ValueError, match="labels shape"):
    losses.cross_entropy(logits[:, :2], labels)
  with pytest.raises(ValueError, match="prefix"):
    losses.accuracy(logits, labels, np.ones((3,)))


def test_mixup_one_lambda_one_permutation_and_beta_distribution():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 4, 3)).astype(np.float32)
  labels = np.arange(8, dtype=np.int32) + 10
  alpha = 0.4
  draws = jax.jit(jax.vmap(lambda key: losses.mixup(key, x, labels, alpha)))(
      jax.random.split(jax.random.key(0), 2000))
  mixed, labels_a, labels_b, lams = (np.asarray(v) for v in draws)
  chex.assert_shape(lams, (2000,))
  assert lams.dtype == np.float32
  assert np.all((lams >= 0) & (lams <= 1))
  assert np.mean(lams) == pytest.approx(0.5, abs=0.03)
  assert np.var(lams) == pytest.approx(0.25 / (2 * alpha + 1), rel=0.1)  # Beta(a, a) variance
  for i in range(3):  # one scalar lam and one permutation per draw
    np.testing.assert_array_equal(labels_a[i], labels)
    perm = labels_b[i] - 10
    np.testing.assert_array_equal(np.sort(perm), np.arange(8))
    np.testing.assert_allclose(mixed[i], lams[i] * x + (1 - lams[i]) * x[perm], rtol=1e-5,
                               atol=1e-6)
  off = losses.mixup(jax.random.key(1), x, labels, 0.0)
  np.testing.assert_array_equal(np.asarray(off[0]), x)
  assert float(off[3]) == 1.0


def test_mixup_errors():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="alpha"):
    losses.mixup(key, np.zeros((2, 3), np.float32), np.zeros((2,), np.int32), -1.0)
  with pytest.raises(ValueError, match="floating"):
    losses.mixup(key, np.zeros((2, 3), np.int32), np.zeros((2,), np.int32), 1.0)
  with pytest.raises(ValueError, match="batch axis"):
    losses.mixup(key, np.zeros((2, 3), np.float32), np.zeros((3,), np.int32), 1.0)


def _np_info_nce(student, teacher, temperature):
  s = student / np.linalg.norm(student, axis=1, keepdims=True)
  t = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
  logits = s @ t.T / temperature
  return _np_ce(logits, np.arange(len(s))).mean()


def test_info_nce_matches_numpy_and_bounds():
  rng = np.random.default_rng(0)
  student = rng.normal(size=(6, 16)).astype(np.float32)
  teacher = rng.normal(size=(6, 16)).astype(np.float32)
  np.testing.assert_allclose(float(losses.info_nce(student, teacher, 0.05)),
                             _np_info_nce(student, teacher, 0.05), rtol=1e-5)
  same = np.ones((5, 8), np.float32)  # all similarities equal
  np.testing.assert_allclose(float(losses.info_nce(same, same, 0.05)), np.log(5), rtol=1e-6)
  orthogonal = np.eye(5, 8, dtype=np.float32) * 3.0  # student == teacher, orthogonal rows
  assert float(losses.info_nce(orthogonal, orthogonal, 0.05)) <= np.log(1 + 4 * np.exp(-20)) + 1e-7


def test_info_nce_gradient_flows_to_student_only():
  rng = np.random.default_rng(1)
  student = jnp.asarray(rng.normal(size=(4, 8)).astype(np.float32))
  teacher = jnp.asarray(rng.normal(size=(4, 8)).astype(np.float32))
  g_student, g_teacher = jax.jit(jax.grad(losses.info_nce, argnums=(0, 1)), static_argnums=2)(
      student, teacher, 0.1)
  assert np.all(np.isfinite(np.asarray(g_student))) and np.any(np.asarray(g_student))
  assert not np.any(np.asarray(g_teacher))
  with pytest.raises(ValueError, match="\\(B, E\\)"):
    losses.info_nce(student, teacher[:3], 0.1)
  with pytest.raises(ValueError, match="temperature"):
    losses.info_nce(student, teacher, 0.0)


def test_pm1_mse_perfect_outputs_give_zero_and_matches_the_notebook_sum():
  labels = np.array([3, 0, 9, 3, 1, 7], np.int32)
  perfect = 2.0 * np.eye(10, dtype=np.float32)[labels] - 1.0
  assert float(losses.pm1_mse(perfect, labels)) == 0.0
  outputs = np.tanh(np.random.default_rng(0).normal(size=(6, 10))).astype(np.float32)
  np.testing.assert_allclose(float(losses.pm1_mse(outputs, labels)),
                             np.mean(0.5 * (perfect - outputs) ** 2), rtol=1e-6)
  # The DataMUX notebook sums the N instance slots' means: N x this mean over B = G*N rows.
  n = 2
  notebook = sum(np.mean(0.5 * (perfect[i::n] - outputs[i::n]) ** 2) for i in range(n))
  np.testing.assert_allclose(n * float(losses.pm1_mse(outputs, labels)), notebook, rtol=1e-6)
  mask = np.array([1, 1, 1, 0, 0, 0], np.float32)
  np.testing.assert_allclose(float(losses.pm1_mse(outputs, labels, mask)),
                             np.mean(0.5 * (perfect[:3] - outputs[:3]) ** 2), rtol=1e-6)
