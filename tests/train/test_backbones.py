"""Tests for mimojax.train.backbones: frozen backbones resolved from a Hugging Face checkpoint
directory and from a mimojax workdir (a trained ListOps Transformer), and a RevMUX run on top
of the restored Transformer (experiments/revmux_listops.py smoke)."""

import json

import jax
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from experiments import favor_s_lra, revmux_listops
from mimojax import data as data_lib
from mimojax.inference import regroup
from mimojax.models import pretrained
from mimojax.models.revmux import BertBackbone, TransformerBackbone
from mimojax.train import backbones, loop

TINY = {"model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 8,
        "layer_norm_eps": 1e-12}


def test_checkpoint_directory_without_head(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(TINY))
  encoder = pretrained.BertEncoder(pretrained.BertConfig(**{
      k: v for k, v in TINY.items() if k != "model_type"}))
  params = encoder.init(jax.random.key(0), np.ones((1, 4), np.int32))["params"]
  assert sorted(params) == ["layer_0", "norm_embed", "pooler", "position", "token_type",
                            "word"]
  weights = {"embeddings.word_embeddings.weight": np.asarray(params["word"]["embedding"]),
             "embeddings.position_embeddings.weight": np.asarray(
                 params["position"]["embedding"]),
             "embeddings.token_type_embeddings.weight": np.asarray(
                 params["token_type"]["embedding"]),
             "pooler.dense.weight": np.asarray(params["pooler"]["kernel"]).T,
             "pooler.dense.bias": np.asarray(params["pooler"]["bias"])}
  safetensors_numpy.save_file(weights, str(tmp_path / "model.safetensors"))
  (tmp_path / "tokenizer.json").write_text(json.dumps({
      "version": "1.0", "model": {"type": "WordLevel", "vocab": {"[PAD]": 0, "[SEP]": 5},
                                  "unk_token": "[PAD]"}}))
  descriptor, weights_fn, has_head = backbones.resolve(str(tmp_path))
  assert isinstance(descriptor, BertBackbone) and descriptor.sep_id == 5 and not has_head
  with pytest.raises(ValueError, match="neither a Hugging Face checkpoint directory"):
    backbones.resolve(str(tmp_path / "nothing"))
  del weights_fn


@pytest.fixture(scope="module")
def listops_backbone(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("listops_transformer"))
  config = favor_s_lra.get_config("model=transformer,smoke")
  config.data.data_dir = str(tmp_path_factory.getbasetemp() / "tfds")
  state = loop.train_and_evaluate(config, workdir)
  return workdir, config, state


def test_restored_transformer_backbone_reproduces_the_trained_model(listops_backbone):
  workdir, config, state = listops_backbone
  descriptor, weights_fn, has_head = backbones.resolve(workdir)
  assert isinstance(descriptor, TransformerBackbone) and has_head
  trainer = loop.Trainer(config, workdir)
  source = trainer.eval_sources["test"]
  ids = np.stack([source[i]["inputs"] for i in range(8)])
  first = jax.tree.map(lambda a: a[0], state)
  want = trainer.model.apply({"params": first.params, **first.model_state}, ids, train=False)
  w = weights_fn()
  mask = descriptor.mask(ids)
  x = descriptor.embed(w, ids)
  for i in range(descriptor.num_layers):
    x = descriptor.layer(w, i, x, mask)
  got = descriptor.head(w["head"], descriptor.pool(w, x, mask))
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_revmux_on_the_listops_backbone_trains_and_regroups(listops_backbone, tmp_path):
  backbone_dir = listops_backbone[0]
  config = revmux_listops.get_config(f"n=4,backbone={backbone_dir},smoke")
  assert config.data.data_dir == listops_backbone[1].data.data_dir
  workdir = str(tmp_path / "revmux")
  loop.train_and_evaluate(config, workdir)
  result = regroup.evaluate_workdir(workdir, num_shuffles=2)
  assert result["n"] == 4 and len(result["accuracy_per_shuffle"]) == 2
  assert 0 <= result["accuracy"] <= 1 and 0 <= result["single_accuracy"] <= 1
  source, _ = data_lib.load_split(config.data, "test")
  assert len(source) > 0
