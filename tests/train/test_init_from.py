"""`train.init_from`: a run starts from the parameters and constants of another run that match
by path and shape (a DataMUX retrieval warm-up on one task, then fine-tuning on another)."""

import jax
import numpy as np
import pytest

from experiments import favor_s_lra
from experiments import synthetic
from mimojax.train import checkpoint
from mimojax.train import loop


def _leaves(tree):
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_fine_tuning_starts_from_the_warm_up_run(tmp_path):
  warm = synthetic.get_config("model=datamux,task=ar,smoke")
  warm.model.norm_position, warm.model.activation = "post", "gelu_exact"
  warm.model.update(dict(num_layers=1, num_heads=2, head_dim=16, embed_dim=32, mlp_dim=32,
                         init="torch", tie_embeddings=False))
  warm.mimo.retrieval_fraction, warm.mimo.task_weight = 0.5, 0.9
  warm.train.update(dict(num_steps=2, log_every_steps=2))
  warm.eval.every_steps = warm.checkpoint.every_steps = 2
  warm_state = loop.train_and_evaluate(warm, str(tmp_path / "warm"))

  tune = favor_s_lra.get_config("model=datamux,smoke")
  tune.train.init_from = str(tmp_path / "warm")
  trainer = loop.Trainer(tune, str(tmp_path / "tune"))
  fresh = trainer.init_state()
  state = loop._init_from(fresh, tune.train.init_from)  # pylint: disable=protected-access
  source, fresh, got = (_leaves({"params": s.params, "model_state": s.model_state})
                        for s in (warm_state, fresh, state))
  same_shape = [k for k in got if k in source and source[k].shape == got[k].shape]
  assert "params/layer_0/attention/query/kernel" in same_shape
  assert "model_state/constants/mux/weights" in same_shape
  for name in same_shape:
    np.testing.assert_array_equal(got[name], source[name])
  assert "params/embed/token/embedding" not in same_shape  # vocabularies differ
  np.testing.assert_array_equal(got["params/embed/token/embedding"],
                                fresh["params/embed/token/embedding"])


def test_a_workdir_without_checkpoints_is_a_one_line_error(tmp_path):
  with pytest.raises(ValueError, match="train.init_from=.* has no checkpoint"):
    checkpoint.latest_variables(str(tmp_path))
