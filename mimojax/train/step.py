"""Train state and the pure train/eval steps.

Every array in `TrainState` carries a leading seed axis when it goes through
`seed_vmap` (see `mimojax.train.loop`); the functions here see one model.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mimojax import ops


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # non-trainable collections: "constants" (frozen), "batch_stats"
  nonfinite_total: jax.Array  # updates skipped because loss or gradients were NaN/Inf
  nonfinite_streak: jax.Array  # consecutive skipped updates (the loop stops past a limit)


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
                    model_state=variables, nonfinite_total=zero, nonfinite_streak=zero)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, task_type: str):
  """Returns train_step(state, batch, rng) -> (state, metrics) for one model.

  The per-step randomness is fold_in(rng, step). An update whose loss or gradients are
  not finite is skipped (parameters and optimiser state unchanged) and counted.
  """

  def loss_fn(params, model_state, batch, rng):
    dropout_rng, features_rng = jax.random.split(rng)
    mutable = [k for k in model_state if k != "constants"]
    logits, updates = model.apply(
        {"params": params, **model_state}, **model_inputs(batch), train=True,
        rngs={"dropout": dropout_rng, "features": features_rng}, mutable=mutable)
    targets, weights = targets_and_weights(batch, task_type)
    loss = ops.cross_entropy(logits, targets, weights)
    acc = ops.accuracy(logits, targets, weights)
    return loss, (acc, updates)

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    (loss, (acc, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.model_state, batch, rng)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    deltas, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, deltas)
    new_model_state = {**state.model_state, **updates}
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    skipped = (~finite).astype(jnp.int32)
    state = TrainState(
        step=state.step + 1,
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
        model_state=keep(new_model_state, state.model_state),
        nonfinite_total=state.nonfinite_total + skipped,
        nonfinite_streak=(state.nonfinite_streak + skipped) * skipped)
    metrics = {"loss": loss, "accuracy": acc, "grad_norm": grad_norm,
               "skipped": skipped.astype(jnp.float32)}
    return state, metrics

  return train_step


def make_eval_step(model: nn.Module, task_type: str):
  """Returns eval_step(state, batch) -> sums of loss, correct predictions and weights."""

  def eval_step(state: TrainState, batch: dict):
    logits = model.apply({"params": state.params, **state.model_state},
                         **model_inputs(batch), train=False)
    targets, weights = targets_and_weights(batch, task_type)
    weights = jnp.broadcast_to(weights, targets.shape).astype(jnp.float32)
    total = jnp.sum(weights)
    # losses.* are weighted means; the host needs sums to pool batches exactly.
    return {"loss": ops.cross_entropy(logits, targets, weights) * total,
            "correct": ops.accuracy(logits, targets, weights) * total,
            "weight": total}

  return eval_step
