"""What the benchmarks share: command line, interleaved timing rounds, table and JSON file.

A benchmark builds its parser with :func:`parser`, adds its own flags and calls
:func:`parse_args`, which adds the shared ``--data_dir`` (where asked) and ``--out`` (default
``benchmarks/results/<name>.json``). It times its variants in :func:`interleaved_rounds`,
prints :func:`markdown_table` and hands its result to :func:`write_result`, which stores it
beside :func:`machine_info` and says where it went.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess

import jax

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parser(doc: str) -> argparse.ArgumentParser:
  """An argument parser described by the first line of the benchmark's docstring."""
  return argparse.ArgumentParser(description=doc.splitlines()[0])


def parse_args(p: argparse.ArgumentParser, out: str | None, data_dir: bool = False,
               argv=None) -> argparse.Namespace:
  """Adds ``--data_dir`` (if ``data_dir``) and ``--out`` (default ``RESULTS/<out>``; none
  when ``out`` is None: the benchmark defines its own) and parses ``argv``."""
  if data_dir:
    p.add_argument("--data_dir", default=None, help="tfds data directory (default: tfds's)")
  if out is not None:
    p.add_argument("--out", default=os.path.join(RESULTS, out),
                   help=f"JSON output path (default benchmarks/results/{out})")
  return p.parse_args(argv)


def _cpu_model() -> str:
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                if line.startswith("Model name"))
  except (OSError, subprocess.CalledProcessError, StopIteration):
    return platform.processor() or "unknown"


def machine_info() -> dict:
  """The machine a result was measured on: OS, CPU model and count, jax and its devices."""
  return {"platform": platform.platform(), "processor": platform.processor(),
          "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
          "backend": jax.default_backend(), "device": str(jax.devices()[0]),
          "devices": len(jax.devices()), "python": platform.python_version()}


def interleaved_rounds(runs, rounds: int, run, before=None) -> None:
  """Calls ``run(r)`` once for every run ``r`` (warm-up: compiles), then ``rounds`` rounds
  of every run in turn, appending the seconds ``run`` returns to ``r["times"]``;
  ``before()`` starts each round."""
  runs = list(runs)
  for r in runs:
    run(r)
  for _ in range(rounds):
    if before is not None:
      before()
    for r in runs:
      r["times"].append(run(r))


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A markdown table of ``header`` titles and ``rows`` of already formatted cells."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines)


def write_result(path: str, result: dict) -> None:
  """Writes ``{"machine": machine_info(), **result}`` as indented JSON to ``path`` (folders
  created) and prints the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"machine": machine_info(), **result}, f, indent=2)
  print(f"wrote {path}")
