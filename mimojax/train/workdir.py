"""The workdir of a run: can it be used, who holds it, and may it resume under `config`.

- ``hold(workdir)`` checks that the workdir is (or can be made) a writable directory and
  takes its lock, ``<workdir>/.lock`` (``fcntl.flock``, host and pid inside), for the whole
  run: a second run on the same workdir stops at once naming the holder. The OS releases
  the lock when its process dies, so the file a killed run leaves behind does not block a
  resume. A multi-process job holds one lock, taken by process 0.
- ``check_resume(workdir, config, allow_change)`` compares the ``config.json`` of a workdir
  that holds checkpoints (without it, the latest checkpoint's copy) with the requested
  config, before anything is built. A change of a field outside ``SAFE_CHANGES`` (the
  model, the data, the optimisation, the seeds) needs a new workdir; a change of a safe
  field needs ``allow_change`` (``--allow_config_change``).
- ``write_config(workdir, config)`` writes ``config.json`` (process 0, after the check).

Every problem raises a one-line ValueError naming ``--workdir`` or the changed fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket

from etils import epath
import orbax.checkpoint as ocp
from orbax.checkpoint import utils as ocp_utils

from mimojax.train import checkpoint, config as config_lib

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"

# Fields a resume may change with --allow_config_change: what, when and how the run
# evaluates, logs and saves, where the data files are, and how the same steps are laid out
# on devices and compiled calls (checkpoints hold global arrays and count global batches).
# The budget (GROW_ONLY) may only grow. Every other field shapes the model, the data or the
# optimisation, so a checkpoint trained under another value is a different run.
SAFE_CHANGES = frozenset({
    "eval.every_steps", "eval.batch_size", "eval.splits", "eval.inputs_per_pass",
    "train.log_every_steps", "train.max_nonfinite_steps", "train.steps_per_call",
    "checkpoint.every_steps", "checkpoint.keep", "data.data_dir", "data.manual_dir",
    "mesh.seed", "mesh.data", "train.num_steps", "train.num_epochs"})
GROW_ONLY = frozenset({"train.num_steps", "train.num_epochs"})


def _is_local(workdir: str) -> bool:
  return "://" not in workdir


def _check_writable_dir(workdir: str) -> None:
  """Creates `workdir` if needed; a one-line ValueError if it is not a usable directory."""
  path = epath.Path(workdir)
  if path.exists() and not path.is_dir():
    raise ValueError(f"--workdir={workdir} is a file; allowed: a directory (existing or new)")
  parent = path.parent
  while not parent.exists() and parent != parent.parent:
    parent = parent.parent
  if not parent.is_dir():
    raise ValueError(f"--workdir={workdir} is under the file {parent}; allowed: a directory "
                     "(existing or new) under directories")
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--workdir={workdir} cannot be created ({e.strerror or e}); allowed: a "
                     "writable directory") from None


class _Lock:
  """``<workdir>/.lock`` held with ``fcntl.flock`` until ``release``."""

  def __init__(self, workdir: str):
    path = os.path.join(workdir, LOCK_FILE)
    try:
      self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise ValueError(f"--workdir={workdir} is not writable ({e.strerror or e}); allowed: "
                       "a writable directory") from None
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
      os.close(self._fd)
      raise ValueError(f"--workdir={workdir} is in use by {holder} ({path}); wait for that run "
                       "to end or choose another --workdir") from None
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)

  def release(self) -> None:
    os.ftruncate(self._fd, 0)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def hold(workdir: str, primary: bool = True):
  """Checks `workdir` (creating it) and, on the `primary` process, takes its lock.

  Returns a context manager that releases the lock. gs:// and other remote paths have no
  file locks: there a second run on the same workdir is not detected."""
  _check_writable_dir(workdir)
  if not (primary and _is_local(workdir)):
    return contextlib.nullcontext()
  return _Lock(workdir)


def flat(config: config_lib.Config) -> dict:
  """Dotted field name -> value of every field of `config`."""
  flat = {}
  for group, values in dataclasses.asdict(config).items():
    if isinstance(values, dict):
      flat.update({f"{group}.{name}": value for name, value in values.items()})
    else:
      flat[group] = values
  return flat


def changes(old: config_lib.Config, new: config_lib.Config) -> dict:
  """Dotted field name -> (old, new) for every field that differs."""
  before, after = flat(old), flat(new)
  return {name: (before[name], after[name]) for name in before if before[name] != after[name]}


def _is_safe(name: str, old, new) -> bool:
  return name in SAFE_CHANGES and (name not in GROW_ONLY or new >= old)


def check_resume(workdir: str, config: config_lib.Config, allow_change: bool) -> None:
  """A one-line ValueError if `workdir` holds checkpoints of a run whose config differs from
  `config` in a field outside ``SAFE_CHANGES`` (or in a safe field without `allow_change`).
  The run's config is its ``config.json``, or the latest checkpoint's copy where that file
  is missing. A workdir without checkpoints has nothing to compare."""
  steps = ocp_utils.checkpoint_steps(checkpoint.checkpoint_dir(workdir))
  if not steps:
    return
  source = epath.Path(workdir) / CONFIG_FILE
  try:
    if source.exists():
      values = json.loads(source.read_text())
    else:
      source = epath.Path(checkpoint.checkpoint_dir(workdir)) / str(max(steps)) / "config"
      values = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(source)
    stored = config_lib.from_dict(values)
  except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
    raise ValueError(f"--workdir={workdir}: {source} does not read as a config ({e}); use a "
                     "new --workdir") from None
  changed = changes(stored, config)
  unsafe = [name for name, (old, new) in changed.items() if not _is_safe(name, old, new)]
  if not changed:
    return
  listed = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
  if allow_change and not unsafe:
    logging.getLogger("mimojax").info("resuming %s with %s", workdir, listed)
    return
  if unsafe:
    how = (f"{', '.join(unsafe)} cannot change under its checkpoints: use a new --workdir "
           "(--allow_config_change allows only evaluation, logging, checkpoint, data location "
           "and device settings and a longer budget)")
  else:
    how = "pass --allow_config_change to resume with them"
  raise ValueError(f"--workdir={workdir} holds checkpoints of another config ({listed}); "
                   f"{how}")


def write_config(workdir: str, config: config_lib.Config) -> None:
  """Writes ``<workdir>/config.json``: every field of `config`, complete or not at all."""
  path = epath.Path(workdir) / CONFIG_FILE
  partial = path.parent / (CONFIG_FILE + ".partial")
  partial.write_text(json.dumps(config_lib.to_dict(config), indent=2, sort_keys=True))
  partial.replace(path)
