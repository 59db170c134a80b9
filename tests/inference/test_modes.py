"""Every model family declares its inputs-per-pass modes in one table."""

import pytest

from experiments import favor_s_lra, mimoconv_mnist, synthetic
from mimojax import models
from mimojax.inference import modes
from mimojax.models import Phase
from mimojax.train import config as config_lib


def names(arg_config):
  return {name: (m.phase, m.inputs_per_pass)
          for name, m in modes.modes(config_lib.from_dict(arg_config)).items()}


def test_every_model_declares_its_modes():
  assert set(modes.MODES) == set(models.MODELS)


def test_modes_per_family():
  assert names(mimoconv_mnist.get_config("n=4,dynamic,smoke")) == {
      "inputs_per_pass=4": (Phase(inputs_per_pass=4), 4),
      "inputs_per_pass=2": (Phase(inputs_per_pass=2), 2),
      "inputs_per_pass=1": (Phase(inputs_per_pass=1), 1)}
  static = mimoconv_mnist.get_config("n=4,smoke")
  static.eval.inputs_per_pass = ()
  assert list(names(static)) == ["inputs_per_pass=4"]
  assert names(favor_s_lra.get_config("model=mimoformer,n=4,curriculum,smoke")) == {
      "grid=4x4": (Phase(), 16), "subgrid=2x2": (Phase(subgrid=True), 4)}
  assert list(names(favor_s_lra.get_config("model=mimoformer,n=2,smoke"))) == ["grid=2x2"]
  assert list(names(favor_s_lra.get_config("model=performer,smoke"))) == ["inputs_per_pass=1"]
  assert list(names(favor_s_lra.get_config("model=datamux,n=4,smoke"))) == [
      "inputs_per_pass=4"]
  assert list(names(synthetic.get_config("model=transformer,task=ar,smoke"))) == [
      "inputs_per_pass=1"]


def test_unknown_mode_names_are_one_line_errors():
  available = modes.modes(config_lib.from_dict(mimoconv_mnist.get_config("n=2,dynamic,smoke")))
  with pytest.raises(ValueError, match=r"'n=2' is not a mode of this run; allowed: "
                                       r"\['inputs_per_pass=2', 'inputs_per_pass=1'\]"):
    modes.select(available, ["n=2"])
  assert list(modes.select(available, None)) == list(available)
