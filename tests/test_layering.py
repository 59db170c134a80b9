"""Imports flow one way: ops -> nn -> models -> train -> analysis -> main; data beside."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mimojax"
# Which mimojax subpackages each layer may import (itself always allowed).
ALLOWED = {
    "ops": set(),
    "nn": {"ops"},
    "models": {"ops", "nn"},
    "data": set(),
    "configs": {"train"},
    "train": {"ops", "nn", "models", "data"},
    "analysis": {"ops", "nn", "models", "train", "data"},
    "inference": {"ops", "nn", "models", "train", "data"},
    "main": {"train"},
}
THIRD_PARTY_BANNED = {"ops": {"flax", "optax", "orbax", "tensorflow_datasets", "grain"},
                      "data": {"jax", "flax"}}


def imports(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.module


def layer_of(path):
  rel = path.relative_to(PACKAGE)
  return rel.parts[0] if len(rel.parts) > 1 else rel.stem


FILES = [p for p in PACKAGE.rglob("*.py") if layer_of(p) in ALLOWED]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
  layer = layer_of(path)
  for name in imports(path):
    parts = name.split(".")
    if parts[0] == "mimojax" and len(parts) > 1:
      assert parts[1] == layer or parts[1] in ALLOWED[layer], f"{layer} imports {name}"
    assert parts[0] not in ("experiments", "benchmarks", "launch"), f"{path} imports {name}"
    assert parts[0] not in THIRD_PARTY_BANNED.get(layer, ()), f"{layer} imports {name}"


def test_every_module_has_a_layer():
  layers = {layer_of(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
  assert layers <= set(ALLOWED), layers - set(ALLOWED)
