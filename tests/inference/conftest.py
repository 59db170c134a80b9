"""Tiny finished runs that the inference tests restore: a dynamic MIMOConv (N = 4) on the
offline digits and a MIMOFormer (2 x 2 grid, sub-grid curriculum) on tiny ListOps."""

import pytest

from experiments import favor_s_lra
from experiments import mimoconv_mnist
from mimojax.train import loop


@pytest.fixture(scope="session")
def mimoconv_run(tmp_path_factory):
  """MIMOConv-10-1, N = 4, modes 4, 2, 1 evaluated (without slow-mode batches: one train step
  to compile): 6 steps, evaluated on a 64-image validation split and saved at steps 3 and 6."""
  workdir = str(tmp_path_factory.mktemp("mimoconv"))
  config = mimoconv_mnist.get_config("n=4,dynamic,smoke")
  config.mimo.slow_fraction = 0.0
  config.data.validation_size, config.eval.splits = 64, ("validation",)
  loop.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="session")
def mimoformer_run(tmp_path_factory, data_dir):
  """MIMOFormer att., M = N = 2, first steps on the 1 x 1 sub-grid: 8 steps, evaluated and
  saved at steps 4 and 8."""
  workdir = str(tmp_path_factory.mktemp("mimoformer"))
  config = favor_s_lra.get_config("model=mimoformer,n=2,curriculum,smoke")
  config.data.data_dir = data_dir
  loop.train_and_evaluate(config, workdir)
  return workdir
