"""The common end of the analysis command lines: a JSON file and where it went."""

from __future__ import annotations

import json
import os
import platform

import jax


def environment() -> dict:
  """The jax version and the machine a probe ran on, for its JSON record."""
  return {"jax": jax.__version__, "machine": platform.processor() or platform.machine()}


def write_json(path: str, payload, indent: int = 1) -> None:
  """Writes ``payload`` to ``path`` as JSON (creating its folder) and prints where."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=indent)
  print(f"wrote {path}")
