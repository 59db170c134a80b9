"""The inputs-per-pass modes a trained network runs at inference, declared per model family.

``MODES`` maps every ``model.name`` (the keys of ``models.MODELS``) to a function of the run's
validated config that lists its :class:`Mode` s, the most inputs per pass first; evaluation,
the predictor and the scheduler read modes only through :func:`modes`. A model family plugs
in by adding its entry here (a test checks that every model has one).
"""

from __future__ import annotations

import dataclasses

from mimojax.models import Phase
from mimojax.nn.attention import grid_size
from mimojax.train import config as config_lib


@dataclasses.dataclass(frozen=True)
class Mode:
  """The network as ``model.clone(phase=phase)`` runs it, superposing ``inputs_per_pass``
  inputs in each forward pass (1: none)."""
  name: str
  phase: Phase
  inputs_per_pass: int


def _single(config) -> list[Mode]:
  """Networks without superposition (WideResNet, WideIsoNet): one input per pass."""
  del config
  return [Mode("inputs_per_pass=1", Phase(), 1)]


def _mimoconv(config) -> list[Mode]:
  """MIMOConv: the mode it trained (``mimo.inputs_per_pass``, else N); after dynamic training
  (slow-mode batches or evaluated modes) every divisor n of N (Sec. 3; official
  ``MIMOConv/src/validate_dynamic.py``)."""
  mimo = config.mimo
  dynamic = mimo.slow_fraction > 0 or bool(config.eval.inputs_per_pass)
  ns = config_lib.divisors(mimo.n) if dynamic else (mimo.inputs_per_pass or mimo.n,)
  return [Mode(f"inputs_per_pass={n}", Phase(inputs_per_pass=n), n) for n in reversed(ns)]


def _transformer(config) -> list[Mode]:
  """Transformer / Performer: one sequence per pass; MIMOFormer (FAVOR+S): its M x N grid,
  and the M/2 x N/2 sub-grid where a curriculum trained on it (App. F.1)."""
  mimo = config.mimo
  if config.model.attention != "favor_s":
    return _single(config)
  out = [Mode(f"grid={mimo.m}x{mimo.n}", Phase(), mimo.m * mimo.n)]
  if mimo.curriculum_fraction > 0:
    m, n = grid_size(mimo.m, mimo.n, subgrid=True)
    out.append(Mode(f"subgrid={m}x{n}", Phase(subgrid=True), m * n))
  return out


def _instances(config) -> list[Mode]:
  """DataMUX and RevMUX: the N instances they were trained to multiplex."""
  return [Mode(f"inputs_per_pass={config.mimo.n}", Phase(), config.mimo.n)]


MODES = {
    "transformer": _transformer,
    "wide_resnet": _single,
    "wide_isonet": _single,
    "mimoconv": _mimoconv,
    "datamux": _instances,
    "datamux_cnn": _instances,
    "datamux_mlp": _instances,
    "revmux": _instances,
}


def modes(config) -> dict[str, Mode]:
  """Mode name -> :class:`Mode` of the run with the validated ``config``, the most inputs per
  pass first."""
  name = config.model.name
  if name not in MODES:
    raise ValueError(f"model.name={name!r} declares no inference modes; allowed: "
                     f"{sorted(MODES)} (mimojax.inference.modes.MODES)")
  return {mode.name: mode for mode in MODES[name](config)}


def select(available: dict[str, Mode], names) -> dict[str, Mode]:
  """The modes ``names`` (None or empty: all) of ``available``; a one-line ValueError names an
  unknown one and the allowed names."""
  if not names:
    return dict(available)
  for name in names:
    if name not in available:
      raise ValueError(f"--modes: {name!r} is not a mode of this run; allowed: "
                       f"{list(available)}")
  return {name: available[name] for name in names}

