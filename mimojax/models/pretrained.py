"""Hugging Face BERT checkpoint directories -> a Flax BERT encoder built from ``nn`` blocks.

A checkpoint directory holds ``config.json`` (``BertConfig``), ``model.safetensors`` and
``tokenizer.json``. The weights are read with ``safetensors.numpy`` and the tokenizer with
``tokenizers``: no PyTorch and no ``transformers`` at run time. The encoder is Hugging Face's
``BertModel`` (``transformers/models/bert/modeling_bert.py``):

* embeddings: ``LN(word[ids] + position[0..L) + token_type[types])``, LayerNorm epsilon
  ``layer_norm_eps``;
* ``num_hidden_layers`` post-LN layers (``nn.blocks.PostNormEncoderBlock``): softmax attention
  with padded keys masked, exact (erf) GELU in the intermediate layer;
* pooler: ``tanh(W h_0 + b)`` on the first ([CLS]) position;
* a sequence-classification head ``classifier`` (Linear on the pooled output) when the
  checkpoint has one (``BertForSequenceClassification``: names prefixed ``bert.``).

Dropout is off (the encoder is run frozen, in evaluation mode). ``BertEncoder``'s methods
``embed``, ``layer`` and ``pool`` run the pieces separately, as RevMUX's pipeline needs.
"""

import dataclasses
import json
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import safetensors
import tokenizers
from safetensors import numpy as safetensors_numpy

from mimojax.nn.attention import AttentionSpec
from mimojax.nn.blocks import PostNormEncoderBlock

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The fields of a Hugging Face ``config.json`` the encoder reads."""
  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12


def is_checkpoint_dir(path: str) -> bool:
  """Whether ``path`` is a Hugging Face checkpoint directory (config.json and safetensors)."""
  return all(os.path.isfile(os.path.join(path, f)) for f in (CONFIG_FILE, WEIGHTS_FILE))


def read_config(path: str) -> BertConfig:
  """The :class:`BertConfig` of the checkpoint directory ``path``; one-line ValueErrors for
  what the encoder does not implement."""
  with open(os.path.join(path, CONFIG_FILE)) as f:
    raw = json.load(f)
  if raw.get("model_type", "bert") != "bert":
    raise ValueError(f"{path}: model_type {raw.get('model_type')!r}; allowed: 'bert'")
  if raw.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"{path}: hidden_act {raw['hidden_act']!r}; allowed: 'gelu'")
  if raw.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{path}: position_embedding_type {raw['position_embedding_type']!r}; "
                     "allowed: 'absolute'")
  fields = {f.name for f in dataclasses.fields(BertConfig)}
  return BertConfig(**{k: v for k, v in raw.items() if k in fields})


def load_tokenizer(path: str) -> tokenizers.Tokenizer:
  """The checkpoint's ``tokenizer.json`` (its own padding and truncation settings)."""
  return tokenizers.Tokenizer.from_file(os.path.join(path, TOKENIZER_FILE))


def _linear(weights, name):
  """A torch Linear (weight (out, in), bias) -> Flax Dense params (kernel (in, out))."""
  return {"kernel": weights[f"{name}.weight"].T, "bias": weights[f"{name}.bias"]}


def _norm(weights, name):
  """A torch LayerNorm (``weight``/``bias``, or TF-converted ``gamma``/``beta``)."""
  scale = weights.get(f"{name}.weight", weights.get(f"{name}.gamma"))
  bias = weights.get(f"{name}.bias", weights.get(f"{name}.beta"))
  return {"scale": scale, "bias": bias}


def convert(weights: dict, config: BertConfig) -> dict:
  """Hugging Face tensor names -> the params of :class:`BertEncoder` (numpy float32)."""
  weights = {k.removeprefix("bert."): np.asarray(v, np.float32) for k, v in weights.items()}
  params = {
      "word": {"embedding": weights["embeddings.word_embeddings.weight"]},
      "position": {"embedding": weights["embeddings.position_embeddings.weight"]},
      "token_type": {"embedding": weights["embeddings.token_type_embeddings.weight"]},
      "norm_embed": _norm(weights, "embeddings.LayerNorm"),
  }
  for i in range(config.num_hidden_layers):
    p = f"encoder.layer.{i}"
    params[f"layer_{i}"] = {
        "attention": {
            "query": _linear(weights, f"{p}.attention.self.query"),
            "key": _linear(weights, f"{p}.attention.self.key"),
            "value": _linear(weights, f"{p}.attention.self.value"),
            "out": _linear(weights, f"{p}.attention.output.dense"),
        },
        "norm_attention": _norm(weights, f"{p}.attention.output.LayerNorm"),
        "mlp": {"hidden": _linear(weights, f"{p}.intermediate.dense"),
                "out": _linear(weights, f"{p}.output.dense")},
        "norm_mlp": _norm(weights, f"{p}.output.LayerNorm"),
    }
  params["pooler"] = _linear(weights, "pooler.dense")
  return params


def classifier(weights: dict) -> dict | None:
  """The Dense params of a ``BertForSequenceClassification`` head, or None."""
  if "classifier.weight" not in weights:
    return None
  return {k: np.asarray(v, np.float32) for k, v in _linear(weights, "classifier").items()}


def has_classifier(path: str) -> bool:
  """Whether the checkpoint directory's weights include a sequence-classification head."""
  with safetensors.safe_open(os.path.join(path, WEIGHTS_FILE), framework="numpy") as f:
    return any(k.removeprefix("bert.") == "classifier.weight" for k in f.keys())


def load(path: str) -> tuple[BertConfig, dict, dict | None]:
  """(config, encoder params, classifier head params or None) of the checkpoint directory
  ``path`` (the head's Dense params act on the pooled output)."""
  if not is_checkpoint_dir(path):
    raise ValueError(f"{path!r} is not a Hugging Face checkpoint directory (needs "
                     f"{CONFIG_FILE} and {WEIGHTS_FILE})")
  config = read_config(path)
  weights = safetensors_numpy.load_file(os.path.join(path, WEIGHTS_FILE))
  return config, convert(weights, config), classifier(weights)


class BertEncoder(nn.Module):
  """Hugging Face ``BertModel`` (module doc). ``__call__(ids, token_types=None)`` ->
  (last hidden states (B, L, d), pooled (B, d)); padding is id 0."""

  config: BertConfig

  def setup(self):
    c = self.config
    self.word = nn.Embed(c.vocab_size, c.hidden_size)
    self.position = nn.Embed(c.max_position_embeddings, c.hidden_size)
    self.token_type = nn.Embed(c.type_vocab_size, c.hidden_size)
    self.norm_embed = nn.LayerNorm(epsilon=c.layer_norm_eps)
    spec = AttentionSpec(num_heads=c.num_attention_heads,
                         head_dim=c.hidden_size // c.num_attention_heads)
    self.layers = [PostNormEncoderBlock(spec, c.intermediate_size, activation="gelu_exact",
                                        norm_eps=c.layer_norm_eps, name=f"layer_{i}")
                   for i in range(c.num_hidden_layers)]
    self.pooler = nn.Dense(c.hidden_size)

  def embed(self, ids, token_types=None):
    """(B, L) ids -> (B, L, d) embeddings."""
    if ids.shape[1] > self.config.max_position_embeddings:
      raise ValueError(f"sequence length {ids.shape[1]} exceeds the checkpoint's "
                       f"max_position_embeddings = {self.config.max_position_embeddings}")
    types = jnp.zeros_like(ids) if token_types is None else token_types
    x = self.word(ids) + self.position(jnp.arange(ids.shape[1]))[None] + self.token_type(types)
    return self.norm_embed(x)

  def layer(self, i: int, x, mask):
    """Layer ``i`` on (B, L, d) with the (B, L) mask (True = real token)."""
    return self.layers[i](x, mask, train=False)

  def pool(self, x):
    """The pooler on the first position: (B, L, d) -> (B, d)."""
    return jnp.tanh(self.pooler(x[:, 0]))

  def __call__(self, ids, token_types=None):
    mask = ids != 0
    x = self.embed(ids, token_types)
    for i in range(self.config.num_hidden_layers):
      x = self.layer(i, x, mask)
    return x, self.pool(x)
