"""`train_and_evaluate(config, workdir)`: the training loop every study runs.

It validates the config, builds data, model and optimiser, initialises `seeds.num`
independent models with `jit(vmap(init))`, restores the latest checkpoint in `workdir`
if there is one, trains with `jit(vmap(train_step))` over a (seed, data) mesh, scanned
over `train.steps_per_call` batches per call, evaluates every `eval.every_steps`, and
checkpoints state, data-iterator state and config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from mimojax import data as data_lib
from mimojax import models
from mimojax.train import checkpoint, mesh as mesh_lib, metrics as metrics_lib, optim, step

log = logging.getLogger("mimojax")
ALLOWED_SPLITS = ("train", "validation", "test")
_RAMP_STREAM = 1  # keeps the curriculum ramp's draws apart from is_slow_step's


def _step_draw(seed: int, step_index: int, *stream: int) -> float:
  """A uniform draw in [0, 1) seeded by (seed, step[, stream]): a resumed run repeats it,
  and every model seed of the run shares it."""
  return np.random.default_rng([seed, step_index, *stream]).random()


class ConfigError(ValueError):
  """A config value the run cannot use; raised before anything is compiled."""


class NonFiniteError(RuntimeError):
  """Raised when too many consecutive updates had NaN/Inf loss or gradients."""


def _choose(name, value, allowed):
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not allowed; choose from {list(allowed)}")


def _positive(name, value):
  if not isinstance(value, int) or value < 1:
    raise ValueError(f"{name}={value!r} must be a positive integer")


def steps_per_epoch(config, num_train_examples: int) -> int:
  """Steps of one epoch: `train.passes_per_epoch` traversals of the train split in full
  batches (MIMOConv traverses the data N times per epoch, App. E.1)."""
  return config.train.passes_per_epoch * (num_train_examples // config.train.batch_size)


def total_steps(config, num_train_examples: int) -> int:
  """Training length in steps: `train.num_steps`, or `train.num_epochs` whole epochs."""
  if config.train.num_epochs >= 0:
    return config.train.num_epochs * steps_per_epoch(config, num_train_examples)
  return config.train.num_steps


def validate(config) -> None:
  """Raises a one-line ValueError for config values the loop cannot run (no compilation)."""
  _choose("opt.name", config.opt.name, optim.ALLOWED_OPTIMIZERS)
  _choose("opt.schedule", config.opt.schedule, optim.ALLOWED_SCHEDULES)
  _choose("opt.anneal", config.opt.anneal, optim.ALLOWED_ANNEAL)
  if not 0.0 <= config.opt.warmup_fraction <= 1.0:
    raise ValueError(f"opt.warmup_fraction={config.opt.warmup_fraction} must be in [0, 1]")
  if not config.opt.learning_rate > 0:
    raise ValueError(f"opt.learning_rate={config.opt.learning_rate} must be > 0")
  if not 0.0 <= config.mimo.curriculum_fraction < 1.0:
    raise ValueError(
        f"mimo.curriculum_fraction={config.mimo.curriculum_fraction} must be in [0, 1)")
  ramp = config.mimo.curriculum_ramp_fraction
  if not 0.0 <= ramp <= 1.0 - config.mimo.curriculum_fraction:
    raise ValueError(f"mimo.curriculum_ramp_fraction={ramp} must be in [0, 1 - "
                     f"mimo.curriculum_fraction] = [0, {1.0 - config.mimo.curriculum_fraction}]")
  if ramp > 0 and config.mimo.curriculum_fraction == 0:
    raise ValueError(f"mimo.curriculum_ramp_fraction={ramp} needs a warm-up to ramp from: "
                     "set mimo.curriculum_fraction > 0 (or the ramp to 0)")
  exact = config.mimo.get("exact_kernel_fraction", 0.0)  # absent from configs of older runs
  if not 0.0 <= exact < 1.0:
    raise ValueError(f"mimo.exact_kernel_fraction={exact} must be in [0, 1)")
  model = config.get("model", {})
  if exact > 0 and (model.get("attention"), model.get("kernel")) != ("favor_s", "exp"):
    raise ValueError(
        f"mimo.exact_kernel_fraction={exact} needs model.attention = 'favor_s' and "
        f"model.kernel = 'exp' (got {model.get('attention')!r}, {model.get('kernel')!r}); "
        f"allowed otherwise: 0")
  if (config.train.num_steps >= 0) == (config.train.num_epochs >= 0):
    raise ValueError("set exactly one of train.num_steps and train.num_epochs (the other -1); "
                     f"got {config.train.num_steps} and {config.train.num_epochs}")
  for name in ("train.batch_size", "train.log_every_steps", "train.max_nonfinite_steps",
               "train.passes_per_epoch", "train.steps_per_call", "eval.every_steps",
               "eval.batch_size", "seeds.num", "mesh.seed", "checkpoint.every_steps",
               "checkpoint.keep"):
    group, field = name.split(".")
    _positive(name, config[group][field])
  for split in config.eval.splits:
    _choose("eval.splits", split, ALLOWED_SPLITS)
  for name in ("train.mixup_alpha", "train.grad_skip_factor"):
    group, field = name.split(".")
    if not config[group][field] >= 0:
      raise ValueError(f"{name}={config[group][field]} must be >= 0 (0: off)")
  if config.train.mixup_alpha > 0 and config.data.name not in data_lib.images.IMAGE_DATASETS:
    raise ValueError(f"train.mixup_alpha={config.train.mixup_alpha} needs an image dataset; "
                     f"data.name={config.data.name!r} is not one of "
                     f"{list(data_lib.images.IMAGE_DATASETS)} (set it to 0)")
  try:
    re.compile(config.opt.decay_exempt)
  except re.error as e:
    raise ValueError(f"opt.decay_exempt={config.opt.decay_exempt!r} is not a regular "
                     f"expression: {e}") from None
  _validate_inputs_per_pass(config)
  if config.train.steps_per_call > 1 and config.mimo.slow_fraction > 0:
    raise ValueError(f"train.steps_per_call={config.train.steps_per_call} needs "
                     "mimo.slow_fraction=0 (slow-mode batches are drawn one step at a "
                     "time); set train.steps_per_call=1")
  if config.seeds.num % config.mesh.seed:
    raise ValueError(f"seeds.num={config.seeds.num} must be divisible by "
                     f"mesh.seed={config.mesh.seed}")
  group = config.mimo.m * config.mimo.n  # inputs superposed together (1: none)
  for name in ("train.batch_size", "eval.batch_size"):
    group_name, field = name.split(".")
    if config[group_name][field] % group:
      raise ValueError(f"{name}={config[group_name][field]} must be divisible by the "
                       f"superposition group mimo.m * mimo.n = {group}")
  mesh = mesh_lib.make_mesh(config.mesh.seed, config.mesh.data)
  shards = mesh.shape["data"]
  for name in ("train.batch_size", "eval.batch_size"):
    group, field = name.split(".")
    if config[group][field] % shards:
      raise ValueError(f"{name}={config[group][field]} must be divisible by the {shards} "
                       "devices of the data axis")


def _validate_inputs_per_pass(config) -> None:
  """Dynamic MIMOConv fields: slow-mode training and the evaluated inputs-per-pass modes."""
  if not 0.0 <= config.mimo.slow_fraction <= 1.0:
    raise ValueError(f"mimo.slow_fraction={config.mimo.slow_fraction} must be in [0, 1]")
  modes = {"eval.inputs_per_pass": tuple(config.eval.inputs_per_pass)}
  if config.mimo.slow_fraction > 0:
    modes["mimo.slow_inputs_per_pass"] = (config.mimo.slow_inputs_per_pass,)
  divisors = [d for d in range(1, config.mimo.n + 1) if config.mimo.n % d == 0]
  for name, values in modes.items():
    if values and config.model.name != "mimoconv":
      raise ValueError(f"{name} is for model.name='mimoconv', got {config.model.name!r}")
    for n in values:
      if n not in divisors:
        raise ValueError(f"{name} value {n!r} must divide mimo.n={config.mimo.n}; "
                         f"allowed: {divisors}")


def _to_host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _seed_keys(config):
  """Per-seed (init, train) keys: seed i of the run is jax.random.key(config.seed + i)."""
  keys = jnp.stack([jax.random.key(config.seed + i) for i in range(config.seeds.num)])
  pairs = jax.vmap(lambda k: jax.random.split(k, 2))(keys)
  return pairs[:, 0], pairs[:, 1]


class Trainer:
  """Holds the compiled steps of one run; `train_and_evaluate` drives it."""

  def __init__(self, config, workdir: str):
    try:
      self._build(config, workdir)
    except ValueError as e:
      raise ConfigError(str(e)) from e

  def _build(self, config, workdir: str):
    validate(config)
    self.config = config
    self.workdir = workdir
    self.train_source, self.info = data_lib.load_split(config.data, "train")
    self.eval_sources = {s: data_lib.load_split(config.data, s)[0] for s in config.eval.splits}
    self.model = models.build_model(config, self.info)
    self.total_steps = total_steps(config, len(self.train_source))
    if self.total_steps < 1:
      raise ValueError(f"the run has {self.total_steps} training steps; raise "
                       "train.num_steps or train.num_epochs")
    self.curriculum_steps = int(config.mimo.curriculum_fraction * self.total_steps)
    self.ramp_steps = int(config.mimo.curriculum_ramp_fraction * self.total_steps)
    self.exact_steps = int(config.mimo.get("exact_kernel_fraction", 0.0) * self.total_steps)
    self.tx = optim.make_optimizer(config.opt, self.total_steps)
    self.mesh = mesh_lib.make_mesh(config.mesh.seed, config.mesh.data)
    seed_sh = mesh_lib.seed_sharding(self.mesh)
    batch_sh = mesh_lib.batch_sharding(self.mesh)
    stacked_sh = mesh_lib.batch_sharding(self.mesh, step_axis=True)
    task = self.info.task_type
    epoch_steps = max(steps_per_epoch(config, len(self.train_source)), 1)

    def compiled_train_step(model):
      """(state, batches with a leading step axis, keys) -> (state, metrics (seed, step))."""
      fn = step.make_train_step(model, self.tx, task, mixup_alpha=config.train.mixup_alpha,
                                grad_skip_factor=config.train.grad_skip_factor,
                                steps_per_epoch=epoch_steps)
      return jax.jit(jax.vmap(step.over_batches(fn), in_axes=(0, None, 0)),
                     in_shardings=(seed_sh, stacked_sh, seed_sh),
                     out_shardings=(seed_sh, seed_sh), donate_argnums=0)

    def compiled_eval_step(model):
      return jax.jit(jax.vmap(step.make_eval_step(model, task), in_axes=(0, None)),
                     in_shardings=(seed_sh, batch_sh), out_shardings=seed_sh)

    self.train_step = compiled_train_step(self.model)
    self.warmup_train_step = (compiled_train_step(self.model.clone(curriculum=True))
                              if self.curriculum_steps else None)
    # dynamic MIMOConv: slow-mode batches (fewer inputs per pass) with this probability
    self.slow_train_step = (
        compiled_train_step(self.model.clone(
            inputs_per_pass=config.mimo.slow_inputs_per_pass))
        if config.mimo.slow_fraction > 0 else None)
    self.eval_step = compiled_eval_step(self.model)
    # extra accuracies of every evaluation: the dynamic MIMOConv modes, and the warm-up
    # sub-grid of a curriculum (where the full-grid accuracy says little during the warm-up)
    self.mode_eval_steps = {
        f"accuracy/inputs_per_pass={n}": compiled_eval_step(self.model.clone(inputs_per_pass=n))
        for n in config.eval.inputs_per_pass}
    if self.curriculum_steps:
      self.mode_eval_steps["accuracy/subgrid"] = compiled_eval_step(
          self.model.clone(curriculum=True))
    # the first steps: FAVOR+S on its exact kernel, on the grid `on_subgrid` says (not in
    # the paper); every evaluation also reports the model that step 0 trains
    self.exact_train_steps = {}
    if self.exact_steps:
      exact = self.model.clone(spec=dataclasses.replace(self.model.spec, exact_kernel=True))
      self.exact_train_steps = {subgrid: compiled_train_step(exact.clone(curriculum=subgrid))
                                for subgrid in (False, True)}
      self.mode_eval_steps["accuracy/exact_kernel"] = compiled_eval_step(
          exact.clone(curriculum=self.on_subgrid(0)))
    self.augment = data_lib.train_augmentation(config.data)
    # built inside jit: device_put cannot target devices of other processes
    self.init_keys, self.train_keys = jax.jit(
        lambda: _seed_keys(config), out_shardings=(seed_sh, seed_sh))()
    self._seed_sh = seed_sh

  def init_state(self):
    """Freshly initialised states of every seed (leading seed axis)."""
    example = self.train_source[0]
    group = self.config.mimo.m * self.config.mimo.n
    dummy = {k: np.stack([np.asarray(v)] * group) for k, v in example.items()}
    init = jax.vmap(lambda k: step.init_state(self.model, self.tx, k, dummy))
    return jax.jit(init, out_shardings=self._seed_sh)(self.init_keys)

  def train_iterator(self):
    return data_lib.train_batches(
        self.train_source, self.config.train.batch_size, self.config.data.shuffle_seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        augment=self.augment)

  def is_slow_step(self, step_index: int) -> bool:
    """Whether batch `step_index` trains in slow mode (`_step_draw`)."""
    fraction = self.config.mimo.slow_fraction
    return fraction > 0 and _step_draw(self.config.seed, step_index) < fraction

  def on_subgrid(self, step_index: int) -> bool:
    """Whether batch `step_index` trains on the M/2 x N/2 sub-grid: every step of the
    warm-up (App. F.1); then, over the `mimo.curriculum_ramp_fraction` ramp (not in the
    paper, docs/fidelity.md), a draw (`_step_draw`) that takes the full grid with
    probability (k + 1) / (ramp steps + 1) at the ramp's k-th step."""
    into_ramp = step_index - self.curriculum_steps
    if into_ramp < 0:
      return True
    if into_ramp >= self.ramp_steps:
      return False
    draw = _step_draw(self.config.seed, step_index, _RAMP_STREAM)
    return draw >= (into_ramp + 1) / (self.ramp_steps + 1)

  def chunk_length(self, step_index: int) -> int:
    """Steps that one compiled call trains from `step_index`: `train.steps_per_call`, cut
    at the next log, evaluation or checkpoint step, at the first step whose grid
    (`on_subgrid`) or kernel (`mimo.exact_kernel_fraction`) differs and at the end of
    training, so that every such event sees the state of its own step."""
    cfg = self.config
    stops = [self.total_steps]
    for every in (cfg.train.log_every_steps, cfg.eval.every_steps, cfg.checkpoint.every_steps):
      stops.append((step_index // every + 1) * every)
    if step_index < self.exact_steps:
      stops.append(self.exact_steps)
    count = min(cfg.train.steps_per_call, min(stops) - step_index)
    subgrid = self.on_subgrid(step_index)
    return next((i for i in range(1, count) if self.on_subgrid(step_index + i) != subgrid),
                count)

  def train_chunk(self, state, iterator, step_index: int):
    """Trains steps step_index, step_index + 1, ... of one `chunk_length` in one compiled
    call; returns (state, metrics with (seed, step) leading axes, steps trained)."""
    count = self.chunk_length(step_index)
    local = [next(iterator) for _ in range(count)]
    stacked = {k: np.stack([b[k] for b in local]) for k in local[0]}
    batches = mesh_lib.global_batch(stacked, self.mesh, step_axis=True)
    state, metrics = self.step_fn(step_index)(state, batches, self.train_keys)
    return state, metrics, count

  def step_fn(self, step_index: int):
    if step_index < self.exact_steps:
      return self.exact_train_steps[self.on_subgrid(step_index)]
    if self.on_subgrid(step_index):
      return self.warmup_train_step
    if self.is_slow_step(step_index):
      return self.slow_train_step
    return self.train_step

  def evaluate(self, state, split: str) -> dict:
    """Accuracy and loss on a whole split, per seed, pooled over examples; plus
    `accuracy/inputs_per_pass=<n>` for every `eval.inputs_per_pass` mode and, with a
    curriculum, `accuracy/subgrid` of the model on its warm-up sub-grid."""
    totals = self._eval_sums(self.eval_step, state, split)
    out = metrics_lib.summarize_seeds("accuracy", totals["correct"] / totals["weight"])
    out.update(metrics_lib.summarize_seeds("loss", totals["loss"] / totals["weight"]))
    for name, eval_step in self.mode_eval_steps.items():
      totals = self._eval_sums(eval_step, state, split)
      out.update(metrics_lib.summarize_seeds(name, totals["correct"] / totals["weight"]))
    return out

  def _eval_sums(self, eval_step, state, split: str) -> dict:
    totals = None
    batches = data_lib.eval_batches(
        self.eval_sources[split], self.config.eval.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count())
    for local in batches:
      sums = eval_step(state, mesh_lib.global_batch(local, self.mesh))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = _to_host(totals)
    totals["weight"] = np.maximum(totals["weight"], 1e-9)
    return totals


def train_and_evaluate(config, workdir: str):
  """Trains and evaluates the study `config`, writing everything into `workdir`.

  Returns the final train state (leading seed axis). An existing checkpoint in `workdir`
  is resumed; the resumed run reproduces the uninterrupted one.
  """
  trainer = Trainer(config, workdir)
  cfg = config.train
  resolved = json.loads(config.to_json_best_effort())
  if jax.process_index() == 0:  # epath: local paths and gs:// alike
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    (epath.Path(workdir) / "config.json").write_text(
        json.dumps(resolved, indent=2, sort_keys=True))

  mngr = checkpoint.manager(workdir, config.checkpoint.keep)
  state = trainer.init_state()
  iterator = trainer.train_iterator()
  restored = checkpoint.restore_latest(mngr, checkpoint.abstract_like(state))
  if restored is not None:
    state, data_state = restored
    iterator.set_state(data_state)
    log.info("resumed from step %d in %s", int(_to_host(state.step)[0]), workdir)
  start = int(_to_host(state.step)[0])

  writer = metrics_lib.MetricWriter(workdir, trainer.total_steps, start)
  pending = []
  try:
    done = start
    while done < trainer.total_steps:
      state, step_metrics, count = trainer.train_chunk(state, iterator, done)
      pending.append(step_metrics)
      done += count
      if done % cfg.log_every_steps == 0 or done == trainer.total_steps:
        _log_train(writer, done, pending, state, cfg.max_nonfinite_steps)
        pending = []
      if done % config.eval.every_steps == 0 or done == trainer.total_steps:
        for split in config.eval.splits:
          writer.write(done, split, trainer.evaluate(state, split))
      if done % config.checkpoint.every_steps == 0 or done == trainer.total_steps:
        checkpoint.save(mngr, done, state, iterator.get_state(), resolved)
      writer.advance(done)
  finally:
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
  return state


def _log_train(writer, step_index, pending, state, max_nonfinite):
  """Writes mean train metrics since the last log; stops on a NaN/Inf streak."""
  host = _to_host(pending)  # one dict per compiled call, arrays (seed, step)
  means = {k: np.concatenate([m[k] for m in host], axis=1).mean(axis=1) for k in host[0]}
  streak = int(np.max(_to_host(state.nonfinite_streak)))
  if streak >= max_nonfinite:
    raise NonFiniteError(
        f"{streak} consecutive updates had NaN/Inf loss or gradients (limit "
        f"train.max_nonfinite_steps={max_nonfinite}); lower opt.learning_rate or check the data")
  row = {}
  for name, per_seed in means.items():
    row.update(metrics_lib.summarize_seeds(name, per_seed))
  row["skipped_total"] = float(np.sum(_to_host(state.nonfinite_total)))
  writer.write(step_index, "train", row)
