"""Optimisers and learning-rate schedules (optax) built from `config.opt`.

Schedules:
- `constant`.
- `warmup_linear`: linear from `init_lr` to `learning_rate` over the warm-up, then linear to 0
  (safari's associative-recall recipe, HazyResearch/safari:
  `configs/experiment/synthetics/associative_recall/base.yaml`).
- `warmup_cosine`: linear warm-up from `init_lr`, then cosine to `min_lr` over all steps
  counted from 0, so the learning rate at the end of the warm-up is already a little below
  the peak (safari's induction-head recipe: timm's cosine scheduler, `warmup_prefix=False`;
  HazyResearch/safari: `configs/experiment/synthetics/induction_head/base.yaml`).
- `one_cycle`: PyTorch OneCycleLR defaults used by the official MIMONets code
  (div_factor 25, final_div_factor 1e4, `anneal` cos or linear) with optional momentum /
  beta1 cycling 0.95 -> 0.85 -> 0.95 (IBM/multiple-input-multiple-output-nets:
  `MIMOConv/src/train_superposition.py`, `MIMOFormer/code/run_tasks.py`).
"""

from __future__ import annotations

import functools
import math
import re
import typing

import jax
import jax.numpy as jnp
import optax

ALLOWED_OPTIMIZERS = ("adamw", "sgd")
ALLOWED_SCHEDULES = ("constant", "warmup_linear", "warmup_cosine", "one_cycle")
ALLOWED_ANNEAL = ("cos", "linear")

# `opt.decay_exempt`: parameters whose '/'-joined path matches (re.search) get no weight
# decay. Default: biases, norm scales and PReLU/SReLU slopes/thresholds.
DEFAULT_DECAY_EXEMPT = r"(^|/)(bias|scale|slope|threshold)$"


def _anneal(kind: str, start: float, end: float, frac):
  if kind == "cos":
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(math.pi * frac))
  return start * (1.0 - frac) + end * frac


def one_cycle(total_steps: int, peak: float, pct_start: float, anneal: str = "cos",
              div_factor: float = 25.0, final_div_factor: float = 1e4,
              low: float | None = None, high: float | None = None):
  """OneCycleLR as torch defines it (two phases, phase ends at pct*T - 1 and T - 1).

  With `low`/`high` it returns the inverse cycle used for momentum (high -> low -> high).
  """
  start, end = peak / div_factor, peak / div_factor / final_div_factor
  if low is not None:
    start, peak, end = high, low, high
  up_end = float(pct_start * total_steps) - 1.0
  down_end = float(total_steps) - 1.0

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    up = _anneal(anneal, start, peak, jnp.clip(step / jnp.maximum(up_end, 1e-9), 0.0, 1.0))
    down = _anneal(anneal, peak, end,
                   jnp.clip((step - up_end) / jnp.maximum(down_end - up_end, 1e-9), 0.0, 1.0))
    return jnp.where(step <= up_end, up, down)

  return schedule


def learning_rate_schedule(opt, total_steps: int):
  """The learning rate as a function of the step, from `config.opt`."""
  warmup = int(round(opt.warmup_fraction * total_steps))
  peak = opt.learning_rate
  if opt.schedule == "constant":
    return optax.constant_schedule(peak)
  if opt.schedule == "warmup_linear":
    return optax.join_schedules([
        optax.linear_schedule(opt.init_lr, peak, max(warmup, 1)),
        optax.linear_schedule(peak, 0.0, max(total_steps - warmup, 1)),
    ], [warmup])
  if opt.schedule == "warmup_cosine":
    # timm's CosineLRScheduler as safari runs it (warmup_prefix=False): the cosine spans the
    # steps from 0, and the warm-up replaces its first part.
    return lambda step: jnp.where(
        step < warmup, _anneal("linear", opt.init_lr, peak, step / max(warmup, 1)),
        _anneal("cos", peak, opt.min_lr, jnp.minimum(step / max(total_steps, 1), 1.0)))
  return one_cycle(total_steps, peak, opt.warmup_fraction, opt.anneal)


# The state of a schedule injected by WrappedSchedule, read from its annotation: creating
# one would start a JAX backend at import, before jax.distributed.initialize can run.
_ScheduleState = typing.get_type_hints(optax.WrappedSchedule.init)["return"]


def advance_schedules(opt_state):
  """`opt_state` with every injected schedule one step on and nothing else changed: what a
  skipped batch does to the optimiser (torch's scheduler steps on skipped batches too)."""
  return jax.tree.map(
      lambda node: (node._replace(count=node.count + 1)
                    if isinstance(node, _ScheduleState) else node),
      opt_state, is_leaf=lambda node: isinstance(node, _ScheduleState))


def weight_decay_mask(params, exempt: str = DEFAULT_DECAY_EXEMPT):
  """True for leaves that receive weight decay: those whose path does not match `exempt`."""
  pattern = re.compile(exempt)

  def keep(path, _):
    return not pattern.search("/".join(str(getattr(k, "key", k)) for k in path))
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(opt, total_steps: int) -> optax.GradientTransformation:
  """optax optimiser for `config.opt` over `total_steps` steps."""
  lr = learning_rate_schedule(opt, total_steps)
  exempt = opt.decay_exempt
  mask = functools.partial(weight_decay_mask, exempt=exempt)
  momentum = opt.b1
  if opt.schedule == "one_cycle" and opt.cycle_momentum:
    momentum = one_cycle(total_steps, opt.learning_rate, opt.warmup_fraction, opt.anneal,
                         low=0.85, high=0.95)
  if opt.name == "adamw":
    core = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=lr, b1=momentum, b2=opt.b2, eps=opt.eps,
        weight_decay=opt.weight_decay, mask=mask)
  else:
    # L2 decay added to the gradient before momentum, as torch.optim.SGD does.
    core = optax.chain(
        optax.add_decayed_weights(opt.weight_decay, mask=mask),
        optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum))
  if opt.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), core)
  return core
