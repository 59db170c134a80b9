"""MIMOConv / WideResNet training end to end on the offline sklearn digits: every conv
experiment through the loop (one through `main`), dynamic slow-mode batches, per-mode
evaluation, and recipe values rejected before compiling."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import mimoconv_cifar
from experiments import mimoconv_mnist
from experiments import synthetic
from mimojax.models import Phase
from mimojax.train import config as config_lib
from mimojax.train import loop
from mimojax.train import phases

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["model=wide_isonet,smoke", "model=mimoconv,n=2,smoke"])
def test_cifar_experiment_smoke(tmp_path, arg):
  config = mimoconv_cifar.get_config(arg)
  state = loop.train_and_evaluate(config, str(tmp_path))
  rows = read_metrics(tmp_path)
  train = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train] == [3, 6]
  assert all(math.isfinite(r["loss"]) and r["regularization"] > 0 for r in train)
  test = [r for r in rows if r["split"] == "test"]
  assert [r["step"] for r in test] == [3, 6]
  if "n=2" in arg:
    assert all("accuracy/inputs_per_pass=1" in r for r in test)
  assert int(np.asarray(state.step)[0]) == 6


@pytest.mark.slow
def test_mnist_experiment_dynamic_smoke_through_main(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "mimojax.main",
       "--config=experiments/mimoconv_mnist.py:n=4,dynamic,smoke", f"--workdir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  test = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
  assert [r["step"] for r in test] == [3, 6]
  for r in test:
    for key in ("accuracy", "accuracy/inputs_per_pass=1", "accuracy/inputs_per_pass=2"):
      assert 0.0 <= r[key] <= 1.0
  assert os.path.isdir(tmp_path / "checkpoints" / "6")


def test_slow_mode_batches_follow_the_fraction_and_are_reproducible():
  config = mimoconv_mnist.get_config("n=4,dynamic,smoke")
  trainer = loop.Trainer(config, "/nonexistent")  # nothing is compiled or written
  slow = [i for i in range(4000) if phases.is_slow(trainer.schedule, i)]
  assert abs(len(slow) / 4000 - 0.2) < 0.03
  again = loop.Trainer(config, "/x")
  assert slow == [i for i in range(4000) if phases.is_slow(again.schedule, i)]
  phase = lambda i: phases.phase_at(trainer.schedule, i)
  assert phase(slow[0]) == Phase(inputs_per_pass=1)
  assert phase(slow[0] + 1 if slow[0] + 1 not in slow else 0) == Phase()
  static = loop.Trainer(mimoconv_mnist.get_config("n=4,smoke"), "/x")
  assert {phases.phase_at(static.schedule, i) for i in range(4000)} == {Phase()}
  assert sorted(trainer.eval_modes) == ["accuracy/inputs_per_pass=1",
                                        "accuracy/inputs_per_pass=2"]


def test_recipe_epochs_steps_and_batches():
  config = config_lib.from_dict(mimoconv_mnist.get_config("n=16,data=mnist_5k"))
  assert config.train.batch_size == 128 * 16 and config.train.passes_per_epoch == 16
  # 4000 images: one batch of 2048 per pass, 16 passes per epoch, 50 epochs
  assert config_lib.steps_per_epoch(config, 4000) == 16
  assert config_lib.total_steps(config, 4000) == 50 * 16
  config = config_lib.from_dict(mimoconv_cifar.get_config("model=mimoconv,n=4"))
  assert config_lib.total_steps(config, 50_000) == 1200 * 97 * 4  # official: N passes/epoch
  wrn = config_lib.from_dict(mimoconv_cifar.get_config("model=wide_resnet"))
  assert config_lib.total_steps(wrn, 50_000) == 200 * 390


@pytest.mark.parametrize("override, match", [
    ({"train.mixup_alpha": -1.0}, "train.mixup_alpha"),
    ({"eval.inputs_per_pass": (3,)}, r"eval.inputs_per_pass=3 is not allowed; choose from "
                                     r"\[1, 2, 4\]"),
    ({"mimo.slow_inputs_per_pass": 3}, "mimo.slow_inputs_per_pass"),
    ({"mimo.slow_fraction": 1.5}, "mimo.slow_fraction"),
    ({"opt.decay_exempt": "(bias"}, "opt.decay_exempt"),
    ({"train.passes_per_epoch": 0}, "train.passes_per_epoch"),
    ({"train.steps_per_call": 0}, "train.steps_per_call"),
    ({"train.steps_per_call": 4}, "needs mimo.slow_fraction=0"),
])
def test_bad_recipe_values_are_one_line_errors(override, match):
  config = mimoconv_mnist.get_config("n=4,dynamic,smoke")
  for key, value in override.items():
    group, field = key.split(".")
    config[group][field] = value
  with pytest.raises(ValueError, match=match) as err:
    config_lib.from_dict(config)
  assert "\n" not in str(err.value)


def test_mimoconv_fields_are_rejected_for_other_models():
  config = synthetic.get_config("smoke")
  config.train.mixup_alpha = 1.0
  with pytest.raises(ValueError, match="needs an image dataset"):
    config_lib.from_dict(config)
  config = synthetic.get_config("smoke")
  config.eval.inputs_per_pass = (1,)
  with pytest.raises(ValueError, match="model.name='mimoconv'"):
    config_lib.from_dict(config)
