"""Every study config the experiments define passes the loop's validation (no data needed)."""

import pytest

from experiments import favor_s_lra, synthetic
from mimojax.train import loop

LRA_ARGS = favor_s_lra.get_sweep() + [
    "", "smoke", "model=performer", "model=mimoformer,n=4,curriculum",
    "model=mimoformer,n=4,variant=att_mlp", "model=mimoformer,n=2,variant=att_mlp,smoke"]


@pytest.mark.parametrize("arg", LRA_ARGS)
def test_favor_s_lra_configs_validate(arg):
  config = favor_s_lra.get_config(arg or None)
  loop.validate(config)
  assert loop.total_steps(config, 10_000) == config.train.num_steps > 0


@pytest.mark.parametrize("model", list(synthetic.MODELS))
@pytest.mark.parametrize("task", list(synthetic.TASKS))
def test_synthetic_configs_validate(model, task):
  config = synthetic.get_config(f"model={model},task={task},seeds=5")
  loop.validate(config)
  assert loop.total_steps(config, 5000) == 400 * 156  # 400 epochs of 156 full batches


def test_sweep_has_every_table2_row_once():
  rows = favor_s_lra.get_sweep()
  assert len(rows) == len(set(rows)) == 5 + 2 * 5 * 6
