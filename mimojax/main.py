"""Command-line entry point.

    python -m mimojax.main --config=experiments/<study>.py[:k=v,...] [--workdir=DIR]
        [--config.group.field=value ...] [--allow_config_change] [--distributed]

`--workdir` defaults to runs/<study>/<timestamp>; a workdir holding checkpoints resumes.
A run holds the workdir's lock (`<workdir>/.lock`): a second run on it stops at once.

Resuming. A workdir's checkpoints resume only under the config they were trained with
(its `config.json`). A change of a field that shapes the model, the data or the
optimisation stops the run, naming each changed field: train it in a new --workdir.
`--allow_config_change` resumes with changed evaluation, logging and checkpoint settings,
data locations, device layout or steps per call, or a longer budget
(mimojax.train.workdir.SAFE_CHANGES); without it those changes stop the run too.

Errors. A bad flag, config file, config value or workdir stops the run before compilation
with one line on stderr, `mimojax: invalid ...`, and exit status 1. Faults of a running
run (no readable checkpoint, a NaN/Inf state) stop it with one line `mimojax: ...` too; the
latest good checkpoint stays. An unexpected error shows its traceback.

Signals. SIGINT (Ctrl-C) or SIGTERM (a preempted VM, a scheduler) finishes the step being
trained, saves a checkpoint at it and exits with status 1 and one line; rerunning the same
command resumes. In a multi-process job every process stops at the same step. A second
signal exits at once (the latest checkpoint stays).

Multi-host. `--distributed` (or MIMOJAX_DISTRIBUTED=1) calls jax.distributed.initialize()
before any device query. On TPU VMs (and Slurm / Open MPI) JAX detects the coordinator,
process count and process id itself; elsewhere (GPU hosts, CPU processes) they come from
the environment:

  MIMOJAX_COORDINATOR       host:port of process 0's coordinator service
                            (JAX_COORDINATOR_ADDRESS is read by JAX as a fallback)
  MIMOJAX_NUM_PROCESSES     number of processes
  MIMOJAX_PROCESS_ID        this process's id, 0 ... MIMOJAX_NUM_PROCESSES-1
  MIMOJAX_HEARTBEAT_TIMEOUT seconds without a heartbeat after which a process counts as
                            dead and the others stop with an error (JAX default 100)
  MIMOJAX_INIT_TIMEOUT      seconds to wait for every process to connect (JAX default 300)
  MIMOJAX_SHUTDOWN_TIMEOUT  seconds a finishing process waits for the others (default 300)

Every process must get the same flags and an explicit, shared --workdir. A process that
fails exits at once (see `stop`), so the others end with an error instead of hanging.
launch/ has the launchers (local CPU processes, GPU hosts, TPU VM pod slices).
"""

from __future__ import annotations

import ast
import datetime
import logging
import os
import sys
import traceback
from typing import Mapping

from absl import app, flags
from absl import logging as absl_logging
import ml_collections
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes if it has "
                               "checkpoints); default runs/<study>/<timestamp>.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a workdir whose checkpoints were trained with other "
    "evaluation, logging, checkpoint, data-location or device settings, or a longer budget.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Initialise jax.distributed (multi-host); same as "
    "MIMOJAX_DISTRIBUTED=1. Off TPU VMs set MIMOJAX_COORDINATOR, MIMOJAX_NUM_PROCESSES "
    "and MIMOJAX_PROCESS_ID.")

# environment variable -> jax.distributed.initialize keyword
DISTRIBUTED_ENV = {
    "MIMOJAX_COORDINATOR": "coordinator_address",
    "MIMOJAX_NUM_PROCESSES": "num_processes",
    "MIMOJAX_PROCESS_ID": "process_id",
    "MIMOJAX_HEARTBEAT_TIMEOUT": "heartbeat_timeout_seconds",
    "MIMOJAX_INIT_TIMEOUT": "initialization_timeout",
    "MIMOJAX_SHUTDOWN_TIMEOUT": "shutdown_timeout_seconds",
}


def default_workdir(config_path: str) -> str:
  study = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", study, stamp)


def distributed_requested(environ: Mapping[str, str], flag: bool) -> bool:
  """True when `--distributed` is given or MIMOJAX_DISTRIBUTED is 1/true."""
  value = environ.get("MIMOJAX_DISTRIBUTED", "0").strip().lower()
  if value not in ("0", "1", "true", "false", ""):
    raise ValueError(f"MIMOJAX_DISTRIBUTED={value!r}; allowed values are 0, 1, true, false")
  return flag or value in ("1", "true")


def distributed_kwargs(environ: Mapping[str, str]) -> dict:
  """Keyword arguments for jax.distributed.initialize from the MIMOJAX_* variables.

  Unset variables are left out, so JAX auto-detects them (TPU VMs, Slurm, Open MPI) or
  uses its defaults.
  """
  kwargs = {}
  for name, key in DISTRIBUTED_ENV.items():
    raw = environ.get(name, "").strip()
    if not raw:
      continue
    if key == "coordinator_address":
      if ":" not in raw:
        raise ValueError(f"{name}={raw!r} must be host:port")
      kwargs[key] = raw
      continue
    try:
      value = int(raw)
    except ValueError:
      raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < (0 if key == "process_id" else 1):
      raise ValueError(f"{name}={value} must be {'>= 0' if key == 'process_id' else '>= 1'}")
    kwargs[key] = value
  count, index = kwargs.get("num_processes"), kwargs.get("process_id")
  if count is not None and index is not None and index >= count:
    raise ValueError(f"MIMOJAX_PROCESS_ID={index} must be < MIMOJAX_NUM_PROCESSES={count}")
  return kwargs


def initialize_distributed(environ: Mapping[str, str]) -> None:
  """jax.distributed.initialize() with the environment's settings (before any device use)."""
  import jax  # pylint: disable=g-import-not-at-top
  kwargs = distributed_kwargs(environ)
  try:
    jax.distributed.initialize(**kwargs)
  except ValueError as e:
    raise ValueError(
        f"jax.distributed.initialize failed ({e}); off TPU VMs set MIMOJAX_COORDINATOR=host:port, "
        "MIMOJAX_NUM_PROCESSES and MIMOJAX_PROCESS_ID") from None
  logging.getLogger("mimojax").info(
      "process %d of %d, %d local / %d global devices", jax.process_index(),
      jax.process_count(), jax.local_device_count(), jax.device_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config=experiments/<study>.py is required")
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
  logging.getLogger("mimojax").setLevel(logging.INFO)
  try:
    distributed = distributed_requested(os.environ, _DISTRIBUTED.value)
    if distributed and not _WORKDIR.value:
      raise ValueError("needs an explicit --workdir shared by all processes")
    if distributed:
      initialize_distributed(os.environ)
  except ValueError as e:
    sys.exit(f"mimojax: --distributed: {e}")
  from mimojax.train import loop  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(
      config_flags.get_config_filename(flags.FLAGS["config"]))
  try:
    loop.train_and_evaluate(config, workdir, _ALLOW_CONFIG_CHANGE.value)
  except loop.Error as e:
    stop(f"mimojax: {e.prefix}{e}", distributed)
  except BaseException:
    if not distributed:
      raise
    traceback.print_exc()
    stop("mimojax: this process failed (traceback above)", distributed)


def stop(message: str, distributed: bool) -> None:
  """Prints `message` as the last line on stderr and exits at once with status 1.

  At once (os._exit), after the logs are flushed: the interpreter's teardown would let
  background threads print after the message (such as Orbax's abandoned reads of an
  unreadable checkpoint), and a distributed process would wait in jax.distributed's shutdown
  barrier, keeping its heartbeats alive while the other processes block in a collective, so
  the whole job would hang. Once it is gone, the JAX distributed service stops every other
  process within MIMOJAX_HEARTBEAT_TIMEOUT seconds with "Terminating process because the
  JAX distributed service detected fatal errors". Everything a run writes is closed before
  its errors reach here.
  """
  if distributed:
    import jax  # pylint: disable=g-import-not-at-top
    message = f"{message} [process {jax.process_index()} of {jax.process_count()}]"
  logging.shutdown()
  sys.stdout.flush()
  print(message, file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


def parse_flags(argv):
  """absl flag parsing that reports a bad --config argument or override in one line.

  A config file that is missing or not Python, and an override of a field the config does
  not have, are named with what is allowed. ml_collections wraps errors raised by
  `get_config(arg)` (e.g. an unknown model name) in a multi-line traceback; only its final
  `ValueError: ...` line is shown.
  """
  argument = config_argument(argv)
  problem = None if argument is None else config_file_problem(argument)
  if problem:
    sys.exit(f"mimojax: invalid flags: {problem}")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if line.startswith("ValueError: ")),
                  lines[-1] if lines else repr(e))
    sys.exit(f"mimojax: invalid flags: {reason.removeprefix('ValueError: ')}")
  except (AttributeError, KeyError):  # ml_collections: an override of no field
    problem = argument and unknown_override(argv, argument)
    if not problem:
      raise
    sys.exit(f"mimojax: invalid flags: {problem}")


def config_argument(argv) -> str | None:
  """The value of --config in `argv` (`path[:arg]`), or None."""
  for i, arg in enumerate(argv[1:], 1):
    name, _, value = arg.lstrip("-").partition("=")
    if name == "config" and arg.startswith("-"):
      return value if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
  return None


def config_file_problem(argument: str) -> str | None:
  """Why the file of `--config=argument` cannot be a config file, or None."""
  path = argument.split(":", 1)[0]
  allowed = "allowed: a Python file defining get_config(arg), e.g. experiments/<study>.py"
  if not os.path.isfile(path):
    return f"--config={argument}: no file {path}; {allowed}"
  try:
    with open(path, "rb") as f:
      module = ast.parse(f.read(), path)
  except (SyntaxError, ValueError) as e:
    where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else ""
    return f"--config={argument}: {path} is not Python{where}; {allowed}"
  if "get_config" not in _top_level_names(module):
    return f"--config={argument}: {path} defines no get_config; {allowed}"
  return None


def _top_level_names(module: ast.Module) -> set[str]:
  """Names a module defines, assigns or imports at its top level."""
  names = set()
  for node in module.body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update((a.asname or a.name).split(".")[0] for a in node.names)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      names.update(t.id for t in targets if isinstance(t, ast.Name))
  return names


def unknown_override(argv, argument: str) -> str | None:
  """The first `--config.a.b=v` in `argv` naming no field of the config, with the fields
  allowed there; None if every override names a field."""
  config = flags.FLAGS["config"].parser.parse(argument)
  for arg in argv[1:]:
    name = arg.lstrip("-").split("=", 1)[0]
    name = name.removeprefix("no") if name.startswith("noconfig.") else name
    if not name.startswith("config."):
      continue
    node, parts = config, name.split(".")[1:]
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict):
        break
      if part not in node:
        where = ".".join(parts[:depth]) or "the config"
        return (f"--{name}: {part!r} is not a field of {where}; allowed: "
                f"{sorted(node.keys())}")
      node = node[part]
  return None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
