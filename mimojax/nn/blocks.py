"""Transformer building blocks: embeddings, pre-LN encoder layers and the att.+MLP
MIMOFormer layer that keeps the residual stream in superposition (Sec. 4.2, Fig. 3).

Official code (IBM/multiple-input-multiple-output-nets): ``MIMOFormer/code/model.py``
(``Embeddings``, ``Transformer``, ``BLOCKFormer``) and
``MIMOFormer/code/attention_blockformer.py``."""

import flax.linen as nn
import jax.numpy as jnp

from mimojax.nn.attention import CONSTANTS
from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import MultiHeadAttention
from mimojax.nn.attention import check_group
from mimojax.nn.attention import dense
from mimojax.ops import binding
from mimojax.ops import channels

# PyTorch's LayerNorm epsilon (the official code runs torch defaults).
LAYER_NORM_EPS = 1e-5
# MLP activations: ReLU (official MIMOFormer code), tanh-approximated GELU (safari SimpleLM,
# HazyResearch/safari: src/models/sequence/simple_lm.py) or exact GELU (RoBERTa, DataMUX).
MLP_ACTIVATIONS = {"relu": nn.relu, "gelu": lambda x: nn.gelu(x, approximate=True),
                   "gelu_exact": lambda x: nn.gelu(x, approximate=False)}


def layer_norm(name: str | None = None) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, name=name)


class Embed(nn.Module):
  """Token embedding + learned position embedding, both N(0, 0.02), then dropout.

  As ``Embeddings`` in ``MIMOFormer/code/model.py`` of the official code.

  With ``cls_token`` a learned CLS embedding (N(0, 0.02)) is prepended, so the output is
  ``(B, L + 1, E)`` and position 0 is the CLS position. The position table has
  ``max_len`` rows; a longer sequence raises ``ValueError``.
  """

  vocab_size: int
  embed_dim: int
  max_len: int
  dropout: float = 0.0
  cls_token: bool = False

  @nn.compact
  def __call__(self, tokens, *, train: bool):
    init = nn.initializers.normal(stddev=0.02)
    x = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=init, name="token")(tokens)
    if self.cls_token:
      cls = self.param("cls", init, (self.embed_dim,))
      x = jnp.concatenate([jnp.broadcast_to(cls, x[:, :1].shape), x], axis=1)
    length = x.shape[1]
    if length > self.max_len:
      raise ValueError(
          f"sequence length {length} (incl. CLS) exceeds model.max_len = {self.max_len}")
    positions = self.param("position", init, (self.max_len, self.embed_dim))
    x = x + positions[:length]
    return nn.Dropout(self.dropout, deterministic=not train)(x)


class Mlp(nn.Module):
  """Dense(hidden) -> activation -> Dropout -> Dense(E) -> Dropout (official
  ``MIMOFormer/code/model.py``).

  ``activation`` is a key of ``MLP_ACTIVATIONS`` (checked by the model builder); ``init``
  and ``residual_scale`` as for ``nn.attention.dense`` (the output layer writes into the
  residual stream).
  """

  hidden_dim: int
  dropout: float = 0.0
  activation: str = "relu"
  init: str = "torch"
  residual_scale: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    embed_dim = x.shape[-1]
    h = dense(self.hidden_dim, embed_dim, self.init, name="hidden")(x)
    h = nn.Dropout(self.dropout, deterministic=not train)(MLP_ACTIVATIONS[self.activation](h))
    h = dense(embed_dim, self.hidden_dim, self.init, self.residual_scale, name="out")(h)
    return nn.Dropout(self.dropout, deterministic=not train)(h)


class EncoderBlock(nn.Module):
  """Pre-LN layer: X <- Dropout(Attn(LN X)) + X; X <- MLP(LN X) + X (official
  ``MIMOFormer/code/model.py``, ``Transformer.forward``).

  With favor_s attention this is the MIMOFormer "att." layer (Sec. 4.2): only the attention
  runs in superposition; W_o, residual and MLP act on each sequence separately.
  """

  spec: AttentionSpec
  mlp_dim: int
  dropout: float = 0.0
  activation: str = "relu"
  norm_eps: float = LAYER_NORM_EPS  # PostNormEncoderBlock (BERT checkpoints: 1e-12)

  def _mlp(self):
    return Mlp(self.mlp_dim, self.dropout, self.activation, self.spec.init,
               self.spec.residual_scale, name="mlp")

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool):
    attention = MultiHeadAttention(self.spec, out_dim=x.shape[-1], name="attention")
    h = attention(layer_norm("norm_attention")(x), mask, train=train)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(h)
    return x + self._mlp()(layer_norm("norm_mlp")(x), train=train)


class PostNormEncoderBlock(EncoderBlock):
  """Post-LN layer of BERT / RoBERTa (the DataMUX encoder, princeton-nlp/DataMUX:
  ``configs/roberta.json``; Hugging Face ``BertLayer``): X <- LN(X + Dropout(Attn X));
  X <- LN(X + MLP X), LayerNorm epsilon ``norm_eps``."""

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool):
    attention = MultiHeadAttention(self.spec, out_dim=x.shape[-1], name="attention")
    h = nn.Dropout(self.dropout, deterministic=not train)(attention(x, mask, train=train))
    x = nn.LayerNorm(epsilon=self.norm_eps, name="norm_attention")(x + h)
    return nn.LayerNorm(epsilon=self.norm_eps, name="norm_mlp")(x + self._mlp()(x, train=train))


def bundle_skip(x, keys):
  """Skip connection of the att.+MLP layer: ``S_n = sum_m X_{m,n} (.) e_{m,n}`` (Sec. 4.2;
  official ``BlockformerAttention.skipconnection``, ``MIMOFormer/code/attention_blockformer.py``).

  ``x`` (B, L, E) with B = G*M*N in grid order, ``keys`` (M, N, E) -> (G*N, L, E),
  row ``g*N + n``.
  """
  m, n = keys.shape[:2]
  grid = channels.to_grid(x, m, n)
  bundled = binding.superpose(binding.map_bind(grid, keys[:, :, None, :]), axis=1)
  return bundled.reshape((-1,) + bundled.shape[2:])


def retrieve(s, keys):
  """Unbinding after the MLP: ``X_{m,n} = S_n (.) e_{m,n}`` (official
  ``BlockformerAttention.retrieve``, ``MIMOFormer/code/attention_blockformer.py``).

  ``s`` (G*N, L, E), ``keys`` (M, N, E) -> (G*M*N, L, E) in grid order. Cross-talk from the
  other rows m' is not removed (the official code's behaviour, Sec. 4.2); with M = 1 bipolar
  keys make ``retrieve(bundle_skip(x, e), e) == x`` exactly.
  """
  m, n = keys.shape[:2]
  if s.shape[0] % n:
    raise ValueError(f"superposed batch {s.shape[0]} is not divisible by mimo.n = {n}")
  grid = s.reshape((s.shape[0] // n, 1, n) + s.shape[1:])
  return channels.from_grid(binding.map_unbind(grid, keys[:, :, None, :]))


class SuperposedEncoderBlock(EncoderBlock):
  """MIMOFormer "att.+MLP" layer (Sec. 4.2, Fig. 3, Eq. 68; official
  ``MIMOFormer/code/attention_blockformer.py`` and ``model.py``, ``BLOCKFormer``).

  1. X1 = Dropout(Attn(LN1 X)) + skip(X): attention returns the superposed, still bound
     output (B/M rows); skip bundles the inputs with the embedding keys e.
  2. X2 = MLP(LN2 X1) + X1 on the B/M superposed rows.
  3. retrieve: X_{m,n} = X2_n (.) e_{m,n} -> B rows.

  ``e`` ("constants"/"embedding_keys", (M, N, E), bipolar) is a second key set, separate
  from the attention's head-dim keys a. It has no sub-grid warm-up (as in the official
  code; the config boundary rejects one). Fields as :class:`EncoderBlock`.
  """

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool):
    spec = self.spec
    check_group(x.shape[0], spec.m, spec.n)
    embed_dim = x.shape[-1]
    keys = self.variable(
        CONSTANTS, "embedding_keys",
        lambda: binding.rademacher_keys(
            self.make_rng(CONSTANTS), (spec.m, spec.n, embed_dim))).value
    attention = MultiHeadAttention(
        spec, out_dim=embed_dim, superposed_output=True, name="attention")
    h = attention(layer_norm("norm_attention")(x), mask, train=train)
    s = bundle_skip(x, keys) + nn.Dropout(self.dropout, deterministic=not train)(h)
    s = s + self._mlp()(layer_norm("norm_mlp")(s), train=train)
    return retrieve(s, keys)
