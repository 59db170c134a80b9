"""The load-adaptive scheduler: deeper queues get more inputs per pass."""

import pytest

from mimojax.inference import Scheduler

PER_PASS = {"inputs_per_pass=1": 1, "inputs_per_pass=2": 2, "inputs_per_pass=4": 4}
SECONDS = {"inputs_per_pass=1": 0.04, "inputs_per_pass=2": 0.03, "inputs_per_pass=4": 0.025}


def test_deeper_queues_get_more_inputs_per_pass():
  scheduler = Scheduler(SECONDS, PER_PASS, batch_size=64, target_seconds=0.1)
  chosen = [PER_PASS[scheduler.choose(depth)] for depth in range(0, 2000, 7)]
  assert chosen == sorted(chosen)
  assert scheduler.choose(1) == "inputs_per_pass=1"  # a shallow queue: most accurate
  assert scheduler.choose(150) == "inputs_per_pass=2"  # 3 calls: 0.12 s at n=1, 0.09 s at n=2
  assert scheduler.choose(10_000) == "inputs_per_pass=4"  # none meets the target: fastest


def test_bad_settings_are_rejected():
  with pytest.raises(ValueError, match="target_seconds"):
    Scheduler(SECONDS, PER_PASS, batch_size=64, target_seconds=0)
  with pytest.raises(ValueError, match="same modes"):
    Scheduler({"inputs_per_pass=1": 0.1}, PER_PASS, batch_size=64, target_seconds=1)
