"""Train state and the pure train/eval steps.

Every array in `TrainState` carries a leading seed axis when it goes through
`seed_vmap` (see `mimojax.train.loop`); the functions here see one model.

The training objective is the task loss (`train.loss`: cross-entropy, or DataMUX's MSE on
one-vs-rest +-1 targets; with mixup, the lam-weighted pair of paper App. E.1) times the
phase's `task_weight` (0 in DataMUX's retrieval warm-up), plus
`model.regularization_loss(params, model_state)` for models that define it (MIMOConv /
WideIsoNet: gamma * isometry + mu * key penalty, App. B.2-B.3), plus every weighted term a
module sows into the "losses" collection in the training forward pass (FAVOR+S:
`mimo.mass_balance`; DataMUX: the weighted retrieval loss), each also reported under its
sown name. A batch is skipped -- parameters, optimiser moments and BatchNorm statistics
unchanged, the learning-rate schedule still advanced as torch's `scheduler.step()` is --
when its loss, gradient norm or a loss weight is NaN/Inf (a NaN weight would otherwise mask
its position to a zero loss), or, with `grad_skip_factor > 0`, when its gradient norm
reaches `grad_skip_factor` times the mean gradient norm of the previous epoch's accepted
batches (App. E.1; no limit in the first epoch).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mimojax import ops
from mimojax.nn.attention import LOSSES
from mimojax.train import optim


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # non-trainable collections: "constants" (frozen), "batch_stats"
  nonfinite_total: jax.Array  # updates skipped because loss or gradients were NaN/Inf
  nonfinite_streak: jax.Array  # consecutive skipped updates (the loop stops past a limit)
  grad_norm_limit: jax.Array  # batches with a gradient norm >= this are skipped (inf: none)
  grad_norm_sum: jax.Array  # sum and count of accepted gradient norms in the current epoch
  grad_norm_count: jax.Array


def model_inputs(batch: dict) -> dict:
  """Keyword arguments for the model from a batch."""
  kwargs = {"inputs": batch["inputs"]}
  if "inputs2" in batch:
    kwargs["inputs2"] = batch["inputs2"]
  return kwargs


def targets_and_weights(batch: dict, task_type: str):
  """(targets, weights): next tokens and their weights (lm) or labels and validity."""
  if task_type == "lm":
    weights = batch["weights"]
    if "valid" in batch:
      weights = weights * batch["valid"][:, None]
    return batch["targets"], weights
  weights = batch.get("valid", jnp.ones(batch["label"].shape, bool))
  return batch["label"], weights.astype(jnp.float32)


TASK_LOSSES = {"cross_entropy": ops.cross_entropy, "mse": ops.pm1_mse}


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
               batch: dict) -> TrainState:
  """Initialises parameters, frozen constants and optimiser state for one model."""
  params_rng, const_rng, dropout_rng = jax.random.split(rng, 3)
  variables = model.init(
      {"params": params_rng, "constants": const_rng, "dropout": dropout_rng},
      **model_inputs(batch), train=False)
  variables = dict(variables)
  params = variables.pop("params")
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params, opt_state=tx.init(params),
                    model_state=variables, nonfinite_total=zero, nonfinite_streak=zero,
                    grad_norm_limit=jnp.array(jnp.inf, jnp.float32),
                    grad_norm_sum=jnp.zeros((), jnp.float32), grad_norm_count=zero)


def _grad_norm_limit(state: TrainState, factor: float, steps_per_epoch: int):
  """(limit, sum, count) for this step: at each epoch start the limit becomes factor x the
  mean accepted gradient norm of the epoch that ended (inf if it accepted none)."""
  if factor <= 0:
    return state.grad_norm_limit, state.grad_norm_sum, state.grad_norm_count
  new_epoch = (state.step > 0) & (state.step % steps_per_epoch == 0)
  count = state.grad_norm_count
  mean = state.grad_norm_sum / jnp.maximum(count, 1).astype(jnp.float32)
  limit = jnp.where(count > 0, factor * mean, jnp.inf)
  return (jnp.where(new_epoch, limit, state.grad_norm_limit),
          jnp.where(new_epoch, 0.0, state.grad_norm_sum),
          jnp.where(new_epoch, 0, count))


def _sown_terms(sown) -> dict:
  """{sow name: summed value} of the "losses" collection (every module's terms pooled)."""
  terms = {}
  for path, value in jax.tree_util.tree_flatten_with_path(sown)[0]:
    name = next(k.key for k in reversed(path) if isinstance(k, jax.tree_util.DictKey))
    terms[name] = terms.get(name, 0.0) + jnp.sum(value)
  return terms


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, task_type: str, *,
                    loss: str = "cross_entropy", task_weight: float = 1.0,
                    mixup_alpha: float = 0.0, grad_skip_factor: float = 0.0,
                    steps_per_epoch: int = 1):
  """Returns train_step(state, batch, rng) -> (state, metrics) for one model.

  The per-step randomness is fold_in(rng, step). See the module doc for the objective and
  the batch-skipping rules; `loss` is a key of `TASK_LOSSES`; `steps_per_epoch` delimits the
  epochs of the gradient-norm rule; `task_weight` scales the task loss (the phase's).
  """
  regularized = hasattr(model, "regularization_loss")
  task_loss = TASK_LOSSES[loss]

  def loss_fn(params, model_state, batch, rng):
    targets, weights = targets_and_weights(batch, task_type)
    inputs = model_inputs(batch)
    if mixup_alpha > 0:
      rng, mixup_rng = jax.random.split(rng)
      inputs["inputs"], targets, targets_b, lam = ops.mixup(
          mixup_rng, inputs["inputs"], targets, mixup_alpha)
    dropout_rng, features_rng = jax.random.split(rng)
    mutable = [k for k in model_state if k != "constants"] + [LOSSES]
    logits, updates = model.apply(
        {"params": params, **model_state}, **inputs, train=True,
        rngs={"dropout": dropout_rng, "features": features_rng}, mutable=mutable)
    updates = dict(updates)
    terms = _sown_terms(updates.pop(LOSSES, {}))
    task = task_loss(logits, targets, weights)
    acc = ops.accuracy(logits, targets, weights)
    if mixup_alpha > 0:
      task = lam * task + (1 - lam) * task_loss(logits, targets_b, weights)
      acc = lam * acc + (1 - lam) * ops.accuracy(logits, targets_b, weights)
    reg = model.regularization_loss(params, model_state) if regularized else jnp.zeros(())
    reg = reg + sum(terms.values())
    weights_finite = jnp.all(jnp.isfinite(jnp.asarray(weights, jnp.float32)))
    return task_weight * task + reg, (task, reg, acc, updates, weights_finite, terms)

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    (objective, (loss, reg, acc, updates, weights_finite, terms)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.model_state, batch, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(objective) & jnp.isfinite(grad_norm) & weights_finite
    limit, norm_sum, norm_count = _grad_norm_limit(state, grad_skip_factor, steps_per_epoch)
    accept = finite & (grad_norm < limit)
    deltas, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, deltas)
    new_model_state = {**state.model_state, **updates}
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, old)
    nonfinite = (~finite).astype(jnp.int32)
    state = TrainState(
        step=state.step + 1,
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, optim.advance_schedules(state.opt_state)),
        model_state=keep(new_model_state, state.model_state),
        nonfinite_total=state.nonfinite_total + nonfinite,
        nonfinite_streak=(state.nonfinite_streak + nonfinite) * nonfinite,
        grad_norm_limit=limit,
        grad_norm_sum=norm_sum + jnp.where(accept, grad_norm, 0.0),
        grad_norm_count=norm_count + accept.astype(jnp.int32))
    metrics = {"loss": loss, "accuracy": acc, "grad_norm": grad_norm,
               "skipped": nonfinite.astype(jnp.float32),
               "skipped_grad_norm": (finite & ~accept).astype(jnp.float32)}
    if regularized or terms:
      metrics["regularization"] = reg
    metrics.update(terms)
    return state, metrics

  return train_step


def over_batches(train_step):
  """Returns train_steps(state, batches, rng): `train_step` on each batch of a stack
  (leading step axis) in order, as one program (`lax.scan`); metrics gain a step axis."""

  def train_steps(state: TrainState, batches: dict, rng: jax.Array):
    return jax.lax.scan(lambda s, batch: train_step(s, batch, rng), state, batches)

  return train_steps


def make_eval_step(model: nn.Module, task_type: str, loss: str = "cross_entropy"):
  """Returns eval_step(state, batch) -> sums of the task loss (a key of `TASK_LOSSES`),
  correct predictions and weights."""

  def eval_step(state: TrainState, batch: dict):
    logits = model.apply({"params": state.params, **state.model_state},
                         **model_inputs(batch), train=False)
    targets, weights = targets_and_weights(batch, task_type)
    weights = jnp.broadcast_to(weights, targets.shape).astype(jnp.float32)
    total = jnp.sum(weights)
    # losses.* are weighted means; the host needs sums to pool batches exactly.
    return {"loss": TASK_LOSSES[loss](logits, targets, weights) * total,
            "correct": ops.accuracy(logits, targets, weights) * total,
            "weight": total}

  return eval_step
