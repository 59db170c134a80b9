"""The pure train step: objective (mixup, regularisers), NaN/Inf and gradient-norm batch
skipping, schedules advancing on skipped batches, frozen keys (paper App. E.1; official code:
IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/train_superposition.py``)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mimojax import ops
from mimojax.configs import base
from mimojax.models.wide_resnet import MIMOConv
from mimojax.nn.attention import LOSSES
from mimojax.train import optim
from mimojax.train import step


class Linear(nn.Module):
  """Logits = flatten(x) @ W + b."""

  @nn.compact
  def __call__(self, inputs, *, train):
    del train
    return nn.Dense(3, name="dense")(inputs.reshape(inputs.shape[0], -1))


class RegularizedLinear(Linear):
  """`Linear` with reg_weight * sum(W**2) as its model regulariser (the hook MIMOConv and
  WideIsoNet use)."""
  reg_weight: float = 0.0

  @nn.nowrap
  def regularization_loss(self, params, model_state=None):
    del model_state
    return self.reg_weight * jnp.sum(params["dense"]["kernel"] ** 2)


def batch(scale=1.0, seed=0):
  rng = np.random.default_rng(seed)
  return {"inputs": jnp.asarray(scale * rng.normal(size=(8, 4)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, 8), jnp.int32)}


def setup(model, tx):
  return step.init_state(model, tx, jax.random.key(0), batch())


def ce(model, params, x, labels):
  return ops.cross_entropy(model.apply({"params": params}, x, train=True), labels)


def flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_mixup_objective_is_the_lam_weighted_pair_of_cross_entropies():
  model, b, rng = Linear(), batch(), jax.random.key(7)
  state = setup(model, optax.sgd(0.0))
  _, metrics = step.make_train_step(model, optax.sgd(0.0), "classification",
                                    mixup_alpha=1.0)(state, b, rng)
  # the step's randomness: fold_in(rng, step), first split feeds mixup
  _, mixup_rng = jax.random.split(jax.random.fold_in(rng, 0))
  mixed, la, lb, lam = ops.mixup(mixup_rng, b["inputs"], b["label"], 1.0)
  assert 0.0 < float(lam) < 1.0
  expected = lam * ce(model, state.params, mixed, la) + (1 - lam) * ce(model, state.params,
                                                                       mixed, lb)
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
  assert float(metrics["loss"]) != pytest.approx(float(ce(model, state.params, b["inputs"],
                                                           b["label"])), rel=1e-3)


def test_regulariser_is_added_to_the_objective():
  lr, model, b = 0.1, RegularizedLinear(reg_weight=0.3), batch()
  tx = optax.sgd(lr)
  state = setup(model, tx)
  new, metrics = step.make_train_step(model, tx, "classification")(state, b, jax.random.key(0))

  def objective(params):
    return ce(model, params, b["inputs"], b["label"]) + 0.3 * jnp.sum(
        params["dense"]["kernel"] ** 2)

  expected = jax.tree.map(lambda p, g: p - lr * g, state.params, jax.grad(objective)(
      state.params))
  np.testing.assert_allclose(flat(new.params), flat(expected), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["regularization"],
                             0.3 * np.sum(np.asarray(state.params["dense"]["kernel"]) ** 2),
                             rtol=1e-6)
  # the reported loss is the task loss alone
  np.testing.assert_allclose(metrics["loss"], ce(model, state.params, b["inputs"], b["label"]),
                             rtol=1e-6)


class SowingLinear(Linear):
  """`Linear` that sows 0.3 * sum(W**2) and 0.1 * sum(b**2) into the "losses" collection in
  training, as FAVOR+S does with `mimo.mass_balance`."""

  @nn.compact
  def __call__(self, inputs, *, train):
    dense = nn.Dense(3, name="dense")
    out = dense(inputs.reshape(inputs.shape[0], -1))
    if train and not self.is_initializing():
      self.sow(LOSSES, "kernel", 0.3 * jnp.sum(dense.variables["params"]["kernel"] ** 2))
      self.sow(LOSSES, "bias", 0.1 * jnp.sum(dense.variables["params"]["bias"] ** 2))
    return out


def test_sown_loss_terms_are_added_to_the_objective():
  lr, model, b = 0.1, SowingLinear(), batch()
  tx = optax.sgd(lr)
  state = setup(model, tx)
  assert LOSSES not in state.model_state
  new, metrics = step.make_train_step(model, tx, "classification")(state, b, jax.random.key(0))

  def objective(params):
    return (ce(model, params, b["inputs"], b["label"])
            + 0.3 * jnp.sum(params["dense"]["kernel"] ** 2)
            + 0.1 * jnp.sum(params["dense"]["bias"] ** 2))

  expected = jax.tree.map(lambda p, g: p - lr * g, state.params, jax.grad(objective)(
      state.params))
  np.testing.assert_allclose(flat(new.params), flat(expected), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["regularization"], objective(state.params) - ce(
      model, state.params, b["inputs"], b["label"]), rtol=1e-5)
  assert LOSSES not in new.model_state
  assert "regularization" not in step.make_train_step(Linear(), tx, "classification")(
      setup(Linear(), tx), b, jax.random.key(0))[1]


def one_cycle_sgd(total=10):
  c = base.base_config().opt
  c.name, c.schedule, c.cycle_momentum, c.learning_rate, c.warmup_fraction = (
      "sgd", "one_cycle", True, 0.2, 0.3)
  return optim.make_optimizer(c, total)


def momentum_trace(opt_state):
  traces = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(
      n, optax.TraceState)) if isinstance(s, optax.TraceState)]
  return flat(traces[0].trace)


def schedule_counts(opt_state):
  """The counts of every injected schedule (learning rate and momentum)."""
  is_schedule = lambda n: type(n).__name__ == "WrappedScheduleState"
  return {int(n.count) for n in jax.tree.leaves(opt_state, is_leaf=is_schedule)
          if is_schedule(n)}


def test_nonfinite_batch_is_skipped_counted_and_the_schedule_still_steps():
  model, tx = Linear(), one_cycle_sgd()
  train_step = jax.jit(step.make_train_step(model, tx, "classification"))
  state, _ = train_step(setup(model, tx), batch(), jax.random.key(0))
  bad = batch()
  bad["inputs"] = bad["inputs"].at[0, 0].set(jnp.nan)
  skipped, metrics = train_step(state, bad, jax.random.key(0))
  assert float(metrics["skipped"]) == 1.0 and float(metrics["skipped_grad_norm"]) == 0.0
  np.testing.assert_array_equal(flat(skipped.params), flat(state.params))
  np.testing.assert_array_equal(momentum_trace(skipped.opt_state), momentum_trace(state.opt_state))
  assert schedule_counts(state.opt_state) == {1} and schedule_counts(skipped.opt_state) == {2}
  assert (int(skipped.nonfinite_total), int(skipped.nonfinite_streak)) == (1, 1)
  again, _ = train_step(skipped, bad, jax.random.key(0))
  assert (int(again.nonfinite_total), int(again.nonfinite_streak)) == (2, 2)
  good, metrics = train_step(again, batch(seed=1), jax.random.key(0))
  assert float(metrics["skipped"]) == 0.0
  assert (int(good.nonfinite_total), int(good.nonfinite_streak)) == (2, 0)
  assert schedule_counts(good.opt_state) == {4}  # the schedule counted the skipped batches


def test_gradient_norm_skipping_uses_ten_times_the_previous_epoch_mean():
  model, tx = Linear(), optax.sgd(0.01)
  train_step = jax.jit(step.make_train_step(model, tx, "classification", grad_skip_factor=10.0,
                                            steps_per_epoch=2))
  state = setup(model, tx)
  norms = []
  # epoch 0 has no limit: even a huge batch is accepted
  for b in (batch(seed=0), batch(scale=1e4, seed=1)):
    state, m = train_step(state, b, jax.random.key(0))
    assert float(m["skipped_grad_norm"]) == 0.0
    norms.append(float(m["grad_norm"]))
  assert np.isinf(float(state.grad_norm_limit))
  # epoch 1: limit = 10 x the mean of epoch 0's accepted norms
  before = state
  state, m = train_step(state, batch(scale=1e5, seed=2), jax.random.key(0))
  np.testing.assert_allclose(float(state.grad_norm_limit), 10 * np.mean(norms), rtol=1e-6)
  assert float(m["grad_norm"]) >= 10 * np.mean(norms)
  assert float(m["skipped_grad_norm"]) == 1.0 and float(m["skipped"]) == 0.0
  np.testing.assert_array_equal(flat(state.params), flat(before.params))
  assert int(state.nonfinite_total) == 0
  state, m = train_step(state, batch(seed=3), jax.random.key(0))
  assert float(m["skipped_grad_norm"]) == 0.0
  accepted = float(m["grad_norm"])
  # epoch 2: only the accepted batch of epoch 1 counts
  state, _ = train_step(state, batch(seed=4), jax.random.key(0))
  np.testing.assert_allclose(float(state.grad_norm_limit), 10 * accepted, rtol=1e-6)


def test_frozen_keys_receive_no_update_and_trainable_keys_do():
  x = {"inputs": jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32),
       "label": jnp.arange(4) % 3}
  for trainable in (False, True):
    model = MIMOConv(num_classes=3, num_channels=2, stage_sizes=(1,), width=1, initial_width=1,
                     activation="prelu", layout="official", trainable_keys=trainable)
    tx = optax.sgd(0.5)
    state = step.init_state(model, tx, jax.random.key(0), x)
    new, _ = step.make_train_step(model, tx, "classification")(state, x, jax.random.key(1))
    if trainable:
      assert not np.allclose(new.params["bind"]["keys"], state.params["bind"]["keys"])
    else:
      assert "bind" not in state.params
      np.testing.assert_array_equal(new.model_state["constants"]["bind"]["keys"],
                                    state.model_state["constants"]["bind"]["keys"])
      assert not np.allclose(new.params["classifier"]["kernel"],
                             state.params["classifier"]["kernel"])


@pytest.mark.parametrize("bad_weight", [np.nan, np.inf])
def test_nan_and_inf_loss_weights_both_skip_the_batch(bad_weight):
  model, tx = Linear(), one_cycle_sgd()
  train_step = jax.jit(step.make_train_step(model, tx, "classification"))
  state = setup(model, tx)
  bad = batch()
  bad["valid"] = jnp.ones(8, jnp.float32).at[3].set(bad_weight)
  skipped, metrics = train_step(state, bad, jax.random.key(0))
  assert float(metrics["skipped"]) == 1.0
  np.testing.assert_array_equal(flat(skipped.params), flat(state.params))
  assert (int(skipped.nonfinite_total), int(skipped.nonfinite_streak)) == (1, 1)
