"""Transformer / Performer / MIMOFormer networks for classification, retrieval and causal LM.

One module covers the paper's sequence models (Sec. 4, Sec. 5.2, App. F): the attention
type (softmax, FAVOR+, FAVOR+S) and the MIMOFormer variant ("att" or "att_mlp") are
settings; deep and wide models are ``num_layers`` / ``num_heads`` settings. Heads:

* "classifier" (LRA, ref 2.1): final LN, times the mask, MEAN pool over all L positions
  (pads counted in the divisor) or the CLS position, then Dense(classifier_dim) -> ReLU ->
  Dense(num_classes).
* "dual" (LRA Retrieval, ref 2.1): the same encoder on ``inputs`` and ``inputs2``; the
  classifier sees [x0, x1, x0*x1, x0-x1].
* "lm" (synthetic AR / induction head, Table 3): causal attention in every layer, final LN,
  Dense to the vocabulary -> (B, L, V), or with ``tie_embeddings`` the transposed token
  embedding without bias (safari SimpleLM). No padding mask (token 0 is a real token there).
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from mimojax.nn.attention import ATTENTIONS
from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import check_group
from mimojax.nn.attention import grid_size
from mimojax.nn.attention import torch_linear
from mimojax.nn.blocks import MLP_ACTIVATIONS
from mimojax.nn.blocks import Embed
from mimojax.nn.blocks import EncoderBlock
from mimojax.nn.blocks import SuperposedEncoderBlock
from mimojax.nn.blocks import layer_norm

HEADS = ("classifier", "dual", "lm")
POOLINGS = ("mean", "cls")
VARIANTS = ("att", "att_mlp")
# Which DataInfo.task_type each head consumes.
HEAD_TASKS = {"classifier": "classification", "dual": "dual", "lm": "lm"}


class Encoder(nn.Module):
  """Embeddings, ``num_layers`` pre-LN layers and the final LN: tokens (B, L) -> (B, L', E).

  Returns ``(x, mask)``; ``mask`` is (B, L') with True = real token (None for the LM);
  with a CLS token L' = L + 1 and position 0 is CLS.
  """

  spec: AttentionSpec
  vocab_size: int
  num_layers: int
  embed_dim: int
  mlp_dim: int
  max_len: int
  dropout: float
  embed_dropout: float
  variant: str = "att"
  cls_token: bool = False
  use_mask: bool = True
  curriculum: bool = False
  activation: str = "relu"

  @nn.compact
  def __call__(self, tokens, *, train: bool):
    mask = tokens != 0 if self.use_mask else None
    x = Embed(self.vocab_size, self.embed_dim, self.max_len, self.embed_dropout,
              cls_token=self.cls_token, name="embed")(tokens, train=train)
    if self.cls_token and mask is not None:
      mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    block = SuperposedEncoderBlock if self.variant == "att_mlp" else EncoderBlock
    for i in range(self.num_layers):
      x = block(self.spec, self.mlp_dim, self.dropout, curriculum=self.curriculum,
                activation=self.activation, name=f"layer_{i}")(x, mask, train=train)
    return layer_norm("norm")(x), mask


def pool(x, mask, pooling: str):
  """(B, L, E) -> (B, E). "mean": ``mean_L(x * mask)``, pads counted in the divisor
  (reference 2.1 / divergence 10); "cls": position 0."""
  if mask is not None:
    x = x * mask[..., None].astype(x.dtype)
  if pooling == "cls":
    return x[:, 0]
  return jnp.mean(x, axis=1)


class Transformer(nn.Module):
  """The network; ``__call__(inputs, *, train, inputs2=None)`` -> logits.

  ``inputs`` int (B, L); B must be a multiple of the superposition group M*N (of the
  warm-up sub-grid when ``curriculum``). ``curriculum=True`` is the App. F.1 warm-up model:
  same parameters and constants, FAVOR+S on the [:M/2, :N/2] sub-grid; the train loop gets
  it with ``model.clone(curriculum=True)``.
  """

  spec: AttentionSpec
  vocab_size: int
  num_classes: int
  head: str
  num_layers: int
  embed_dim: int
  mlp_dim: int
  max_len: int
  pooling: str = "mean"
  dropout: float = 0.0
  embed_dropout: float = 0.0
  classifier_dim: int = 0
  variant: str = "att"
  curriculum: bool = False
  activation: str = "relu"
  tie_embeddings: bool = False

  def _check(self, inputs, inputs2):
    if self.head not in HEADS:
      raise ValueError(f"model.head must be one of {HEADS}, got {self.head!r}")
    if self.pooling not in POOLINGS:
      raise ValueError(f"model.pooling must be one of {POOLINGS}, got {self.pooling!r}")
    if self.variant not in VARIANTS:
      raise ValueError(f"mimo.variant must be one of {VARIANTS}, got {self.variant!r}")
    if self.spec.causal != (self.head == "lm"):
      raise ValueError(
          f"spec.causal must be {self.head == 'lm'} for model.head = {self.head!r}")
    if inputs.ndim != 2:
      raise ValueError(f"inputs must be (B, L) token ids, got shape {inputs.shape}")
    if (inputs2 is not None) != (self.head == "dual"):
      raise ValueError(
          f"inputs2 must be given exactly when model.head = 'dual' (head is {self.head!r})")
    if inputs2 is not None and inputs2.shape[0] != inputs.shape[0]:
      raise ValueError(f"inputs2 batch {inputs2.shape[0]} != inputs batch {inputs.shape[0]}")
    check_group(inputs.shape[0], *grid_size(self.spec.m, self.spec.n, self.curriculum))

  def _classify(self, features, *, name: str):
    h = nn.relu(torch_linear(self.classifier_dim, features.shape[-1], name=f"{name}_hidden")(
        features))
    return torch_linear(self.num_classes, self.classifier_dim, name=f"{name}_out")(h)

  @nn.compact
  def __call__(self, inputs, *, train: bool, inputs2=None):
    self._check(inputs, inputs2)
    encoder = Encoder(
        self.spec, self.vocab_size, self.num_layers, self.embed_dim, self.mlp_dim,
        self.max_len, self.dropout, self.embed_dropout, variant=self.variant,
        cls_token=self.head != "lm" and self.pooling == "cls", use_mask=self.head != "lm",
        curriculum=self.curriculum, activation=self.activation, name="encoder")
    x, mask = encoder(inputs, train=train)
    if self.head == "lm" and self.tie_embeddings:
      return x @ self.variables["params"]["encoder"]["embed"]["token"]["embedding"].T
    if self.head == "lm":
      return torch_linear(self.num_classes, self.embed_dim, name="lm_head")(x)
    x0 = pool(x, mask, self.pooling)
    if self.head == "classifier":
      return self._classify(x0, name="classifier")
    x1 = pool(*encoder(inputs2, train=train), self.pooling)
    return self._classify(jnp.concatenate([x0, x1, x0 * x1, x0 - x1], axis=-1),
                          name="classifier")


def _choice(field: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{field} must be one of {allowed}, got {value!r}")


def _rate(field: str, value) -> float:
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f"{field} must be a float in [0, 1), got {value!r}")
  return float(value)


def _positive(field: str, value) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{field} must be a positive int, got {value!r}")
  return value


def transformer(config, info) -> Transformer:
  """Builds the :class:`Transformer` from ``config.model`` / ``config.mimo`` and DataInfo.

  ``config.mimo`` is read only when ``model.attention == "favor_s"``. Optional fields:
  ``model.embed_dropout`` (default ``model.dropout``) sets the embedding dropout separately
  (safari SimpleLM: embed 0.1, residual 0); ``model.reference_padding`` (default False)
  selects the official code's eps-per-pad FAVOR normaliser (see ``AttentionSpec``);
  ``model.init`` ("torch" | "gpt2"), ``model.activation`` (MLP: "relu" | "gelu", default
  relu) and ``model.tie_embeddings`` (LM head = token embedding; "lm" head only) select the
  official MIMOFormer layers (defaults) or safari's SimpleLM ones.
  """
  model, mimo = config.model, config.mimo
  _choice("model.head", model.head, HEADS)
  expected = HEAD_TASKS[model.head]
  if info.task_type != expected:
    raise ValueError(
        f"model.head = {model.head!r} needs a {expected!r} task, data gives {info.task_type!r}")
  _choice("model.attention", model.attention, ATTENTIONS)
  favor_s = model.attention == "favor_s"
  m, n, variant = 1, 1, "att"
  mass_balance = mimo.get("mass_balance", 0.0)  # absent from configs of older runs
  if favor_s:
    _choice("mimo.variant", mimo.variant, VARIANTS)
    m, n, variant = _positive("mimo.m", mimo.m), _positive("mimo.n", mimo.n), mimo.variant
    if mimo.curriculum_fraction > 0 and variant == "att_mlp":  # its range: train.loop.validate
      raise ValueError(
          "mimo.curriculum_fraction > 0 needs mimo.variant = 'att' (att_mlp has no curriculum)")
    if mass_balance and variant == "att_mlp":
      raise ValueError(
          "mimo.mass_balance > 0 needs mimo.variant = 'att' (att_mlp has one summed normaliser)")
  pooling = model.pooling
  if model.head != "lm":
    _choice("model.pooling", pooling, POOLINGS)
  dropout = _rate("model.dropout", model.dropout)
  activation = model.get("activation") or "relu"
  _choice("model.activation", activation, tuple(MLP_ACTIVATIONS))
  tie_embeddings = model.get("tie_embeddings", False)
  if tie_embeddings not in (True, False) or (tie_embeddings and model.head != "lm"):
    raise ValueError(
        f"model.tie_embeddings must be False, or True with model.head = 'lm'; got "
        f"{tie_embeddings!r} with model.head = {model.head!r}")
  num_layers = _positive("model.num_layers", model.num_layers)
  spec = AttentionSpec(
      num_heads=model.num_heads, head_dim=model.head_dim, attention=model.attention,
      kernel=model.kernel, num_features=model.num_features,
      exp_temperature=model.get("exp_temperature", 1.0),
      redraw_features=bool(model.redraw_features), dpfp_nu=model.dpfp_nu,
      attention_dropout=_rate("model.attention_dropout", model.attention_dropout),
      causal=model.head == "lm", m=m, n=n, mass_balance=mass_balance,
      reference_padding=bool(model.reference_padding), init=model.get("init", "torch"),
      residual_scale=1.0 / math.sqrt(2 * num_layers))
  needed = info.seq_len + (model.head != "lm" and pooling == "cls")
  if _positive("model.max_len", model.max_len) < needed:
    raise ValueError(
        f"model.max_len = {model.max_len} must be >= {needed} (data seq_len {info.seq_len}"
        f"{' + CLS' if needed > info.seq_len else ''})")
  num_classes = info.vocab_size if model.head == "lm" else info.num_classes
  return Transformer(
      spec=spec,
      vocab_size=_positive("data vocab_size", info.vocab_size),
      num_classes=_positive("data num_classes", num_classes),
      head=model.head,
      num_layers=num_layers,
      embed_dim=_positive("model.embed_dim", model.embed_dim),
      mlp_dim=_positive("model.mlp_dim", model.mlp_dim),
      max_len=model.max_len,
      pooling=pooling,
      dropout=dropout,
      embed_dropout=_rate("model.embed_dropout",
                          dropout if model.embed_dropout is None else model.embed_dropout),
      classifier_dim=(_positive("model.classifier_dim", model.classifier_dim)
                      if model.head != "lm" else 0),
      variant=variant,
      activation=activation,
      tie_embeddings=tie_embeddings)

