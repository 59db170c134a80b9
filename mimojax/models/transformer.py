"""Transformer / Performer / MIMOFormer networks for classification, retrieval and causal LM.

One module covers the paper's sequence models (Sec. 4, Sec. 5.2, App. F): the attention
type (softmax, FAVOR+, FAVOR+S) and the MIMOFormer variant ("att" or "att_mlp") are
settings; deep and wide models are ``num_layers`` / ``num_heads`` settings. Heads:

* "classifier" (LRA; official ``ModelForSC``): final LN, times the mask, MEAN pool over all
  L positions (pads counted in the divisor) or the CLS position, then
  Dense(classifier_dim) -> ReLU -> Dense(num_classes).
* "dual" (LRA Retrieval; official ``ModelForSCDual``): the same encoder on ``inputs`` and
  ``inputs2``; the classifier sees [x0, x1, x0*x1, x0-x1].
* "lm" (synthetic AR / induction head, Table 3): causal attention in every layer, final LN,
  Dense to the vocabulary -> (B, L, V), or with ``tie_embeddings`` the transposed token
  embedding without bias (safari SimpleLM, HazyResearch/safari:
  ``src/models/sequence/simple_lm.py``). No padding mask (token 0 is a real token there).

Official heads: IBM/multiple-input-multiple-output-nets: ``MIMOFormer/code/model_wrapper.py``.
"""

import dataclasses
import math

import flax.linen as nn
import jax.numpy as jnp

from mimojax.models.phase import Phase
from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import check_group
from mimojax.nn.attention import torch_linear
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
  with a CLS token L' = L + 1 and position 0 is CLS. ``valid`` (B,) bool, optional: a row
  marked False (a filler of a partly filled group) is all padding and its residual stream is
  zeroed at every layer's input, so that with FAVOR+S it adds nothing to any bundle.
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
  activation: str = "relu"

  @nn.compact
  def __call__(self, tokens, *, train: bool, valid=None):
    mask = tokens != 0 if self.use_mask else None
    x = Embed(self.vocab_size, self.embed_dim, self.max_len, self.embed_dropout,
              cls_token=self.cls_token, name="embed")(tokens, train=train)
    if self.cls_token and mask is not None:
      mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    if valid is not None:
      if mask is None:
        raise ValueError("valid needs a padding mask: model.head 'classifier' or 'dual'")
      mask = mask & valid[:, None]
    block = SuperposedEncoderBlock if self.variant == "att_mlp" else EncoderBlock
    for i in range(self.num_layers):
      if valid is not None:
        x = x * valid.astype(x.dtype)[:, None, None]
      x = block(self.spec, self.mlp_dim, self.dropout, activation=self.activation,
                name=f"layer_{i}")(x, mask, train=train)
    return layer_norm("norm")(x), mask


def pool(x, mask, pooling: str):
  """(B, L, E) -> (B, E). "mean": ``mean_L(x * mask)``, pads counted in the divisor
  (as IBM/multiple-input-multiple-output-nets: ``MIMOFormer/code/model_wrapper.py``);
  "cls": position 0."""
  if mask is not None:
    x = x * mask[..., None].astype(x.dtype)
  if pooling == "cls":
    return x[:, 0]
  return jnp.mean(x, axis=1)


class Transformer(nn.Module):
  """The network; ``__call__(inputs, *, train, inputs2=None, valid=None)`` -> logits.

  ``inputs`` int (B, L); B must be a multiple of the superposition group M*N (of the
  warm-up sub-grid in a ``phase.subgrid``); ``valid`` (B,) bool marks the real rows of
  partly filled groups (``Encoder``). ``phase`` (``models.Phase``) selects the App. F.1
  warm-up sub-grid and the exact kernel: ``model.clone(phase=p)`` runs the same parameters
  and constants as phase ``p`` does.
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
  activation: str = "relu"
  tie_embeddings: bool = False
  phase: Phase = Phase()

  @nn.nowrap
  def layer_spec(self) -> AttentionSpec:
    """The ``AttentionSpec`` every layer runs: ``spec`` with the sub-grid and the exact
    kernel of ``phase``."""
    return dataclasses.replace(self.spec, subgrid=self.phase.subgrid,
                               exact_kernel=self.phase.exact_kernel)

  def _check(self, inputs, inputs2, spec):
    if inputs.ndim != 2:
      raise ValueError(f"inputs must be (B, L) token ids, got shape {inputs.shape}")
    if (inputs2 is not None) != (self.head == "dual"):
      raise ValueError(
          f"inputs2 must be given exactly when model.head = 'dual' (head is {self.head!r})")
    if inputs2 is not None and inputs2.shape[0] != inputs.shape[0]:
      raise ValueError(f"inputs2 batch {inputs2.shape[0]} != inputs batch {inputs.shape[0]}")
    check_group(inputs.shape[0], *spec.grid)

  def _classify(self, features, *, name: str):
    h = nn.relu(torch_linear(self.classifier_dim, features.shape[-1], name=f"{name}_hidden")(
        features))
    return torch_linear(self.num_classes, self.classifier_dim, name=f"{name}_out")(h)

  @nn.compact
  def __call__(self, inputs, *, train: bool, inputs2=None, valid=None):
    spec = self.layer_spec()
    self._check(inputs, inputs2, spec)
    encoder = Encoder(
        spec, self.vocab_size, self.num_layers, self.embed_dim, self.mlp_dim,
        self.max_len, self.dropout, self.embed_dropout, variant=self.variant,
        cls_token=self.head != "lm" and self.pooling == "cls", use_mask=self.head != "lm",
        activation=self.activation, name="encoder")
    x, mask = encoder(inputs, train=train, valid=valid)
    if self.head == "lm" and self.tie_embeddings:
      return x @ self.variables["params"]["encoder"]["embed"]["token"]["embedding"].T
    if self.head == "lm":
      return torch_linear(self.num_classes, self.embed_dim, name="lm_head")(x)
    x0 = pool(x, mask, self.pooling)
    if self.head == "classifier":
      return self._classify(x0, name="classifier")
    x1 = pool(*encoder(inputs2, train=train, valid=valid), self.pooling)
    return self._classify(jnp.concatenate([x0, x1, x0 * x1, x0 - x1], axis=-1),
                          name="classifier")


def transformer(config, info) -> Transformer:
  """The :class:`Transformer` of a validated config (``mimojax.train.config.Config``) and the
  data's ``DataInfo``. ``mimo`` is read only with FAVOR+S; ``model.embed_dropout`` None is
  ``model.dropout`` (safari SimpleLM: embed 0.1, residual 0); ``model.activation`` None is
  ReLU; ``model.init``, ``model.activation`` and ``model.tie_embeddings`` select the official
  MIMOFormer layers (defaults) or safari's SimpleLM ones."""
  model, mimo = config.model, config.mimo
  favor_s = model.attention == "favor_s"
  m, n = (mimo.m, mimo.n) if favor_s else (1, 1)
  spec = AttentionSpec(
      num_heads=model.num_heads, head_dim=model.head_dim, attention=model.attention,
      kernel=model.kernel, num_features=model.num_features,
      exp_temperature=model.exp_temperature, redraw_features=model.redraw_features,
      dpfp_nu=model.dpfp_nu, attention_dropout=model.attention_dropout,
      causal=model.head == "lm", m=m, n=n, mass_balance=mimo.mass_balance if favor_s else 0.0,
      reference_padding=model.reference_padding, init=model.init,
      residual_scale=1.0 / math.sqrt(2 * model.num_layers))
  return Transformer(
      spec=spec,
      vocab_size=info.vocab_size,
      num_classes=info.vocab_size if model.head == "lm" else info.num_classes,
      head=model.head,
      num_layers=model.num_layers,
      embed_dim=model.embed_dim,
      mlp_dim=model.mlp_dim,
      max_len=model.max_len,
      pooling=model.pooling,
      dropout=model.dropout,
      embed_dropout=model.dropout if model.embed_dropout is None else model.embed_dropout,
      classifier_dim=model.classifier_dim if model.head != "lm" else 0,
      variant=mimo.variant if favor_s else "att",
      activation=model.activation or "relu",
      tie_embeddings=model.tie_embeddings)
