"""`train_and_evaluate(config, workdir)`: the training loop every study runs.

It reads the config through the typed boundary (`train.config`), builds data, model and
optimiser, initialises `seeds.num` independent models with `jit(vmap(init))`, restores the
latest checkpoint in `workdir` if there is one, trains with `jit(vmap(train_step))` over a
(seed, data) mesh, scanned over `train.steps_per_call` batches per call, with the step of
the phase `train.phases` schedules, evaluates every `eval.every_steps`, and checkpoints
state, data-iterator state and config.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from mimojax import data as data_lib
from mimojax.train import backbones, checkpoint, config as config_lib, mesh as mesh_lib
from mimojax.train import metrics as metrics_lib, optim, phases, step
from mimojax.train import workdir as workdir_lib

log = logging.getLogger("mimojax")


class Error(Exception):
  """A fault that mimojax's own checks find; `main` prints it as one line, `prefix` first."""
  prefix = ""


class ConfigError(Error, ValueError):
  """A config value or workdir the run cannot use; raised before anything is compiled."""
  prefix = "invalid config: "


class RunError(Error, RuntimeError):
  """A fault that stops a run after it started: no readable checkpoint, a NaN/Inf state, a
  stop signal (SIGINT, SIGTERM)."""


class NonFiniteError(RunError):
  """Too many consecutive updates had NaN/Inf loss or gradients, or the state holds NaN/Inf."""


class _StopOnSignal:
  """SIGINT and SIGTERM during a run: the first asks the loop to stop after the step it is
  training (`requested`), the second exits at once. Installed only in the main thread."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      print(f"mimojax: second {signal.Signals(signum).name}: exiting at once (the latest "
            "checkpoint stays)", file=sys.stderr, flush=True)
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum
    log.warning("%s: stopping after the current step with a checkpoint (again: at once)",
                signal.Signals(signum).name)

  def requested(self) -> bool:
    """Whether a signal arrived on any process (every process must call this at the same
    point: the processes agree on the step at which they stop)."""
    if jax.process_count() > 1:  # adopt the signal another process received
      signums = multihost_utils.process_allgather(np.int32(self.signum or 0))
      self.signum = self.signum or int(np.max(signums)) or None
    return self.signum is not None

  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum is not None else "a signal"


def _to_host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _seed_keys(config):
  """Per-seed (init, train) keys: seed i of the run is jax.random.key(config.seed + i)."""
  keys = jnp.stack([jax.random.key(config.seed + i) for i in range(config.seeds.num)])
  pairs = jax.vmap(lambda k: jax.random.split(k, 2))(keys)
  return pairs[:, 0], pairs[:, 1]


class Trainer:
  """Holds the data, model and compiled steps of one run; `train_and_evaluate` drives it.

  `config` is a ConfigDict or the dict of a `config.json`, read through the typed boundary
  (`train.config.from_dict`), or a `train.config.Config`. Steps are compiled once per
  `models.Phase` that `train.phases` schedules (`train_step_for`, `eval_step_for`)."""

  def __init__(self, config, workdir: str):
    try:
      self._build(config, workdir)
    except ValueError as e:
      raise ConfigError(str(e)) from e

  def _build(self, config, workdir: str):
    if not isinstance(config, config_lib.Config):
      config = config_lib.from_dict(config)
    self.config = config
    self.workdir = workdir
    self.mesh = mesh_lib.make_mesh(config.mesh.seed, config.mesh.data)
    shards = self.mesh.shape["data"]
    for name, value in (("train.batch_size", config.train.batch_size),
                        ("eval.batch_size", config.eval.batch_size)):
      if value % shards:
        raise ValueError(f"{name}={value} must be divisible by the {shards} devices of the "
                         "data axis")
    self.train_source, self.info = data_lib.load_split(config.data, "train")
    num_train = len(self.train_source)
    config_lib.in_range(f"train.batch_size (train split: {num_train} examples)",
                        config.train.batch_size, 1, num_train)
    config_lib.check_data(config, self.info)
    self.eval_sources = {s: data_lib.load_split(config.data, s)[0] for s in config.eval.splits}
    self.model = backbones.build_model(config, self.info)
    self.total_steps = config_lib.total_steps(config, len(self.train_source))
    if self.total_steps < 1:
      raise ValueError(f"the run has {self.total_steps} training steps; raise "
                       "train.num_steps or train.num_epochs")
    self.schedule = phases.schedule(config, self.total_steps)
    self.eval_modes = phases.eval_phases(config, self.schedule)
    self.tx = optim.make_optimizer(config.opt, self.total_steps)
    self._seed_sh = mesh_lib.seed_sharding(self.mesh)
    self._epoch_steps = max(config_lib.steps_per_epoch(config, len(self.train_source)), 1)
    self._train_steps, self._eval_steps = {}, {}
    self.augment = data_lib.train_augmentation(config.data)
    # built inside jit: device_put cannot target devices of other processes
    self.init_keys, self.train_keys = jax.jit(
        lambda: _seed_keys(config), out_shardings=(self._seed_sh, self._seed_sh))()

  def train_step_for(self, phase):
    """The compiled `(state, batches with a leading step axis, keys) -> (state, metrics
    (seed, step))` of the model in `phase`, built on first use."""
    if phase not in self._train_steps:
      fn = step.make_train_step(
          self.model.clone(phase=phase), self.tx, self.info.task_type,
          loss=self.config.train.loss, task_weight=phase.task_weight,
          mixup_alpha=self.config.train.mixup_alpha,
          grad_skip_factor=self.config.train.grad_skip_factor,
          steps_per_epoch=self._epoch_steps)
      stacked_sh = mesh_lib.batch_sharding(self.mesh, step_axis=True)
      self._train_steps[phase] = jax.jit(
          jax.vmap(step.over_batches(fn), in_axes=(0, None, 0)),
          in_shardings=(self._seed_sh, stacked_sh, self._seed_sh),
          out_shardings=(self._seed_sh, self._seed_sh), donate_argnums=0)
    return self._train_steps[phase]

  def eval_step_for(self, phase):
    """The compiled evaluation sums of the model in `phase`, built on first use."""
    if phase not in self._eval_steps:
      fn = step.make_eval_step(self.model.clone(phase=phase), self.info.task_type,
                               self.config.train.loss)
      self._eval_steps[phase] = jax.jit(
          jax.vmap(fn, in_axes=(0, None)),
          in_shardings=(self._seed_sh, mesh_lib.batch_sharding(self.mesh)),
          out_shardings=self._seed_sh)
    return self._eval_steps[phase]

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

  def chunk_length(self, step_index: int) -> int:
    """Steps that one compiled call trains from `step_index`: `train.steps_per_call`, cut
    at the next log, evaluation or checkpoint step, at the end of training and where the
    phase changes, so that every such event sees the state of its own step."""
    cfg = self.config
    stops = [self.total_steps]
    for every in (cfg.train.log_every_steps, cfg.eval.every_steps, cfg.checkpoint.every_steps):
      stops.append((step_index // every + 1) * every)
    limit = min(cfg.train.steps_per_call, min(stops) - step_index)
    return phases.run_length(self.schedule, step_index, limit)

  def train_chunk(self, state, iterator, step_index: int):
    """Trains steps step_index, step_index + 1, ... of one `chunk_length` in one compiled
    call; returns (state, metrics with (seed, step) leading axes, steps trained)."""
    count = self.chunk_length(step_index)
    local = [next(iterator) for _ in range(count)]
    stacked = {k: np.stack([b[k] for b in local]) for k in local[0]}
    batches = mesh_lib.global_batch(stacked, self.mesh, step_axis=True)
    train_step = self.train_step_for(phases.phase_at(self.schedule, step_index))
    state, metrics = train_step(state, batches, self.train_keys)
    return state, metrics, count

  def evaluate(self, state, split: str) -> dict:
    """Accuracy and loss on a whole split, per seed, pooled over examples; plus the
    accuracy of every `phases.eval_phases` mode under its name."""
    totals = self.eval_sums(self.schedule.base, state, split)
    out = metrics_lib.summarize_seeds("accuracy", totals["correct"] / totals["weight"])
    out.update(metrics_lib.summarize_seeds("loss", totals["loss"] / totals["weight"]))
    for name, phase in self.eval_modes.items():
      totals = self.eval_sums(phase, state, split)
      out.update(metrics_lib.summarize_seeds(name, totals["correct"] / totals["weight"]))
    return out

  def eval_sums(self, phase, state, split: str) -> dict:
    """Host sums of loss, correct predictions and weight (> 0) per seed of the model in
    `phase` over the whole `split` (one of `eval.splits`); `state` needs only `params` and
    `model_state`."""
    eval_step = self.eval_step_for(phase)
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


def train_and_evaluate(config, workdir: str, allow_config_change: bool = False):
  """Trains and evaluates the study `config`, writing everything into `workdir`.

  Returns the final train state (leading seed axis). An existing checkpoint in `workdir`
  is resumed; the resumed run reproduces the uninterrupted one. The run holds the lock of
  `workdir` and resumes only under the config its checkpoints were trained with, up to the
  fields `allow_config_change` allows (`train.workdir`). ConfigError for every problem
  found before compilation.
  """
  try:
    if not isinstance(config, config_lib.Config):
      config = config_lib.from_dict(config)
    lock = workdir_lib.hold(workdir, primary=jax.process_index() == 0)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  with lock, _StopOnSignal() as stop:
    return _train(config, workdir, allow_config_change, stop)


def _train(config, workdir: str, allow_config_change: bool, stop: _StopOnSignal):
  """`train_and_evaluate` in a workdir this run holds; after `stop` is requested, the run
  saves the step it reached and raises RunError."""
  try:
    workdir_lib.check_resume(workdir, config, allow_config_change)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  trainer = Trainer(config, workdir)
  cfg = config.train
  resolved = config_lib.to_dict(config)
  if jax.process_index() == 0:
    workdir_lib.write_config(workdir, config)

  mngr = checkpoint.manager(workdir, config.checkpoint.keep)
  state = trainer.init_state()
  iterator = trainer.train_iterator()
  try:
    restored = checkpoint.restore_latest(mngr, checkpoint.abstract_like(state),
                                         set_aside=True)
  except checkpoint.RestoreError as e:
    mngr.close()
    raise RunError(str(e)) from e
  if restored is not None:
    state, data_state = restored
    iterator.set_state(data_state)
    log.info("resumed from step %d in %s", int(_to_host(state.step)[0]), workdir)
  elif cfg.init_from:
    state = _init_from(state, cfg.init_from)
  start = int(_to_host(state.step)[0])

  writer = metrics_lib.MetricWriter(workdir, trainer.total_steps, start)
  pending = []
  try:
    done = start
    if stop.requested():
      raise RunError(f"stopped by {stop.name()} before step {done + 1}; nothing new to save")
    while done < trainer.total_steps:
      state, step_metrics, count = trainer.train_chunk(state, iterator, done)
      pending.append(step_metrics)
      done += count
      if done % cfg.log_every_steps == 0 or done == trainer.total_steps:
        _log_train(writer, done, pending, state, cfg.max_nonfinite_steps)
        pending = []
      evaluate = done % config.eval.every_steps == 0 or done == trainer.total_steps
      save = done % config.checkpoint.every_steps == 0 or done == trainer.total_steps
      if evaluate or save:
        _check_finite(state, done, mngr)
      if evaluate:
        for split in config.eval.splits:
          writer.write(done, split, trainer.evaluate(state, split))
      stopping = stop.requested()
      if stopping and not save:
        _check_finite(state, done, mngr)
      if save or stopping:
        checkpoint.save(mngr, done, state, iterator.get_state(), resolved)
      writer.advance(done)
      if stopping:
        raise RunError(f"stopped by {stop.name()} after step {done}; checkpoint step {done} "
                       "saved; rerun the same command to resume")
  finally:
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
  return state


def _init_from(state, source_workdir: str):
  """`state` with the parameters and constants of the run in `source_workdir` that match
  by path and shape (e.g. the encoder and mux of a DataMUX retrieval warm-up on a text
  corpus, before the task fine-tuning; princeton-nlp/DataMUX: run_glue.sh --model_path).
  The optimiser state starts afresh (its moments do not depend on the parameters' values)."""
  try:
    source = checkpoint.latest_variables(source_workdir)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  state, taken, kept = checkpoint.transfer(state, source)
  if not taken:
    raise ConfigError(f"train.init_from={source_workdir!r}: no parameter matches this model "
                      "by path and shape")
  log.info("initialised %d arrays from %s; %d start fresh: %s", len(taken), source_workdir,
           len(kept), ", ".join(kept[:8]) + (" ..." if len(kept) > 8 else ""))
  return state


def _log_train(writer, step_index, pending, state, max_nonfinite):
  """Writes train metrics since the last log and stops on a NaN/Inf streak.

  Each metric is the mean over the steps whose update was not skipped for NaN/Inf (left out
  when a seed has none); `skipped` and `skipped_grad_norm` count the skipped steps and
  `skipped_total` those of the whole run; a sown loss term that only some of the logged
  steps' phases have is left out."""
  host = _to_host(pending)  # one dict per compiled call, arrays (seed, step)
  # a metric that some phases do not have (a sown loss term) is left out of a mixed log
  names = [k for k in host[0] if all(k in m for m in host)]
  series = {k: np.concatenate([m[k] for m in host], axis=1) for k in names}
  streak = int(np.max(_to_host(state.nonfinite_streak)))
  if streak >= max_nonfinite:
    raise NonFiniteError(
        f"{streak} consecutive updates had NaN/Inf loss or gradients (limit "
        f"train.max_nonfinite_steps={max_nonfinite}); lower opt.learning_rate or check the data")
  accepted = series["skipped"] == 0
  count = accepted.sum(axis=1)
  row = {}
  for name, values in series.items():
    if name in ("skipped", "skipped_grad_norm"):
      row.update(metrics_lib.summarize_seeds(name, values.sum(axis=1)))
    elif count.all():
      total = np.where(accepted, values, 0).sum(axis=1)
      row.update(metrics_lib.summarize_seeds(name, total / count.astype(total.dtype)))
  row["skipped_total"] = float(np.sum(_to_host(state.nonfinite_total)))
  writer.write(step_index, "train", row)


def _check_finite(state, step_index, mngr):
  """Raises NonFiniteError when the parameters or model statistics hold NaN/Inf."""
  bad = checkpoint.nonfinite_leaves(state)
  if bad:
    mngr.wait_until_finished()
    latest = mngr.latest_step()
    kept = (f"the latest checkpoint is step {latest}" if latest is not None
            else "no checkpoint was written")
    raise NonFiniteError(
        f"NaN/Inf in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} after step "
        f"{step_index}; the state is not saved and {kept}; lower opt.learning_rate or check "
        "the data")
