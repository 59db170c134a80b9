"""SIGINT / SIGTERM through `python -m mimojax.main`, as a user or a scheduler sends them: the
first finishes the step being trained, saves it and exits with one line; the rerun finishes
like an uninterrupted run; a signal during compilation stops cleanly; a second signal exits
at once."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mimojax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 240


def _command(data_dir, workdir):
  return [sys.executable, "-m", "mimojax.main",
          "--config=experiments/synthetic.py:model=transformer,task=ar,smoke",
          f"--config.data.data_dir={data_dir}", f"--workdir={workdir}",
          f"--config.train.num_steps={STEPS}", "--config.train.log_every_steps=8",
          "--config.train.steps_per_call=8", f"--config.eval.every_steps={STEPS}",
          f"--config.checkpoint.every_steps={STEPS}"]


def _start(data_dir, workdir):
  return subprocess.Popen(_command(data_dir, workdir), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=240):
  """Waits until `path` exists (the run reached that point) while `proc` runs."""
  deadline = time.time() + timeout
  while not os.path.exists(path):
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    assert time.time() < deadline, f"{path} did not appear"
    time.sleep(0.05)


def _rows(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_the_rerun_finishes_the_run(data_dir, tmp_path):
  reference = subprocess.run(_command(data_dir, tmp_path / "straight"), cwd=REPO,
                             capture_output=True, text=True, timeout=600)
  assert reference.returncode == 0, reference.stderr[-2000:]

  workdir = tmp_path / "stopped"
  proc = _start(data_dir, workdir)
  _wait_for(workdir / "metrics.jsonl", proc)  # the first train log: training is under way
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 1, err[-2000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith("mimojax: stopped by SIGTERM after step "), err[-2000:]
  assert "Traceback" not in err
  stopped_at = int(last.split("after step ")[1].split(";")[0])
  assert 0 < stopped_at < STEPS and _steps(workdir) == [stopped_at]

  rerun = subprocess.run(_command(data_dir, workdir), cwd=REPO, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert _steps(workdir) == [stopped_at, STEPS]
  final, expected = _rows(workdir, "test")[-1], _rows(tmp_path / "straight", "test")[-1]
  assert final["step"] == expected["step"] == STEPS
  assert final["loss"] == pytest.approx(expected["loss"], rel=1e-5)
  assert final["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_a_signal_while_compiling_stops_cleanly(data_dir, tmp_path):
  # the lock is taken just before the handlers are installed, then data and compilation
  workdir = tmp_path / "early"
  proc = _start(data_dir, workdir)
  _wait_for(workdir / ".lock", proc)
  time.sleep(0.5)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 1, err[-2000:]  # not a crash (negative: killed by a signal)
  assert err.strip().splitlines()[-1].startswith("mimojax: stopped by SIGINT"), err[-2000:]
  assert "Traceback" not in err


def test_a_second_signal_exits_at_once_and_the_handlers_are_restored(monkeypatch, capsys):
  """(The operating system and Python merge two signals that arrive before the first is
  handled, so the second is sent here after the first was seen.)"""
  def exit_now(code):
    raise SystemExit(code)

  monkeypatch.setattr(loop.os, "_exit", exit_now)
  before = signal.getsignal(signal.SIGTERM)
  with loop._StopOnSignal() as stop:  # pylint: disable=protected-access
    assert not stop.requested()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs at the next bytecode
    assert stop.requested() and stop.name() == "SIGTERM"
    with pytest.raises(SystemExit) as exited:
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.05)
  assert exited.value.code == 128 + signal.SIGTERM
  assert "mimojax: second SIGTERM: exiting at once" in capsys.readouterr().err
  assert signal.getsignal(signal.SIGTERM) is before


def _checkpoint_entries(workdir):
  path = os.path.join(workdir, "checkpoints")
  return os.listdir(path) if os.path.isdir(path) else []


@pytest.mark.slow
def test_sigkill_at_several_points_resumes_like_an_uninterrupted_run(data_dir, tmp_path):
  """SIGKILL (no handler runs) during training, in the middle of a checkpoint save and after
  a later checkpoint; each rerun resumes from the last complete checkpoint, and the run ends
  with the test metrics of an uninterrupted one, bit for bit (CPU)."""
  every = ["--config.checkpoint.every_steps=16", "--config.checkpoint.keep=2"]
  straight = tmp_path / "straight"
  proc = subprocess.run(_command(data_dir, straight) + every, cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]

  workdir = tmp_path / "killed"
  kill_points = {
      "training": lambda: os.path.exists(workdir / "metrics.jsonl"),
      "saving": lambda: any("tmp" in name for name in _checkpoint_entries(workdir)),
      "after a later checkpoint": lambda: "64" in _checkpoint_entries(workdir)}
  for point, reached in kill_points.items():
    proc = subprocess.Popen(_command(data_dir, workdir) + every, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not reached():
      assert proc.poll() is None, f"ended before the kill point {point!r}"
      assert time.time() < deadline, f"no kill point {point!r}"
      time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
  proc = subprocess.run(_command(data_dir, workdir) + every, cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert _rows(workdir, "test")[-1] == _rows(straight, "test")[-1]
