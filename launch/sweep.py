"""One training command per row of an experiment's `get_sweep()`, printed or launched.

    python launch/sweep.py experiments/favor_s_lra.py                 # print the commands
    python launch/sweep.py experiments/favor_s_lra.py --dry-run       # the same
    python launch/sweep.py experiments/favor_s_lra.py --launch        # run them one by one
    python launch/sweep.py experiments/favor_s_lra.py --launcher="launch/local_processes.sh 2"
    python launch/sweep.py experiments/favor_s_lra.py -- --config.train.num_steps=100

`get_sweep()` returns (or yields) rows, each either
  * a config-argument string, e.g. "task=listops,model=mimoformer,n=2,variant=att", or
  * a dict: keys starting with "config." become `--config.a.b=value` overrides; other keys
    are config arguments (`k=v`; True becomes the bare flag `k`, False `k=false`).
Row r becomes
    <launcher> --config=<file>:<argument> --workdir=<base>/<slug> [--config.a.b=v ...] [extra]
with <launcher> = "<python> -m mimojax.main", <base> = runs/<study> and <slug> the row's
settings with "=" -> "-" and "," -> "_" (e.g. task-listops_model-mimoformer_n-2), so rerunning
the sweep resumes every row from its own checkpoints. Extra mimojax flags go after "--".
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys


def load_sweep(path: str) -> list:
  """The rows of `get_sweep()` in the experiment file at `path` (imported by path)."""
  if not os.path.isfile(path):
    raise ValueError(f"experiment file {path!r} does not exist")
  name = "_sweep_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{path} has no get_sweep(); it cannot be swept")
  rows = list(module.get_sweep())
  if not rows:
    raise ValueError(f"{path}: get_sweep() returned no rows")
  return rows


def _value(value) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  return str(value)


def split_row(row) -> tuple[str, list[str]]:
  """(config argument string, ['--config.a.b=v', ...]) for one sweep row."""
  if isinstance(row, str):
    return row.strip(), []
  if not isinstance(row, dict):
    raise ValueError(f"sweep row {row!r} is a {type(row).__name__}; rows must be str or dict")
  args, overrides = [], []
  for key, value in row.items():
    if key.startswith("config."):
      overrides.append(f"--{key}={_value(value)}")
    elif value is True:
      args.append(key)
    else:
      args.append(f"{key}={_value(value)}")
  return ",".join(args), overrides


def slug(argument: str, overrides: list[str]) -> str:
  """Directory name for a row: its settings, '=' -> '-', ',' -> '_', nothing unsafe."""
  parts = [p for p in argument.split(",") if p]
  parts += [o[len("--config."):] for o in overrides]
  text = "_".join(p.replace("=", "-") for p in parts) or "default"
  return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def commands(path: str, rows: list, launcher: list[str], base: str,
             extra: list[str]) -> list[list[str]]:
  """The command (argv) of every row, in order; workdirs must be distinct."""
  out, seen = [], {}
  for index, row in enumerate(rows):
    argument, overrides = split_row(row)
    name = slug(argument, overrides)
    if name in seen:
      raise ValueError(f"sweep rows {seen[name]} and {index} both map to workdir {name!r}")
    seen[name] = index
    config = f"--config={path}:{argument}" if argument else f"--config={path}"
    out.append(launcher + [config, f"--workdir={os.path.join(base, name)}"] + overrides + extra)
  return out


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="launch/sweep.py", description=__doc__.split("\n\n")[0],
      epilog="Extra mimojax.main flags for every row go after '--'.")
  parser.add_argument("experiment", help="experiment file with get_sweep(), e.g. "
                      "experiments/favor_s_lra.py")
  parser.add_argument("--workdir-base", default=None,
                      help="parent of the per-row workdirs (default runs/<study>)")
  parser.add_argument("--launcher", default=None,
                      help="command prefix for every row (default: '<python> -m mimojax.main'),"
                      " e.g. 'launch/local_processes.sh 2'")
  parser.add_argument("--launch", action="store_true",
                      help="run the commands one after the other (default: print them)")
  parser.add_argument("--keep-going", action="store_true",
                      help="with --launch: continue after a failed row")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the exact commands, run nothing (overrides --launch)")
  if "--" in argv:
    cut = argv.index("--")
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]
  else:
    args = parser.parse_args(argv)
    args.extra = []
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  study = os.path.splitext(os.path.basename(args.experiment))[0]
  base = args.workdir_base or os.path.join("runs", study)
  launcher = (shlex.split(args.launcher) if args.launcher
              else [sys.executable, "-m", "mimojax.main"])
  try:
    cmds = commands(args.experiment, load_sweep(args.experiment), launcher, base, args.extra)
  except ValueError as e:
    print(f"sweep.py: {e}", file=sys.stderr)
    return 2
  if args.dry_run or not args.launch:
    for cmd in cmds:
      print(shlex.join(cmd))
    return 0
  failures = 0
  for index, cmd in enumerate(cmds):
    print(f"sweep.py: row {index + 1}/{len(cmds)}: {shlex.join(cmd)}", file=sys.stderr,
          flush=True)
    status = subprocess.call(cmd)
    if status:
      failures += 1
      print(f"sweep.py: row {index + 1} failed with status {status}", file=sys.stderr)
      if not args.keep_going:
        return 1
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
