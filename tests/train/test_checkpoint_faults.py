"""Run-time faults: unreadable checkpoints fall back to the next older step, NaN/Inf states
are never saved, logged train means leave skipped steps out; `mimojax.main` reports each in
one line."""

import glob
import json
import logging
import os
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import synthetic
from mimojax.train import checkpoint, loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUDY = "model=mimoformer,task=ar,smoke"  # 12 steps, checkpoints at 6 and 12


def smoke_config(data_dir, **overrides):
  config = synthetic.get_config(STUDY)
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    group, field = key.split("__")
    config[group][field] = value
  return config


def run_main(data_dir, workdir, *flags):
  return subprocess.run(
      [sys.executable, "-m", "mimojax.main", f"--config=experiments/synthetic.py:{STUDY}",
       f"--config.data.data_dir={data_dir}", f"--workdir={workdir}", *flags],
      cwd=REPO, capture_output=True, text=True, timeout=600)


def last_line(proc):
  return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """The workdir of an uninterrupted `mimojax.main` run of the smoke study."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  proc = run_main(data_dir, workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def copy_run(src, dst):
  shutil.copytree(src, dst)
  return str(dst)


def step_dir(workdir, step):
  return os.path.join(workdir, "checkpoints", str(step))


def garble_array_file(directory):
  """Flips the second quarter of the bytes of the largest array file."""
  path = max(glob.glob(f"{directory}/state/**/d/*", recursive=True), key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  for i in range(len(data) // 4, len(data) // 2):
    data[i] ^= 0x5A
  open(path, "wb").write(bytes(data))


def truncate(path):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])


def truncate_array_file(directory):
  truncate(max(glob.glob(f"{directory}/state/**/d/*", recursive=True), key=os.path.getsize))


def delete_state_metadata(directory):
  os.remove(os.path.join(directory, "state", "_METADATA"))


def truncate_data_json(directory):
  truncate(os.path.join(directory, "data", "metadata"))


def empty_directory(directory):
  for entry in os.listdir(directory):
    path = os.path.join(directory, entry)
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def restore(config, workdir, set_aside=True):
  """(step, state) of the newest readable checkpoint in `workdir`."""
  trainer = loop.Trainer(config, workdir)
  mngr = checkpoint.manager(workdir, config.checkpoint.keep)
  try:
    state, _ = checkpoint.restore_latest(
        mngr, checkpoint.abstract_like(trainer.init_state()), set_aside=set_aside)
  finally:
    mngr.close()
  return int(np.asarray(state.step)[0]), state


def params(state):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


def test_lost_newest_checkpoint_rerun_matches_the_uninterrupted_run(data_dir, straight,
                                                                    tmp_path):
  workdir = copy_run(straight, tmp_path / "run")
  garble_array_file(step_dir(workdir, 12))
  proc = run_main(data_dir, workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [line for line in proc.stderr.splitlines() if "cannot be read" in line]
  assert len(warnings) == 1 and "checkpoint step 12" in warnings[0], proc.stderr[-3000:]
  assert "trying the next older step" in warnings[0]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6", "unreadable-12"]
  config = smoke_config(data_dir)
  expected_step, expected = restore(config, straight)
  step, resumed = restore(config, workdir)
  assert step == expected_step == 12
  chex.assert_trees_all_equal(params(resumed), params(expected))


@pytest.mark.parametrize("corrupt", [truncate_array_file, delete_state_metadata,
                                     truncate_data_json, empty_directory])
def test_unreadable_newest_step_falls_back_with_one_line(data_dir, straight, tmp_path, caplog,
                                                         corrupt):
  workdir = copy_run(straight, tmp_path / "run")
  corrupt(step_dir(workdir, 12))
  with caplog.at_level(logging.WARNING, logger="mimojax"):
    step, _ = restore(smoke_config(data_dir), workdir)
  assert step == 6
  lines = [r.getMessage() for r in caplog.records if r.name == "mimojax"]
  assert len(lines) == 2 and all("\n" not in line for line in lines), lines
  assert lines[0].startswith("checkpoint step 12 in ") and "cannot be read (" in lines[0]
  assert lines[1].startswith("resuming from checkpoint step 6; moved step 12 to ")
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "unreadable-12"))
  assert not os.path.exists(step_dir(workdir, 12))


def test_a_checkpoint_holding_nan_is_passed_over_like_an_unreadable_one(data_dir, straight,
                                                                       tmp_path, caplog):
  workdir = copy_run(straight, tmp_path / "run")
  config = smoke_config(data_dir)
  _, state = restore(config, workdir)
  mngr = checkpoint.manager(workdir, 3)
  nan = state.replace(params=jax.tree.map(lambda x: x.at[0].set(np.nan) if x.ndim > 1 else x,
                                          state.params))
  checkpoint.save(mngr, 18, nan, {"step": 18}, {})
  mngr.close()
  with caplog.at_level(logging.WARNING, logger="mimojax"):
    step, _ = restore(config, workdir, set_aside=False)
  assert step == 12
  [line] = [r.getMessage() for r in caplog.records if r.name == "mimojax"]
  assert line.startswith("checkpoint step 18 in ") and "(ValueError: NaN/Inf in params/" in line
  assert os.path.isdir(step_dir(workdir, 18))  # only a resuming run moves it aside


def test_no_readable_step_is_one_error_and_nothing_is_touched(data_dir, straight, tmp_path):
  workdir = copy_run(straight, tmp_path / "run")
  garble_array_file(step_dir(workdir, 12))
  truncate_data_json(step_dir(workdir, 6))
  proc = run_main(data_dir, workdir)
  assert proc.returncode == 1
  last = last_line(proc)
  assert last.startswith("mimojax: no checkpoint in ") and "can be read" in last, proc.stderr
  assert "step 12: " in last and "step 6: JSONDecodeError" in last
  # No traceback through mimojax. (TensorStore's threads may still print "Event loop is
  # closed" tracebacks of the reads that Orbax abandons when an array cannot be read.)
  assert f"{os.sep}mimojax{os.sep}" not in proc.stderr.replace(last, "")
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6"]


def test_nonfinite_state_is_never_saved_and_the_last_good_checkpoint_stays(
    data_dir, tmp_path, monkeypatch):
  real = loop.Trainer.train_chunk

  def poisoned(self, state, iterator, step_index):
    state, metrics, count = real(self, state, iterator, step_index)
    if step_index + count > 6:  # params turn NaN after the step-6 checkpoint
      state = state.replace(params=jax.tree.map(lambda x: x * jnp.nan, state.params))
    return state, metrics, count

  monkeypatch.setattr(loop.Trainer, "train_chunk", poisoned)
  with pytest.raises(loop.NonFiniteError) as raised:
    loop.train_and_evaluate(smoke_config(data_dir), str(tmp_path))
  assert isinstance(raised.value, loop.RunError)
  message = str(raised.value)
  assert "\n" not in message and message.startswith("NaN/Inf in params/")
  assert "after step 12" in message and "the latest checkpoint is step 6" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["6"]


# A learning rate the config accepts (finite) that is inf in float32: the first update makes
# the parameters NaN (an infinite one is a config error).
OVERFLOWING_LR = 1e39


def test_overflowing_learning_rate_exits_with_one_line_and_saves_nothing(data_dir, tmp_path):
  proc = run_main(data_dir, tmp_path, f"--config.opt.learning_rate={OVERFLOWING_LR}")
  assert proc.returncode == 1
  last = last_line(proc)
  assert last.startswith("mimojax: NaN/Inf in params/") and "after step 6" in last, proc.stderr
  assert "no checkpoint was written" in last and "Traceback" not in proc.stderr
  assert os.listdir(tmp_path / "checkpoints") == []
  # step 1 was applied (and made the parameters NaN), steps 2-4 were skipped
  row = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if r["split"] == "train"][0]
  assert row["step"] == 4 and row["skipped"] == 3.0 and np.isfinite(row["loss"])


def test_nonfinite_streak_stop_is_a_run_error(data_dir, tmp_path):
  config = smoke_config(data_dir, opt__learning_rate=OVERFLOWING_LR,
                        train__max_nonfinite_steps=2)
  with pytest.raises(loop.RunError, match=r"^3 consecutive updates had NaN/Inf"):
    loop.train_and_evaluate(config, str(tmp_path))


class Rows:
  def __init__(self):
    self.rows = []

  def write(self, step, split, row):
    self.rows.append((step, split, row))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_logged_means_leave_out_skipped_steps_and_count_them(bad):
  loss = np.array([[1.0, bad, 3.0, bad]], np.float32)  # (seed, step)
  skipped = np.array([[0.0, 1.0, 0.0, 1.0]], np.float32)
  pending = [{"loss": loss[:, :2], "skipped": skipped[:, :2],
              "skipped_grad_norm": np.zeros((1, 2), np.float32)},
             {"loss": loss[:, 2:], "skipped": skipped[:, 2:],
              "skipped_grad_norm": np.zeros((1, 2), np.float32)}]
  state = type("State", (), {"nonfinite_streak": np.array([1]),
                             "nonfinite_total": np.array([5])})()
  writer = Rows()
  loop._log_train(writer, 4, pending, state, max_nonfinite=10)
  [(step, split, row)] = writer.rows
  assert (step, split) == (4, "train")
  assert row == {"loss": 2.0, "skipped": 2.0, "skipped_grad_norm": 0.0, "skipped_total": 5.0}


def test_logged_means_are_left_out_when_every_step_was_skipped():
  pending = [{"loss": np.full((1, 2), np.nan, np.float32),
              "skipped": np.ones((1, 2), np.float32),
              "skipped_grad_norm": np.zeros((1, 2), np.float32)}]
  state = type("State", (), {"nonfinite_streak": np.array([2]),
                             "nonfinite_total": np.array([2])})()
  writer = Rows()
  loop._log_train(writer, 2, pending, state, max_nonfinite=10)
  assert writer.rows[0][2] == {"skipped": 2.0, "skipped_grad_norm": 0.0, "skipped_total": 2.0}
