"""RevMUX (Xu et al., EMNLP 2024): N inputs multiplexed through a frozen backbone by trainable
adapters, with a reversible multiplexer and its exact inverse as the demultiplexer.

The pipeline for a batch of B = G*N inputs (instance i of group g is row ``g*N + i``;
xuyige/RevMUX: ``nn_modules_bert.py`` ``ReversibleBatchInference``,
``plm_models/bert/modeling_bert.py`` ``BertForSequenceClassification``):

1. prefilling: the backbone's embeddings and first ``prefill`` layers run on each input;
2. the mux (``variant``):
   * "revmux" and "ora": a shared down-projection Linear d -> d/N, then the reversible coupling
     ``ops.revmux_mux`` with N maps F_k = Linear(d/N -> d) ReLU Dropout Linear(d -> d/N)
     ReLU Dropout, concatenated into contiguous blocks of width d/N;
   * "adapters" (Vanilla Adapters): a shared Linear d -> d, the N instances concatenated, an
     MLP Nd -> 3d -> d (ReLU, Dropout after each Linear);
3. the remaining layers on the G multiplexed rows, attention mask = OR of the N masks;
4. the backbone's pooling of each row (BERT: the pooler on [CLS]);
5. the demux: "revmux": the exact inverse ``ops.revmux_demux`` with the same F_k, then a
   shared up-projection MLP d/N -> 3d -> 3d -> d; "ora" (Only Multiplexer Reversible) and
   "adapters": an MLP d -> 3d -> 3d -> Nd cut into N contiguous blocks of d (ReLU and Dropout
   after each hidden Linear, Dropout on the output);
6. the backbone's frozen head on each demultiplexed vector.

The demux acts on each position alone, so running it on the pooled vector only gives the
official code's outputs at the classification slot (which demuxes every position).

"single" is the backbone alone, one input per row (the single-input baseline). A backbone
without a task head (a pretrained encoder) gets a trainable linear head in "single"; a run of
it is then the frozen backbone a multiplexing run starts from (``model.backbone`` = its
workdir).

Training loss: cross-entropy plus ``info_nce_weight`` (lambda, official BERT default 0.25)
times ``ops.info_nce`` between the demultiplexed vectors and the single-input path's pooled
vectors computed from the same prefilled states without gradients (cosine / 0.05, negatives
the whole batch), sown into the "losses" collection as ``info_nce``.

The backbone is frozen: its weights are the "constants" variable ``backbone`` (initialised
from ``weights()``, checkpointed with the state, never differentiated nor in the optimiser
state); the backbone runs without dropout.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimojax import ops
from mimojax.models import pretrained
from mimojax.models.transformer import Transformer
from mimojax.models.transformer import pool as transformer_pool
from mimojax.models.phase import Phase
from mimojax.nn.attention import CONSTANTS
from mimojax.nn.attention import LOSSES
from mimojax.nn.attention import check_group
from mimojax.nn.attention import torch_linear
from mimojax.nn.blocks import Embed
from mimojax.nn.blocks import EncoderBlock
from mimojax.nn.blocks import layer_norm

VARIANTS = ("revmux", "adapters", "ora", "single")
BACKBONE = "backbone"  # the "constants" variable holding the frozen backbone's weights


@dataclasses.dataclass(frozen=True)
class BertBackbone:
  """A Hugging Face BERT encoder (``pretrained.BertEncoder``) as a frozen backbone. Weights
  ``{"encoder": params, "head": Dense params or None}``; token types are 1 after the first
  ``sep_id`` token, as the tokenizer sets them for a sentence pair."""
  config: pretrained.BertConfig
  sep_id: int

  @property
  def num_layers(self) -> int:
    return self.config.num_hidden_layers

  @property
  def width(self) -> int:
    return self.config.hidden_size

  def _apply(self, w, *args, method):
    return pretrained.BertEncoder(self.config).apply({"params": w["encoder"]}, *args,
                                                     method=method)

  def mask(self, ids):
    return ids != 0

  def embed(self, w, ids):
    types = (jnp.cumsum(ids == self.sep_id, axis=1) - (ids == self.sep_id)) > 0
    return self._apply(w, ids, (types & (ids != 0)).astype(jnp.int32), method="embed")

  def layer(self, w, i: int, x, mask):
    return self._apply(w, i, x, mask, method="layer")

  def pool(self, w, x, mask):
    del mask
    return self._apply(w, x, method="pool")

  def head(self, head, pooled):
    return pooled @ head["kernel"] + head["bias"]


@dataclasses.dataclass(frozen=True)
class TransformerBackbone:
  """A mimojax ``transformer`` classifier (pre-LN, softmax or FAVOR+ attention, "att"
  layers) as a frozen backbone. Weights ``{"encoder": params["encoder"], "constants":
  model_state["constants"]["encoder"] or {}, "head": {"hidden": ..., "out": ...}}`` (its
  ``classifier_hidden`` and ``classifier_out``)."""
  model: Transformer

  @property
  def num_layers(self) -> int:
    return self.model.num_layers

  @property
  def width(self) -> int:
    return self.model.embed_dim

  def _cls(self) -> bool:
    return self.model.pooling == "cls"

  def mask(self, ids):
    mask = ids != 0
    if self._cls():
      mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    return mask

  def embed(self, w, ids):
    m = self.model
    embed = Embed(m.vocab_size, m.embed_dim, m.max_len, cls_token=self._cls())
    return embed.apply({"params": w["encoder"]["embed"]}, ids, train=False)

  def layer(self, w, i: int, x, mask):
    m = self.model
    block = EncoderBlock(m.spec, m.mlp_dim, activation=m.activation)
    variables = {"params": w["encoder"][f"layer_{i}"]}
    if f"layer_{i}" in w["constants"]:
      variables[CONSTANTS] = w["constants"][f"layer_{i}"]
    return block.apply(variables, x, mask, train=False)

  def pool(self, w, x, mask):
    x = layer_norm().apply({"params": w["encoder"]["norm"]}, x)
    return transformer_pool(x, mask, self.model.pooling)

  def head(self, head, pooled):
    h = nn.relu(pooled @ head["hidden"]["kernel"] + head["hidden"]["bias"])
    return h @ head["out"]["kernel"] + head["out"]["bias"]


class Mlp(nn.Module):
  """Linear layers of the given widths, ReLU and Dropout after each hidden one; with
  ``final_dropout`` Dropout on the output (the official adapters' ``nn.Sequential``s)."""
  features: tuple[int, ...]
  dropout: float = 0.1
  final_relu: bool = False
  final_dropout: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    drop = nn.Dropout(self.dropout, deterministic=not train)
    for i, width in enumerate(self.features):
      x = torch_linear(width, x.shape[-1], name=f"dense_{i}")(x)
      last = i == len(self.features) - 1
      if not last or self.final_relu:
        x = nn.relu(x)
      if not last or self.final_dropout:
        x = drop(x)
    return x


class RevMux(nn.Module):
  """The pipeline of the module doc: ``__call__(inputs, *, train)``, inputs (B, L) token ids
  with B = G*N -> logits (B, classes) in input row order. ``weights()`` gives the backbone's
  frozen weights (the ``backbone`` constant at init); ``train_head``: the backbone has no
  head, "single" trains one (``num_classes`` outputs)."""

  backbone: Any  # BertBackbone | TransformerBackbone
  weights: Callable[[], Any]
  num_classes: int
  n: int = 2
  variant: str = "revmux"
  prefill: int = 0
  dropout: float = 0.1
  info_nce_weight: float = 0.25
  info_nce_temperature: float = 0.05
  train_head: bool = False
  phase: Phase = Phase()

  def _head(self, w):
    if self.train_head:
      return {"kernel": self.param("head_kernel", nn.initializers.lecun_normal(),
                                   (self.backbone.width, self.num_classes)),
              "bias": self.param("head_bias", nn.initializers.zeros, (self.num_classes,))}
    return w["head"]

  def _layers(self, w, x, mask, start: int):
    for i in range(start, self.backbone.num_layers):
      x = self.backbone.layer(w, i, x, mask)
    return x

  def _coupling(self):
    """The N maps F_k of the reversible coupling (shared by mux and demux)."""
    d = self.backbone.width
    return [Mlp((d, d // self.n), self.dropout, final_relu=True, final_dropout=True,
                name=f"f_{k}") for k in range(self.n)]

  def _mux(self, x, fns, train: bool):
    """(B, L, d) prefilled states -> (G, L, d) multiplexed rows; ``fns`` the F_k."""
    d, n = self.backbone.width, self.n
    if self.variant == "adapters":
      h = torch_linear(d, d, name="mapping")(x)
      h = h.reshape((-1, n) + h.shape[1:])
      h = jnp.concatenate([h[:, k] for k in range(n)], axis=-1)
      return Mlp((3 * d, d), self.dropout, final_relu=True, final_dropout=True,
                 name="adapter")(h, train=train)
    h = torch_linear(d // n, d, name="down")(x)
    return ops.revmux_mux(h.reshape((-1, n) + h.shape[1:]), fns)

  def _demux(self, pooled, fns, train: bool):
    """(G, d) pooled rows -> (G*N, d) one vector per instance."""
    d, n = self.backbone.width, self.n
    if self.variant == "revmux":
      blocks = ops.revmux_demux(pooled, fns)
      z = Mlp((3 * d, 3 * d, d), self.dropout, final_dropout=True, name="up")(blocks,
                                                                               train=train)
    else:
      z = Mlp((3 * d, 3 * d, n * d), self.dropout, final_dropout=True, name="demux")(
          pooled, train=train).reshape(pooled.shape[0], n, d)
    return z.reshape(-1, d)

  @nn.compact
  def __call__(self, inputs, *, train: bool, single: bool = False):
    """``single``: the frozen backbone alone, one input per row (the single-input accuracy
    of a multiplexing run)."""
    if inputs.ndim != 2:
      raise ValueError(f"inputs must be (B, L) token ids, got shape {inputs.shape}")
    check_group(inputs.shape[0], 1, self.n)
    bb = self.backbone
    w = self.variable(CONSTANTS, BACKBONE, self.weights).value
    head = self._head(w)
    mask = bb.mask(inputs)
    x = bb.embed(w, inputs)
    for i in range(self.prefill):
      x = bb.layer(w, i, x, mask)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    if self.variant == "single" or single:
      return bb.head(head, drop(bb.pool(w, self._layers(w, x, mask, self.prefill), mask)))
    fns = None
    if self.variant != "adapters":
      fns = [lambda y, f=f: f(y, train=train) for f in self._coupling()]
    mixed_mask = jnp.any(mask.reshape((-1, self.n) + mask.shape[1:]), axis=1)
    h = self._layers(w, self._mux(x, fns, train), mixed_mask, self.prefill)
    z = self._demux(bb.pool(w, h, mixed_mask), fns, train)
    if train and self.info_nce_weight > 0:
      teacher = jax.lax.stop_gradient(bb.pool(w, self._layers(w, x, mask, self.prefill), mask))
      self.sow(LOSSES, "info_nce", self.info_nce_weight * ops.info_nce(
          z, teacher, self.info_nce_temperature))
    return bb.head(head, drop(z))


def revmux(config, info, backbone=None) -> RevMux:
  """The :class:`RevMux` of a validated config (``mimojax.train.config.Config``), the data's
  ``DataInfo`` and ``backbone`` = (descriptor, weights function, has a head), which
  ``mimojax.train.backbones`` resolves from ``model.backbone`` (a Hugging Face checkpoint
  directory or a mimojax workdir). ``mimo.n`` instances, ``model.revmux_variant``,
  ``model.prefill_layers`` (None: half the backbone's layers), ``model.dropout``,
  ``model.info_nce_weight`` and ``model.info_nce_temperature``."""
  model = config.model
  if backbone is None:
    raise ValueError("model.name='revmux' needs its backbone resolved from model.backbone "
                     "(mimojax.train.backbones.build_model)")
  descriptor, weights, has_head = backbone
  layers = descriptor.num_layers
  prefill = layers // 2 if model.prefill_layers is None else model.prefill_layers
  if not 0 <= prefill <= layers:
    raise ValueError(f"model.prefill_layers={prefill} is out of range; allowed: [0, {layers}] "
                     "(the backbone's layers)")
  n = config.mimo.n
  if descriptor.width % n:
    raise ValueError(f"mimo.n={n} must divide the backbone's width {descriptor.width}")
  if not has_head and model.revmux_variant != "single":
    raise ValueError(f"model.backbone={model.backbone!r} has no task head: train one with "
                     "model.revmux_variant='single' and pass that run's workdir as "
                     "model.backbone")
  return RevMux(
      backbone=descriptor, weights=weights, num_classes=info.num_classes, n=n,
      variant=model.revmux_variant, prefill=prefill, dropout=model.dropout,
      info_nce_weight=model.info_nce_weight, info_nce_temperature=model.info_nce_temperature,
      train_head=not has_head)
