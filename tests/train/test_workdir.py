"""The workdir of a run: unusable paths, the lock, and the config guard of a resume."""

import dataclasses
import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from experiments import synthetic
from mimojax import main
from mimojax.train import config as config_lib, loop, workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUDY = "experiments/synthetic.py:model=transformer,task=ar,smoke"


def smoke_config(data_dir, **overrides):
  """The typed config of `python -m mimojax.main --config=STUDY` with `group__field` values."""
  config = synthetic.get_config(STUDY.split(":")[1])
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    group, field = key.split("__")
    config[group][field] = value
  return config_lib.from_dict(config)


def run_main(data_dir, workdir, *flags):
  cmd = [sys.executable, "-m", "mimojax.main", f"--config={STUDY}",
         f"--config.data.data_dir={data_dir}", f"--workdir={workdir}", *flags]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def last_line(proc):
  return proc.stderr.strip().splitlines()[-1]


def disk(workdir):
  """What a run leaves in `workdir`: config.json, checkpoint steps and metrics."""
  names = sorted(os.listdir(workdir / "checkpoints"))
  return ((workdir / "config.json").read_text(), names,
          (workdir / "metrics.jsonl").read_text())


def test_a_file_or_a_path_under_a_file_is_not_a_workdir(tmp_path):
  config = smoke_config(str(tmp_path / "tfds"))
  file = tmp_path / "file"
  file.write_text("x")
  with pytest.raises(loop.ConfigError, match=f"--workdir={file} is a file; allowed: a "
                     "directory"):
    loop.train_and_evaluate(config, str(file))
  with pytest.raises(loop.ConfigError, match=f"--workdir={file}/run is under the file {file}"):
    loop.train_and_evaluate(config, str(file / "run"))
  assert file.read_text() == "x"


def test_a_read_only_workdir_is_named(tmp_path, monkeypatch):
  workdir = tmp_path / "read_only"
  workdir.mkdir()
  os.chmod(workdir, 0o555)
  if os.access(workdir, os.W_OK):  # root writes anyway: refuse writes as a read-only mount
    real_open = os.open

    def read_only_open(path, flags, *args):
      if str(path).startswith(str(workdir)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
      return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", read_only_open)
  with pytest.raises(loop.ConfigError, match=f"--workdir={workdir} is not writable"):
    loop.train_and_evaluate(smoke_config(str(tmp_path / "tfds")), str(workdir))


def test_lock_is_exclusive_released_and_stale_files_do_not_block(tmp_path):
  workdir = str(tmp_path)
  (tmp_path / ".lock").write_text("pid 999999999 on host gone\n")  # left by a killed run
  with workdir_lib.hold(workdir):
    holder = f"pid {os.getpid()} on host {socket.gethostname()}"
    assert (tmp_path / ".lock").read_text().strip() == holder
    with pytest.raises(ValueError, match=f"--workdir={workdir} is in use by {holder}"):
      workdir_lib.hold(workdir)
    with pytest.raises(loop.ConfigError, match=f"is in use by {holder}"):
      loop.train_and_evaluate(smoke_config(str(tmp_path / "tfds")), workdir)
  with workdir_lib.hold(workdir):  # released on exit
    pass
  with workdir_lib.hold(workdir, primary=False):  # other processes of a job take no lock
    with workdir_lib.hold(workdir):
      pass


def test_the_lock_of_a_killed_run_is_released(tmp_path):
  child = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from mimojax.train import workdir; "
       "workdir.hold(sys.argv[1]); print('held', flush=True); time.sleep(600)", str(tmp_path)],
      cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == "held"
    with pytest.raises(ValueError, match=f"is in use by pid {child.pid} on host"):
      workdir_lib.hold(str(tmp_path))
  finally:
    child.kill()
    child.wait()
  assert f"pid {child.pid} " in (tmp_path / ".lock").read_text()  # the file stays behind
  with workdir_lib.hold(str(tmp_path)):
    assert f"pid {os.getpid()} " in (tmp_path / ".lock").read_text()


def test_second_run_on_a_held_workdir_stops_with_one_line(tmp_path, data_dir):
  with workdir_lib.hold(str(tmp_path)):
    proc = run_main(data_dir, tmp_path)
  assert proc.returncode == 1, proc.stderr[-2000:]
  holder = f"pid {os.getpid()} on host {socket.gethostname()}"
  assert last_line(proc) == (f"mimojax: invalid config: --workdir={tmp_path} is in use by "
                             f"{holder} ({tmp_path / '.lock'}); wait for that run to end or "
                             "choose another --workdir")
  assert sorted(os.listdir(tmp_path)) == [".lock"]


def test_safe_changes_name_real_fields():
  fields = set(workdir_lib.flat(config_lib.Config()))
  assert workdir_lib.SAFE_CHANGES <= fields and workdir_lib.GROW_ONLY <= workdir_lib.SAFE_CHANGES


def test_changes_lists_every_changed_field():
  old = config_lib.Config()
  new = dataclasses.replace(old, seed=3, model=dataclasses.replace(old.model, width=12),
                            eval=dataclasses.replace(old.eval, splits=("validation",)))
  assert workdir_lib.changes(old, new) == {
      "seed": (0, 3), "model.width": (10, 12), "eval.splits": (("test",), ("validation",))}


def test_resume_guard(tmp_path, data_dir):
  """A workdir with checkpoints resumes only under its config.json: a change that shapes
  the model stops the run naming the field and leaves the workdir as it was; a safe change
  needs --allow_config_change; a shorter budget needs a new workdir; without checkpoints
  there is nothing to compare, without config.json the latest checkpoint holds the config."""
  config = smoke_config(data_dir)
  fresh = tmp_path / "fresh"
  fresh.mkdir()
  (fresh / "config.json").write_text(json.dumps({"model": {"width": 1}}))
  workdir_lib.check_resume(str(fresh), config, allow_change=False)  # no checkpoints yet

  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, str(workdir))
  before = disk(workdir)
  assert before[1] == ["12", "6"]

  proc = run_main(data_dir, workdir, "--config.model.num_heads=2", "--config.model.dropout=0.2")
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert last_line(proc) == (
      f"mimojax: invalid config: --workdir={workdir} holds checkpoints of another config "
      "(model.num_heads 1 -> 2, model.dropout 0.0 -> 0.2); model.num_heads, model.dropout "
      "cannot change under its checkpoints: use a new --workdir (--allow_config_change allows "
      "only evaluation, logging, checkpoint, data location and device settings and a longer "
      "budget)")
  assert disk(workdir) == before

  safe = smoke_config(data_dir, eval__every_steps=3, train__num_steps=18)
  with pytest.raises(loop.ConfigError, match=r"\(train.num_steps 12 -> 18, eval.every_steps 6 "
                     r"-> 3\); pass --allow_config_change to resume with them"):
    loop.train_and_evaluate(safe, str(workdir))
  shorter = smoke_config(data_dir, train__num_steps=6)
  with pytest.raises(loop.ConfigError,
                     match=r"\(train.num_steps 12 -> 6\); train.num_steps cannot change"):
    loop.train_and_evaluate(shorter, str(workdir), allow_config_change=True)
  assert disk(workdir) == before

  proc = run_main(data_dir, workdir, "--allow_config_change", "--config.eval.every_steps=3",
                  "--config.train.num_steps=18")
  assert proc.returncode == 0, proc.stderr[-3000:]
  stored = json.loads((workdir / "config.json").read_text())
  assert (stored["train"]["num_steps"], stored["eval"]["every_steps"]) == (18, 3)
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if r["split"] == "test"] == [6, 12, 15, 18]

  (workdir / "config.json").unlink()  # then the latest checkpoint's copy is compared
  changed = smoke_config(data_dir, eval__every_steps=3, train__num_steps=18,
                         data__shuffle_seed=1)
  with pytest.raises(loop.ConfigError, match=r"another config \(data.shuffle_seed 0 -> 1\);"):
    loop.train_and_evaluate(changed, str(workdir))


def test_config_file_and_override_problems_name_what_is_allowed(tmp_path):
  assert main.config_argument(["main", "--workdir=x", "--config", "a.py:b"]) == "a.py:b"
  assert main.config_argument(["main", "--config=a.py:b", "--config.x=1"]) == "a.py:b"
  assert main.config_file_problem("nope.py:x").startswith("--config=nope.py:x: no file nope.py;"
                                                          " allowed: a Python file")
  assert main.config_file_problem(os.path.join(REPO, "README.md")).startswith(
      f"--config={REPO}/README.md: {REPO}/README.md is not Python (line ")
  no_function = tmp_path / "plain.py"
  no_function.write_text("config = {'a': 1}\n")
  assert main.config_file_problem(str(no_function)) == (
      f"--config={no_function}: {no_function} defines no get_config; allowed: a Python file "
      "defining get_config(arg), e.g. experiments/<study>.py")
  assert main.config_file_problem("") is not None
  study = os.path.join(REPO, "experiments", "synthetic.py") + ":smoke"
  assert main.config_file_problem(study) is None
  argv = ["main", f"--config={study}", "--config.model.width=3", "--noconfig.model.nope"]
  assert main.unknown_override(argv, study).startswith(
      "--config.model.nope: 'nope' is not a field of model; allowed: ['activation', ")
  assert main.unknown_override(["main", "--config.nope.x=1"], study) == (
      "--config.nope.x: 'nope' is not a field of the config; allowed: ['checkpoint', 'data', "
      "'eval', 'mesh', 'mimo', 'model', 'opt', 'seed', 'seeds', 'train']")
  assert main.unknown_override(argv[:3], study) is None
