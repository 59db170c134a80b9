"""DataMUX (Murahari et al., 2022): N inputs multiplexed into one row of a Transformer.

Each instance is embedded on its own, the N embeddings of a group are multiplexed
(``ops.multiplex``: Hadamard with Gaussian or binary vectors, Haar-orthogonal or LowRank
matrices), one encoder runs on the multiplexed rows with softmax attention, and a
demultiplexer recovers one representation per instance for the shared task head
(princeton-nlp/DataMUX: ``models/multiplexing.py``; DataMUX Sec. 3):

* "index" demux: each instance is prefixed with its row of an N x N block of index tokens
  and a shared summary token (``ops.index_prefix``); instance i's representation is
  ``z_i = LN(GELU(W [h_i ; h_N]))`` for sequence tasks and ``z_{i,t} = LN(GELU(W [h_i ; h_t]))``
  for token tasks.
* "mlp" demux: N independent heads ``LN_i(GELU(W_i Dropout(h)))`` on the first position
  (sequence tasks; a CLS token is prepended) or on every position (token tasks).

Heads: "classifier" (``z -> GELU(Dense) -> Dense(classes)``, official
``RobertaIndexDemultiplexerSequenceClassification``; MLP demux: ``Dense -> GELU -> LN ->
Dense``) and "lm" (causal layers, mux at the input and demux at the output, as MIMONets
App. F runs DataMUX around safari's SimpleLM; ``z_{i,t}`` -> vocabulary).

The retrieval task (Sec. 3.3) trains in the phases with ``retrieval_weight > 0``: for each
position t of each group an instance ``r_t`` is drawn uniformly and the token of instance
``r_t`` at t is predicted from ``[h_{r_t} ; h_t]`` (index) or by head ``r_t`` (mlp); the
weighted cross-entropy is sown into the "losses" collection as ``retrieval``.

Reserved token ids follow the task's vocabulary V: index tokens V .. V+N-1, the filler V+N,
the summary V+N+1 (index demux); the CLS token V (mlp demux).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimojax import ops
from mimojax.models.phase import Phase
from mimojax.nn.attention import CONSTANTS
from mimojax.nn.attention import LOSSES
from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import check_group
from mimojax.nn.attention import dense
from mimojax.nn.blocks import LAYER_NORM_EPS
from mimojax.nn.blocks import MLP_ACTIVATIONS
from mimojax.nn.blocks import Embed
from mimojax.nn.blocks import EncoderBlock
from mimojax.nn.blocks import PostNormEncoderBlock
from mimojax.nn.blocks import layer_norm

# mimo.mux values each DataMUX model accepts (Sec. 3.1, App. A.10-A.11).
MUXES = {
    "datamux": ("hadamard", "binary", "ortho", "low_rank"),
    "datamux_mlp": ("hadamard", "binary", "ortho", "low_rank"),
    "datamux_cnn": ("ortho", "low_rank", "kernel", "nonlinear"),
}
DEMUXES = ("index", "mlp")
MATRIX_MUXES = ("ortho", "low_rank")  # (N, D, D) matrices; the others: (N, D) vectors
NORM_POSITIONS = ("pre", "post")
_gelu = MLP_ACTIVATIONS["gelu_exact"]  # transformers' gelu, the official heads'


def prefix_length(demux: str, n: int) -> int:
  """Tokens the demultiplexer adds in front of each instance: N index tokens and the summary
  token (index), or one CLS token (mlp)."""
  return n + 1 if demux == "index" else 1


def mux_init(mux: str, n: int, dim: int, norm: float = 1.0, overlap: float = 0.0):
  """``init(rng) ->`` the mux's vectors (N, dim) or matrices (N, dim, dim)."""
  return {
      "hadamard": lambda rng: ops.gaussian_vectors(rng, n, dim, norm),
      "binary": lambda rng: ops.binary_vectors(n, dim, overlap),
      "ortho": lambda rng: ops.haar_orthogonal(rng, n, dim),
      "low_rank": lambda rng: ops.low_rank_matrices(rng, n, dim),
  }[mux]


def apply_mux(x, weights):
  """x (G, N, ..., D) -> (G, ..., D): Hadamard for vectors (N, D), matrices (N, D, D)."""
  return ops.hadamard_mux(x, weights) if weights.ndim == 2 else ops.matrix_mux(x, weights)


class Multiplexer(nn.Module):
  """Holds the mux weights (frozen "constants" by default, params with ``learn``) and
  applies them to (G, N, ..., D)."""
  mux: str
  norm: float = 1.0
  overlap: float = 0.0
  learn: bool = False

  @nn.compact
  def __call__(self, x):
    init = mux_init(self.mux, x.shape[1], x.shape[-1], self.norm, self.overlap)
    if self.learn:
      weights = self.param("weights", init)
    else:
      weights = self.variable(CONSTANTS, "weights", lambda: init(self.make_rng(CONSTANTS))).value
    return apply_mux(x, weights)


class InstanceHeads(nn.Module):
  """N independent ``LN_i(GELU(W_i Dropout(h)))`` heads (official ``RobertaMLPDemuxModule``):
  h (G, ..., E) -> (G, N, ..., E), or with ``choice`` (G, L) ints the head ``choice[g, t]``
  on ``h[g, t]`` -> (G, L, E)."""
  num: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, h, *, train: bool, choice=None):
    dim = h.shape[-1]
    bound = 1.0 / jnp.sqrt(dim)  # torch.nn.Linear's default init
    uniform = lambda rng, shape: jax.random.uniform(rng, shape, jnp.float32, -bound, bound)
    kernel = self.param("kernel", uniform, (self.num, dim, dim))
    bias = self.param("bias", uniform, (self.num, dim))
    scale = self.param("scale", nn.initializers.ones, (self.num, dim))
    offset = self.param("offset", nn.initializers.zeros, (self.num, dim))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    if choice is None:
      y = jnp.einsum("g...d,nde->gn...e", h, kernel)
      expand = lambda p: p.reshape((1, self.num) + (1,) * (h.ndim - 2) + (dim,))
    else:
      y = jnp.einsum("gtd,gtde->gte", h, kernel[choice])
      expand = lambda p: p[choice]
    y = _gelu(y + expand(bias))
    mean = jnp.mean(y, axis=-1, keepdims=True)
    var = jnp.var(y, axis=-1, keepdims=True)
    y = (y - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS)
    return y * expand(scale) + expand(offset)


class DataMux(nn.Module):
  """The DataMUX Transformer (module doc): ``__call__(inputs, *, train, valid=None)``, inputs
  (B, L) token ids with B = G*N (instance i of group g is row g*N + i) -> logits (B, classes)
  or (B, L, vocab) in input row order. ``valid`` (B,) bool, optional: an instance marked
  False (a filler of a partly filled group) is zeroed before the mux and left out of the
  padding mask, so the real instances' outputs do not depend on it."""

  spec: AttentionSpec
  vocab_size: int
  num_classes: int
  head: str
  n: int
  num_layers: int
  embed_dim: int
  mlp_dim: int
  max_len: int
  mux: str = "hadamard"
  demux: str = "index"
  mux_norm: float = 1.0
  mux_overlap: float = 0.0
  learn_mux: bool = False
  norm_position: str = "pre"
  mask_padding: bool = False
  dropout: float = 0.0
  embed_dropout: float = 0.0
  activation: str = "relu"
  tie_embeddings: bool = False
  retrieval: bool = False  # some phase trains the retrieval task: its head has parameters
  phase: Phase = Phase()

  def _with_prefix(self, ids):
    if self.demux == "index":
      return ops.index_prefix(ids, self.n, self.vocab_size)
    return jnp.concatenate([jnp.full_like(ids[:, :1], self.vocab_size), ids], axis=1)

  def _encode(self, ids, *, train: bool, valid=None):
    """(B, L') ids with the prefix -> (G, L', E) multiplexed and encoded rows."""
    post = self.norm_position == "post"
    x = Embed(self.vocab_size + self.n + 2, self.embed_dim, self.max_len,
              0.0 if post else self.embed_dropout, name="embed")(ids, train=train)
    if post:  # RoBERTa embeddings: LN then dropout
      x = nn.Dropout(self.embed_dropout, deterministic=not train)(layer_norm("norm_embed")(x))
    if valid is not None:
      x = x * valid.astype(x.dtype)[:, None, None]
      ids = ids * valid.astype(ids.dtype)[:, None]
    x = x.reshape((-1, self.n) + x.shape[1:])
    x = Multiplexer(self.mux, self.mux_norm, self.mux_overlap, self.learn_mux, name="mux")(x)
    mask = None
    if self.mask_padding:  # a position is real if it is real in any instance of the group
      mask = jnp.any((ids != 0).reshape((-1, self.n) + ids.shape[1:]), axis=1)
    block = PostNormEncoderBlock if post else EncoderBlock
    for i in range(self.num_layers):
      x = block(self.spec, self.mlp_dim, self.dropout, activation=self.activation,
                name=f"layer_{i}")(x, mask, train=train)
    return x if post else layer_norm("norm")(x)

  def _pair(self, features, name: str):
    """``LN(GELU(W [a ; b]))`` of the index demux and retrieval heads."""
    h = dense(self.embed_dim, features.shape[-1], self.spec.init, name=f"{name}_dense")(features)
    return layer_norm(f"{name}_norm")(_gelu(h))

  def _vocab(self, z, name: str):
    if self.tie_embeddings:
      table = self.variables["params"]["embed"]["token"]["embedding"][:self.vocab_size]
      return z @ table.T
    return dense(self.vocab_size, z.shape[-1], self.spec.init, name=name)(z)

  def _demux(self, h, start: int, *, train: bool):
    """(G, L', E) -> per-instance features: (G, N, E) (classifier) or (G, N, L, E) (lm)."""
    if self.demux == "index":
      index = h[:, :self.n]
      if self.head == "classifier":
        other = jnp.broadcast_to(h[:, self.n][:, None], index.shape)
      else:
        shape = (h.shape[0], self.n, h.shape[1] - start, h.shape[2])
        other = jnp.broadcast_to(h[:, None, start:], shape)
        index = jnp.broadcast_to(index[:, :, None], shape)
      return self._pair(jnp.concatenate([index, other], axis=-1), "demux")
    heads = InstanceHeads(self.n, self.dropout, name="demux")
    return heads(h[:, 0] if self.head == "classifier" else h[:, start:], train=train)

  def _retrieval(self, h, ids, start: int, *, train: bool):
    """The retrieval loss of a training step (module doc)."""
    groups, length = h.shape[0], ids.shape[1]
    choice = jax.random.randint(self.make_rng("dropout"), (groups, length), 0, self.n)
    targets = ops.retrieval_targets(ids.reshape(groups, self.n, length), choice)
    tokens = h[:, start:]
    if self.demux == "index":
      chosen = jnp.take_along_axis(h[:, :self.n], choice[..., None], axis=1)
      z = self._pair(jnp.concatenate([chosen, tokens], axis=-1), "retrieval")
    else:
      z = InstanceHeads(self.n, self.dropout, name="retrieval_heads")(
          tokens, train=train, choice=choice)
      z = layer_norm("retrieval_norm")(_gelu(
          dense(self.embed_dim, self.embed_dim, self.spec.init, name="retrieval_dense")(z)))
    logits = dense(self.vocab_size, self.embed_dim, self.spec.init, name="retrieval_out")(z)
    weights = targets != 0 if self.head == "classifier" else None  # 0 pads classifier inputs
    return ops.cross_entropy(logits, targets, weights)

  @nn.compact
  def __call__(self, inputs, *, train: bool, valid=None):
    if inputs.ndim != 2:
      raise ValueError(f"inputs must be (B, L) token ids, got shape {inputs.shape}")
    check_group(inputs.shape[0], 1, self.n)
    start = prefix_length(self.demux, self.n)
    h = self._encode(self._with_prefix(inputs), train=train, valid=valid)
    z = self._demux(h, start, train=train)
    if self.retrieval and (self.is_initializing() or train and self.phase.retrieval_weight > 0):
      loss = self._retrieval(h, inputs, start, train=train)
      if train:
        self.sow(LOSSES, "retrieval", self.phase.retrieval_weight * loss)
    if self.head == "lm":
      return self._vocab(z, "lm_head").reshape((-1,) + z.shape[2:-1] + (self.vocab_size,))
    if self.demux == "index":
      z = _gelu(dense(self.embed_dim, self.embed_dim, self.spec.init, name="classifier_hidden")(z))
    else:
      z = layer_norm("classifier_norm")(_gelu(
          dense(self.embed_dim, self.embed_dim, self.spec.init, name="classifier_hidden")(z)))
    logits = dense(self.num_classes, self.embed_dim, self.spec.init, name="classifier_out")(z)
    return logits.reshape(-1, self.num_classes)


def datamux(config, info) -> DataMux:
  """The :class:`DataMux` of a validated config (``mimojax.train.config.Config``) and the
  data's ``DataInfo``: ``mimo.n`` instances, ``mimo.mux`` / ``demux`` / ``mux_norm`` /
  ``mux_overlap`` / ``learn_mux``, the encoder sizes of ``model``, and its phase's retrieval
  weights (``train.phases``)."""
  model, mimo = config.model, config.mimo
  spec = AttentionSpec(
      num_heads=model.num_heads, head_dim=model.head_dim, attention="softmax",
      attention_dropout=model.attention_dropout,
      causal=model.head == "lm" and not model.bidirectional, init=model.init,
      residual_scale=1.0 / (2 * model.num_layers) ** 0.5)
  return DataMux(
      spec=spec,
      vocab_size=info.vocab_size,
      num_classes=info.vocab_size if model.head == "lm" else info.num_classes,
      head=model.head,
      n=mimo.n,
      num_layers=model.num_layers,
      embed_dim=model.embed_dim,
      mlp_dim=model.mlp_dim,
      max_len=model.max_len,
      mux=mimo.mux,
      demux=mimo.demux,
      mux_norm=mimo.mux_norm,
      mux_overlap=mimo.mux_overlap,
      learn_mux=mimo.learn_mux,
      norm_position=model.norm_position,
      mask_padding=model.mask_padding,
      dropout=model.dropout,
      embed_dropout=model.dropout if model.embed_dropout is None else model.embed_dropout,
      activation=model.activation or "relu",
      tie_embeddings=model.tie_embeddings,
      retrieval=mimo.retrieval_fraction > 0 or mimo.retrieval_weight > 0,
      phase=Phase(task_weight=mimo.task_weight, retrieval_weight=mimo.retrieval_weight))
