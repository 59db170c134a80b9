"""A finished (or running) workdir -> its typed config, model and variables at one step.

The config is the resolved one the checkpoint was saved with, read through the typed
boundary (``train.config.from_dict``); the variables are the checkpoint's parameters and
model state (constants, BatchNorm statistics) for every seed of the run.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from mimojax import data as data_lib
from mimojax.train import checkpoint
from mimojax.train import backbones
from mimojax.train import config as config_lib


@dataclasses.dataclass(frozen=True)
class Run:
  """One checkpoint of a run: ``variables`` ``{"params", "model_state"}`` (host numpy) with a
  leading seed axis of ``seeds`` models."""
  workdir: str
  step: int
  config: config_lib.Config
  variables: dict

  @property
  def seeds(self) -> int:
    return int(jax.tree.leaves(self.variables)[0].shape[0])

  def seed_variables(self, seed: int) -> dict:
    """The variables of seed ``seed`` alone (no seed axis)."""
    if not 0 <= seed < self.seeds:
      raise ValueError(f"seed={seed} is out of range; allowed: 0 ... {self.seeds - 1}")
    return jax.tree.map(lambda x: x[seed], self.variables)


def load(workdir: str, step: int | None = None) -> Run:
  """The checkpoint ``step`` (None: the newest) of the run in ``workdir``; a one-line
  ValueError for a workdir without checkpoints or a step it does not hold."""
  if not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is not a directory")
  steps = checkpoint.saved_steps(workdir)
  if not steps:
    raise ValueError(f"--workdir={workdir} has no checkpoints ({checkpoint.checkpoint_dir(workdir)}"
                     " is missing or empty); train it first with python -m mimojax.main")
  if step is not None and step not in steps:
    raise ValueError(f"--step={step} is not a checkpoint of {workdir}; allowed: {steps}")
  variables, config, step = checkpoint.variables_at(workdir, step)
  return Run(workdir=workdir, step=step, config=config_lib.from_dict(config),
             variables=variables)


def build_model(config: config_lib.Config):
  """(module, DataInfo) of the run's network, as the training loop builds it."""
  info = data_lib.load_split(config.data, "train")[1]
  return backbones.build_model(config, info), info
