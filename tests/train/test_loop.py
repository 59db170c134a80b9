"""End-to-end training: smoke runs, golden first step, resume, seed vmap, devices, errors."""

import collections
import json
import math
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from experiments import synthetic
from mimojax.models import Phase
from mimojax.train import loop, mesh as mesh_lib, phases, step

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# The synthetic defaults drop no embedding features for the FAVOR models; the tests of
# resume, vmapped seeds and devices switch it on so that they check the dropout streams too.
WITH_DROPOUT = {"model__embed_dropout": 0.1}


def smoke_config(data_dir, arg, **overrides):
  config = synthetic.get_config(arg + ",smoke")
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    group, field = key.split("__")
    config[group][field] = value
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


@pytest.mark.parametrize("model", list(synthetic.MODELS))
def test_smoke_every_model(data_dir, tmp_path, model):
  config = smoke_config(data_dir, f"model={model},task=ih")
  state = loop.train_and_evaluate(config, str(tmp_path))
  rows = read_metrics(tmp_path)
  train_rows = [r for r in rows if r["split"] == "train"]
  test_rows = [r for r in rows if r["split"] == "test"]
  assert [r["step"] for r in train_rows] == [4, 8, 12]
  assert [r["step"] for r in test_rows] == [6, 12]
  assert all(math.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in rows)
  assert int(np.asarray(state.step)[0]) == 12
  assert os.path.exists(tmp_path / "config.json")
  assert any(name.startswith("events") for name in os.listdir(tmp_path / "tensorboard"))


# First logged train loss of the mimoformer AR smoke config (seed 0, data seed 0, SimpleLM
# layers, no embedding dropout), recorded with jax 0.10.2 on CPU; a change here means the
# model, data or step changed numerically.
GOLDEN_FIRST_LOSS = 3.0278384685516357


def test_first_step_loss_is_golden_and_chance_level(data_dir, tmp_path):
  """At init the LM predicts ~uniformly over the 20 tokens: loss ~ log(20)."""
  config = smoke_config(data_dir, "model=mimoformer,task=ar", train__num_steps=1,
                        train__log_every_steps=1)
  loop.train_and_evaluate(config, str(tmp_path))
  first = read_metrics(tmp_path)[0]
  assert first["step"] == 1 and first["split"] == "train"
  assert abs(first["loss"] - math.log(20)) < 0.3
  assert first["loss"] == pytest.approx(GOLDEN_FIRST_LOSS, rel=1e-4)


def train_interrupted(config, workdir, monkeypatch, at_call):
  """Runs `config` in `workdir` until a KeyboardInterrupt at the `at_call`-th batch
  assembly (one per compiled train call and one per evaluation batch)."""
  real = mesh_lib.global_batch
  calls = {"n": 0}

  def interrupted(batch, mesh, **kwargs):
    calls["n"] += 1
    if calls["n"] == at_call:
      raise KeyboardInterrupt
    return real(batch, mesh, **kwargs)

  monkeypatch.setattr(mesh_lib, "global_batch", interrupted)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(config, workdir)
  monkeypatch.setattr(mesh_lib, "global_batch", real)


def test_resume_reproduces_uninterrupted_run(data_dir, tmp_path, monkeypatch):
  config = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=1,
                        **WITH_DROPOUT)
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))

  # step 9: after the step-6 checkpoint and the step-8 log
  train_interrupted(config, str(tmp_path / "resumed"), monkeypatch, at_call=10)
  interrupted_rows = read_metrics(tmp_path / "resumed")
  assert max(r["step"] for r in interrupted_rows) == 8  # logged after the step-6 checkpoint
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  chex.assert_trees_all_equal(leaves(straight), leaves(resumed))
  # the rows logged after the checkpoint are replaced, not repeated
  rows, straight_rows = read_metrics(tmp_path / "resumed"), read_metrics(tmp_path / "straight")
  assert [(r["step"], r["split"]) for r in rows] == [(r["step"], r["split"])
                                                     for r in straight_rows]
  assert [r for r in rows if r["split"] == "test"] == [
      r for r in straight_rows if r["split"] == "test"]


def chunks(trainer):
  """(first step, length) of every compiled call of the trainer's run."""
  out, i = [], 0
  while i < trainer.total_steps:
    out.append((i, trainer.chunk_length(i)))
    i += out[-1][1]
  return out


def test_chunks_stop_at_logs_evals_checkpoints_and_curriculum_end(data_dir):
  # 12 steps; log every 4, evaluate and checkpoint every 6; curriculum until step 3
  config = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=5,
                        mimo__curriculum_fraction=0.25)
  trainer = loop.Trainer(config, "/unused")
  assert chunks(trainer) == [(0, 3), (3, 1), (4, 2), (6, 2), (8, 4)]


def test_exact_kernel_steps_come_first_in_chunks_of_their_own(data_dir, tmp_path):
  """mimo.exact_kernel_fraction = 0.25 of 12 steps: steps 0-2 train the exact-kernel model on
  the warm-up sub-grid, then the feature model; the run logs the exact model's accuracy."""
  config = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=5,
                        model__kernel="exp", mimo__curriculum_fraction=0.5,
                        mimo__exact_kernel_fraction=0.25)
  trainer = loop.Trainer(config, "/unused")
  assert chunks(trainer) == [(0, 3), (3, 1), (4, 2), (6, 2), (8, 4)]
  phase = lambda i: phases.phase_at(trainer.schedule, i)
  assert [phase(i) == Phase(subgrid=True, exact_kernel=True) for i in range(12)] == (
      [True] * 3 + [False] * 9)
  assert phase(3) == Phase(subgrid=True)
  assert phase(6) == Phase()
  loop.train_and_evaluate(config, str(tmp_path))
  test = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
  assert all(0 <= r["accuracy/exact_kernel"] <= 1 for r in test)


def test_each_phase_traces_its_train_and_eval_step_once_over_a_run(data_dir, tmp_path,
                                                                     monkeypatch):
  """The loop compiles one train and one eval step per phase: exact kernel on the sub-grid,
  sub-grid warm-up, full grid (and each evaluation mode), each traced once over the run.
  (A trace counter per step: chex.assert_max_traces counts per code object, which the
  steps of all phases share.)"""
  traces = collections.Counter()

  def counted(make, kind):
    def build(model, *args, **kwargs):
      fn = make(model, *args, **kwargs)

      def traced(*fn_args):  # runs only while jax traces the compiled step
        traces[kind, model.phase] += 1
        return fn(*fn_args)
      return traced
    return build

  monkeypatch.setattr(step, "make_train_step", counted(step.make_train_step, "train"))
  monkeypatch.setattr(step, "make_eval_step", counted(step.make_eval_step, "eval"))
  config = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=1,
                        model__kernel="exp", mimo__curriculum_fraction=0.5,
                        mimo__exact_kernel_fraction=0.25)
  loop.train_and_evaluate(config, str(tmp_path))
  exact, warm, full = (Phase(subgrid=True, exact_kernel=True), Phase(subgrid=True), Phase())
  assert traces == {("train", exact): 1, ("train", warm): 1, ("train", full): 1,
                    ("eval", full): 1, ("eval", warm): 1, ("eval", exact): 1}


def test_curriculum_ramp_mixes_grids_with_a_linearly_rising_full_grid_share(data_dir):
  """Warm-up steps train on the sub-grid and steps after the ramp on the full grid; in the
  ramp the full-grid share follows (k + 1) / (ramp + 1), and no compiled call mixes grids."""
  every = dict(train__log_every_steps=1000, eval__every_steps=1000,
               checkpoint__every_steps=1000)
  config = smoke_config(data_dir, "model=mimoformer,task=ar", train__num_steps=4000,
                        train__steps_per_call=52, mimo__curriculum_fraction=0.25,
                        mimo__curriculum_ramp_fraction=0.5, **every)
  trainer = loop.Trainer(config, "/unused")
  subgrid = np.array([phases.on_subgrid(trainer.schedule, i) for i in range(4000)])
  assert subgrid[:1000].all() and not subgrid[3000:].any()
  full = ~subgrid[1000:3000]
  expected = (np.arange(2000) + 1) / 2001
  # binomial sd of a half's share: about 0.014
  assert full[:1000].mean() == pytest.approx(expected[:1000].mean(), abs=0.05)
  assert full[1000:].mean() == pytest.approx(expected[1000:].mean(), abs=0.05)
  i = 0
  while i < 4000:
    count = trainer.chunk_length(i)
    end = i + count
    assert len(set(subgrid[i:end])) == 1
    if count < 52 and end % 1000:  # cut short only where the grid changes
      assert subgrid[end] != subgrid[i]
    assert (phases.phase_at(trainer.schedule, i) == Phase(subgrid=True)) == subgrid[i]
    i = end


def test_curriculum_ramp_chunked_equals_one_step_per_call(data_dir, tmp_path):
  """12 steps: sub-grid warm-up 0-2, ramp 3-8 (both grids occur for seed 0), full grid 9-11.
  Chunks cut at every grid change train the same models as single steps."""
  overrides = dict(mimo__curriculum_fraction=0.25, mimo__curriculum_ramp_fraction=0.5)
  runs = {}
  for per_call in (1, 5):
    config = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=per_call,
                          **overrides)
    if per_call == 1:
      trainer = loop.Trainer(config, "/unused")
      assert {phases.on_subgrid(trainer.schedule, i) for i in range(3, 9)} == {True, False}
    runs[per_call] = leaves(loop.train_and_evaluate(config, str(tmp_path / str(per_call))))
  no_ramp = leaves(loop.train_and_evaluate(
      smoke_config(data_dir, "model=mimoformer,task=ar", mimo__curriculum_fraction=0.25),
      str(tmp_path / "no_ramp")))
  chex.assert_trees_all_close(runs[1], runs[5], rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in zip(runs[1], no_ramp))


def test_several_steps_per_call_equal_one_step_per_call_and_resume(data_dir, tmp_path,
                                                                    monkeypatch):
  """Scanned chunks train the same models and log the same rows as single steps, also
  when interrupted inside a chunk and resumed (curriculum, dropout and LR schedule on)."""
  overrides = dict(WITH_DROPOUT, mimo__curriculum_fraction=0.25)
  single = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=1,
                        **overrides)
  straight = leaves(loop.train_and_evaluate(single, str(tmp_path / "single")))

  chunked = smoke_config(data_dir, "model=mimoformer,task=ar", train__steps_per_call=5,
                         **overrides)
  # calls: steps 0-2, 3, 4-5, the step-6 evaluation batches (full grid, then the sub-grid's
  # accuracy/subgrid), steps 6-7, then steps 8-11, interrupted after the step-6 checkpoint
  # and the step-8 log
  train_interrupted(chunked, str(tmp_path / "chunked"), monkeypatch, at_call=7)
  assert max(r["step"] for r in read_metrics(tmp_path / "chunked")) == 8
  resumed = leaves(loop.train_and_evaluate(chunked, str(tmp_path / "chunked")))
  chex.assert_trees_all_close(straight, resumed, rtol=1e-5, atol=1e-6)
  rows, single_rows = read_metrics(tmp_path / "chunked"), read_metrics(tmp_path / "single")
  assert [(r["step"], r["split"]) for r in rows] == [(r["step"], r["split"])
                                                     for r in single_rows]
  for row, expected in zip(rows, single_rows):
    if (row["step"], row["split"]) == (8, "train"):
      continue  # the resumed run's step-8 row averages steps 6-7 only (restored at 6)
    assert row["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert row["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_mass_balance_is_logged_and_zero_on_the_one_channel_warm_up(data_dir, tmp_path):
  """With the 1 x 1 warm-up there is one key bundle, so the penalty is 0 until the 2 x 2
  grid starts (step 7 of 12), then positive in every seed."""
  config = smoke_config(data_dir, "model=mimoformer,task=ar,seeds=2",
                        mimo__mass_balance=0.5, mimo__curriculum_fraction=0.5)
  loop.train_and_evaluate(config, str(tmp_path))
  train = [r for r in read_metrics(tmp_path) if r["split"] == "train"]
  assert [r["step"] for r in train] == [4, 8, 12]
  assert train[0]["regularization_per_seed"] == [0.0, 0.0]
  assert all(0 < v < 10 for v in train[-1]["regularization_per_seed"])


def test_three_vmapped_seeds_equal_three_single_runs(data_dir, tmp_path):
  config = smoke_config(data_dir, "model=performer,task=ih,seeds=3", **WITH_DROPOUT)
  together = leaves(loop.train_and_evaluate(config, str(tmp_path / "vmapped")))
  for i in range(3):
    single = smoke_config(data_dir, "model=performer,task=ih", **WITH_DROPOUT)
    single.seed = i
    alone = leaves(loop.train_and_evaluate(single, str(tmp_path / f"seed{i}")))
    for a, b in zip(together, alone):
      np.testing.assert_allclose(a[i], b[0], rtol=1e-4, atol=2e-5)
  test = [r for r in read_metrics(tmp_path / "vmapped") if r["split"] == "test"][-1]
  assert len(test["accuracy_per_seed"]) == 3
  assert test["accuracy"] == pytest.approx(np.mean(test["accuracy_per_seed"]))
  assert test["accuracy_std"] == pytest.approx(np.std(test["accuracy_per_seed"]))


def test_four_devices_equal_one_device(data_dir, tmp_path):
  assert jax.device_count() >= 4
  runs = {}
  for devices in (1, 4):
    # SGD: Adam's normalised steps turn summation-order noise in near-zero gradients into
    # lr-sized differences, which would hide what this test checks (the sharded maths).
    config = smoke_config(data_dir, "model=mimoformer,task=ar", mesh__data=devices,
                          **WITH_DROPOUT, opt__name="sgd", opt__learning_rate=0.1)
    runs[devices] = leaves(loop.train_and_evaluate(config, str(tmp_path / str(devices))))
  chex.assert_trees_all_close(runs[1], runs[4], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("override, field", [
    ("--config=experiments/synthetic.py:model=bogus", "model"),
    ("--config=experiments/synthetic.py:smoke,task=ih --config.opt.schedule=bogus",
     "opt.schedule"),
    ("--config=experiments/synthetic.py:smoke --config.model.attention=linear",
     "model.attention"),
    ("--config=experiments/synthetic.py:smoke --config.train.batch_size=30", "batch"),
    ("--config=experiments/synthetic.py:smoke --config.model.exp_temperature=2",
     "model.exp_temperature"),
    ("--config=experiments/synthetic.py:smoke --config.mimo.mass_balance=-1",
     "mimo.mass_balance"),
    ("--config=experiments/synthetic.py:smoke,model=mimoformer "
     "--config.mimo.exact_kernel_fraction=0.2", "mimo.exact_kernel_fraction"),
    ("--config=experiments/nope.py:smoke", "experiments/nope.py"),
    ("--config=experiments/synthetic.py:smoke --config.nope.x=1", "nope.x"),
    ("--config=experiments/synthetic.py:smoke --config.opt.learning_rate=inf",
     "opt.learning_rate"),
    ("--config=experiments/synthetic.py:smoke --config.train.batch_size=512",
     "train.batch_size (train split: 256 examples)=512"),
])
def test_invalid_config_exits_with_one_line(tmp_path, data_dir, override, field):
  cmd = [sys.executable, "-m", "mimojax.main", *override.split(),
         f"--config.data.data_dir={data_dir}" if "bogus" not in override.split()[0] else "",
         f"--workdir={tmp_path}"]
  proc = subprocess.run([c for c in cmd if c], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("mimojax: invalid"), proc.stderr[-2000:]
  assert field in last and any(w in last for w in ("allowed", "divisible", "choose", "one of"))
  assert not os.path.exists(tmp_path / "checkpoints" / "6")


def test_main_runs_verbatim_command(data_dir, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "mimojax.main",
       "--config=experiments/synthetic.py:model=transformer,task=ar,smoke",
       f"--config.data.data_dir={data_dir}", f"--workdir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert [r["step"] for r in read_metrics(tmp_path) if r["split"] == "test"] == [6, 12]
