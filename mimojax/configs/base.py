"""Shared defaults for every study and the `get_config(arg)` argument parser.

A study file in `experiments/` starts from `base_config()`, edits the groups it needs and
exposes `get_config(arg)`; `parse_arg` turns the `:k=v,flag` suffix of
`--config=experiments/<study>.py:k=v,flag` into typed values.

Groups: data, model, mimo, opt, train, eval, seeds, mesh, checkpoint: the typed dataclasses
of `mimojax.train.config`, whose defaults and field notes `base_config()` exposes.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from mimojax.train import config as config_lib


def _group(cls, values) -> ml_collections.ConfigDict:
  """A ConfigDict of a config dataclass's defaults; None defaults become typed placeholders
  (so that ``--config.group.field=value`` parses)."""
  typed = config_lib.placeholder_types(cls)
  out = ml_collections.ConfigDict()
  for field in dataclasses.fields(cls):
    value = getattr(values, field.name)
    if dataclasses.is_dataclass(value):
      out[field.name] = _group(type(value), value)
    elif value is None:
      out[field.name] = ml_collections.config_dict.placeholder(typed[field.name])
    else:
      out[field.name] = value
  return out


def base_config() -> ml_collections.ConfigDict:
  """Every field of a study with its default (``mimojax.train.config``, where each field is
  described); a study edits what it needs."""
  return _group(config_lib.Config, config_lib.Config())


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'k=v,flag,...' against typed `defaults`; a bare name sets a bool to True.

  Values take the type of their default; unknown keys raise a ValueError that lists the
  allowed ones.
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"config argument {key!r} is unknown; allowed: {sorted(defaults)}")
    default = defaults[key]
    if not eq:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r}: allowed values are true/false")
      out[key] = value.lower() in ("true", "1")
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ValueError(
            f"config argument {key}={value!r} is not a {type(default).__name__}") from None
  return out


check_allowed = config_lib.choose  # experiment arguments: the same one-line error
