"""What step s trains: training phases as data (pure; no jax).

A :class:`Schedule` holds the step counts a config implies; ``phase_at(schedule, s)`` is the
``models.Phase`` that batch s trains: the App. F.1 warm-up on the M/2 x N/2 sub-grid, then
(optionally, not in the paper) a ramp that mixes both grids, the exact-kernel first steps
(``mimo.exact_kernel_fraction``, not in the paper), MIMOConv's slow-mode batches
(``mimo.slow_fraction``, official dynamic training) and DataMUX's retrieval warm-up
(``mimo.retrieval_fraction``: retrieval loss only, then the task with retrieval as an
auxiliary loss, DataMUX Sec. 3.3). The training loop compiles one step per
distinct phase and knows nothing of these schedules.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mimojax.models.phase import Phase

_RAMP_STREAM = 1  # keeps the curriculum ramp's draws apart from the slow-mode ones


def step_draw(seed: int, step: int, *stream: int) -> float:
  """A uniform draw in [0, 1) seeded by (seed, step[, stream]): a resumed run repeats it,
  and every model seed of the run shares it."""
  return np.random.default_rng([seed, step, *stream]).random()


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The phases of a run of ``total_steps`` steps (see the module doc)."""
  total_steps: int
  curriculum_steps: int = 0
  ramp_steps: int = 0
  exact_steps: int = 0
  retrieval_steps: int = 0
  slow_fraction: float = 0.0
  seed: int = 0
  base: Phase = Phase()  # what every other step trains
  slow: Phase = Phase()  # a slow-mode batch


def schedule(config, total_steps: int) -> Schedule:
  """The :class:`Schedule` of a validated ``train.config.Config``."""
  mimo = config.mimo
  return Schedule(
      total_steps=total_steps,
      curriculum_steps=int(mimo.curriculum_fraction * total_steps),
      ramp_steps=int(mimo.curriculum_ramp_fraction * total_steps),
      exact_steps=int(mimo.exact_kernel_fraction * total_steps),
      retrieval_steps=int(mimo.retrieval_fraction * total_steps),
      slow_fraction=mimo.slow_fraction,
      seed=config.seed,
      base=Phase(inputs_per_pass=mimo.inputs_per_pass, task_weight=mimo.task_weight,
                 retrieval_weight=mimo.retrieval_weight),
      slow=Phase(inputs_per_pass=mimo.slow_inputs_per_pass))


def on_subgrid(s: Schedule, step: int) -> bool:
  """Whether batch ``step`` trains on the sub-grid: every step of the warm-up (App. F.1);
  then, over the ramp, a draw (``step_draw``) that takes the full grid with probability
  (k + 1) / (ramp steps + 1) at the ramp's k-th step."""
  into_ramp = step - s.curriculum_steps
  if into_ramp < 0:
    return True
  if into_ramp >= s.ramp_steps:
    return False
  return step_draw(s.seed, step, _RAMP_STREAM) >= (into_ramp + 1) / (s.ramp_steps + 1)


def is_slow(s: Schedule, step: int) -> bool:
  """Whether batch ``step`` trains in slow mode (``step_draw`` below ``slow_fraction``)."""
  return s.slow_fraction > 0 and step_draw(s.seed, step) < s.slow_fraction


def phase_at(s: Schedule, step: int) -> Phase:
  """The phase batch ``step`` trains."""
  if step < s.retrieval_steps:
    return dataclasses.replace(s.base, task_weight=0.0, retrieval_weight=1.0)
  subgrid = on_subgrid(s, step)
  if step < s.exact_steps:
    return dataclasses.replace(s.base, subgrid=subgrid, exact_kernel=True)
  if subgrid:
    return dataclasses.replace(s.base, subgrid=True)
  return s.slow if is_slow(s, step) else s.base


def run_length(s: Schedule, step: int, limit: int) -> int:
  """How many steps from ``step`` (at most ``limit``) train the phase of ``step``."""
  phase = phase_at(s, step)
  return next((i for i in range(1, limit) if phase_at(s, step + i) != phase), limit)


def eval_phases(config, s: Schedule) -> dict[str, Phase]:
  """The extra accuracies of every evaluation, by metric name: each of MIMOConv's
  ``eval.inputs_per_pass`` modes; with a warm-up, the model on its sub-grid (where the
  full-grid accuracy says little during the warm-up); with exact-kernel steps, the model
  that step 0 trains."""
  out = {f"accuracy/inputs_per_pass={n}": Phase(inputs_per_pass=n)
         for n in config.eval.inputs_per_pass}
  if s.curriculum_steps:
    out["accuracy/subgrid"] = dataclasses.replace(s.base, subgrid=True)
  if s.exact_steps:
    out["accuracy/exact_kernel"] = phase_at(s, 0)
  return out
