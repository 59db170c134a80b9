"""Accuracy and throughput of a restored run at every inputs-per-pass mode it declares.

The run's own evaluation (``train.loop.Trainer``: data pipeline, compiled eval step per
``models.Phase``, pooled sums per seed) computes the accuracies, so a mode evaluated here at
the step and batch size the run logged reproduces the logged number. Throughput is measured
after compilation: the mode's eval step on one batch, timed in ``rounds`` interleaved rounds
over the modes, median seconds per call (docs/pitfalls.md: compare variants in one process,
interleaved).
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax

from mimojax import data as data_lib
from mimojax.inference import modes as modes_lib
from mimojax.inference import restore
from mimojax.train import config as config_lib
from mimojax.train import loop
from mimojax.train import mesh as mesh_lib
from mimojax.train import metrics as metrics_lib
from mimojax.train import step as step_lib


def trainer_for(run: restore.Run, split: str | None = None,
                batch_size: int | None = None) -> loop.Trainer:
  """The run's Trainer evaluating ``split`` (default: the run's last evaluated split) in
  batches of ``batch_size`` (default: the run's), on this machine's devices."""
  values = config_lib.to_dict(run.config)
  values["eval"]["splits"] = (split or run.config.eval.splits[-1],)
  values["eval"]["batch_size"] = batch_size or run.config.eval.batch_size
  if run.config.mesh.seed > jax.device_count():
    values["mesh"] = {"seed": 1, "data": -1}
  return loop.Trainer(config_lib.from_dict(values), run.workdir)


def eval_state(trainer: loop.Trainer, variables: dict):
  """The ``TrainState`` the eval steps read (parameters and model state, seed axis on the
  trainer's seed sharding)."""
  tree = jax.device_put(variables, mesh_lib.seed_sharding(trainer.mesh))
  return step_lib.TrainState(
      step=None, params=tree["params"], opt_state=None, model_state=tree["model_state"],
      nonfinite_total=None, nonfinite_streak=None, grad_norm_limit=None, grad_norm_sum=None,
      grad_norm_count=None)


def evaluate(run: restore.Run, split: str | None = None, names=None,
             batch_size: int | None = None, rounds: int = 5) -> dict:
  """``{"workdir", "step", "split", "batch_size", "seeds", "modes": [row, ...]}``; each row
  holds the mode, its inputs per pass, accuracy and loss (per seed and mean +- sd when the
  run has several seeds, as the training log reports them) and ``examples_per_s`` (examples
  of every seed's model per second, median over ``rounds``)."""
  config_lib.in_range("--rounds", rounds, 1)
  selected = modes_lib.select(modes_lib.modes(run.config), names)
  trainer = trainer_for(run, split, batch_size)
  split = trainer.config.eval.splits[0]
  state = eval_state(trainer, run.variables)
  rows = []
  for mode in selected.values():
    totals = trainer.eval_sums(mode.phase, state, split)
    row = {"mode": mode.name, "inputs_per_pass": mode.inputs_per_pass}
    row.update(metrics_lib.summarize_seeds("accuracy", totals["correct"] / totals["weight"]))
    row.update(metrics_lib.summarize_seeds("loss", totals["loss"] / totals["weight"]))
    rows.append(row)
  seconds = _time_modes(trainer, state, split, list(selected.values()), rounds)
  batch = trainer.config.eval.batch_size
  for row, s in zip(rows, seconds):
    row["seconds_per_batch"] = s
    row["examples_per_s"] = batch * run.seeds / s
  return {"workdir": run.workdir, "step": run.step, "split": split, "batch_size": batch,
          "seeds": run.seeds, "rounds": rounds, "modes": rows}


def _time_modes(trainer, state, split: str, modes, rounds: int) -> list[float]:
  """Median seconds of one compiled eval call per mode on the split's first batch."""
  local = next(iter(data_lib.eval_batches(
      trainer.eval_sources[split], trainer.config.eval.batch_size,
      process_index=jax.process_index(), process_count=jax.process_count())))
  batch = mesh_lib.global_batch(local, trainer.mesh)
  steps = [trainer.eval_step_for(mode.phase) for mode in modes]
  times = [[] for _ in modes]
  for step in steps:  # compiled already by the accuracies; one warm call each
    jax.block_until_ready(step(state, batch))
  for _ in range(rounds):
    for i, step in enumerate(steps):
      start = time.perf_counter()
      jax.block_until_ready(step(state, batch))
      times[i].append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]


def table(result: dict) -> str:
  """The result as one markdown table: mode, inputs per pass, accuracy (%; mean +- sd and
  per seed for several seeds), loss and examples per second."""
  several = result["seeds"] > 1
  header = ["mode", "inputs/pass", "accuracy %", "loss", "examples/s"]
  if several:
    header.insert(3, "per seed %")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in result["modes"]:
    accuracy = f"{100 * row['accuracy']:.2f}"
    if several:
      accuracy += f" +- {100 * row['accuracy_std']:.2f}"
    cells = [row["mode"], str(row["inputs_per_pass"]), accuracy, f"{row['loss']:.4f}",
             f"{row['examples_per_s']:.1f}"]
    if several:
      cells.insert(3, " ".join(f"{100 * a:.2f}" for a in row["accuracy_per_seed"]))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write(result: dict) -> str:
  """Writes the result to ``<workdir>/evaluation/<split>-step<step>.json``; returns the path."""
  folder = os.path.join(result["workdir"], "evaluation")
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"{result['split']}-step{result['step']}.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=2)
  return path

