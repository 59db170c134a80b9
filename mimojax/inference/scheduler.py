"""Load-adaptive serving: how many inputs each pass superposes, chosen from the queue depth.

A network trained with dynamic modes (MIMOConv, Sec. 3) trades accuracy for throughput at
inference time: a pass superposing more inputs is cheaper per input and less accurate. The
:class:`Scheduler` picks, call by call, the most accurate mode (fewest inputs per pass) that
serves the queue within a latency target, and the fastest mode when none does: a shallow
queue is served accurately, a deep one fast, so that the queue stays bounded up to the
fastest mode's capacity.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Scheduler:
  """Chooses a mode per call (module doc).

  ``seconds_per_call``: mode name -> measured seconds of one compiled call
  (:func:`measure`); ``inputs_per_pass``: mode name -> inputs per pass; ``batch_size``:
  inputs per call; ``target_seconds``: the time within which the queue should be served.
  """
  seconds_per_call: dict
  inputs_per_pass: dict
  batch_size: int
  target_seconds: float

  def __post_init__(self):
    if set(self.seconds_per_call) != set(self.inputs_per_pass) or not self.inputs_per_pass:
      raise ValueError("seconds_per_call and inputs_per_pass must name the same modes")
    if not self.target_seconds > 0:
      raise ValueError(f"target_seconds={self.target_seconds} must be > 0")

  def drain_seconds(self, mode: str, depth: int) -> float:
    """Seconds that mode ``mode`` needs to serve a queue of ``depth`` inputs."""
    return math.ceil(depth / self.batch_size) * self.seconds_per_call[mode]

  def choose(self, depth: int) -> str:
    """The mode of the next call for a queue of ``depth`` inputs."""
    by_accuracy = sorted(self.inputs_per_pass, key=self.inputs_per_pass.get)
    for mode in by_accuracy:
      if self.drain_seconds(mode, depth) <= self.target_seconds:
        return mode
    return min(by_accuracy, key=lambda m: (self.seconds_per_call[m], -self.inputs_per_pass[m]))


def measure(predictor, inputs, rounds: int = 20) -> dict:
  """Mode name -> median seconds of one compiled call of ``predictor`` on ``inputs`` (one
  call's ``batch_size`` rows), timed in ``rounds`` rounds interleaved over the modes after
  one warm call each."""
  valid = np.ones(predictor.batch_size, bool)
  times = {name: [] for name in predictor.modes}
  for name in times:
    predictor.forward(inputs, valid, name)
  for _ in range(rounds):
    for name, seconds in times.items():
      start = time.perf_counter()
      predictor.forward(inputs, valid, name)
      seconds.append(time.perf_counter() - start)
  return {name: statistics.median(seconds) for name, seconds in times.items()}
