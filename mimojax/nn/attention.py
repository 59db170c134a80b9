"""Multi-head attention: softmax, FAVOR+ (Performer) and FAVOR+S (MIMOFormer, Sec. 4).

The module holds the trainable projections W_q, W_k, W_v, W_o and the frozen constants
(FAVOR random projection P, bipolar binding keys a) and calls ``mimojax.ops`` for the
attention maths. Queries, keys and values are ``(B, L, H, D)``; masks ``(B, L)`` booleans,
True = real token. For FAVOR+S a batch is viewed as ``(B/(M*N), M, N, ...)`` grids, example
``(g*M + m)*N + n`` in group ``g`` and channel ``(m, n)`` (``ops.to_grid``).

Official-code paths below are relative to ``MIMOFormer/code`` of
IBM/multiple-input-multiple-output-nets.
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimojax.ops import attention as attention_ops
from mimojax.ops import binding
from mimojax.ops import channels

ATTENTIONS = ("softmax", "favor", "favor_s")
KERNELS = ("relu", "exp", "dpfp")
# Dense-layer initialisations: "torch" (nn.Linear default; the official MIMOFormer code) and
# "gpt2" (safari SimpleLM `_init_weights`: N(0, 0.02) kernels, zero biases;
# HazyResearch/safari: src/models/sequence/simple_lm.py).
INITS = ("torch", "gpt2")
GPT2_STD = 0.02

# Variable collection of the frozen constants (FAVOR projections, bipolar keys).
CONSTANTS = "constants"
LOSSES = "losses"  # weighted loss terms sown in training; the train step adds them


def torch_linear(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
  """``nn.Dense`` initialised like PyTorch's ``nn.Linear`` default (as every Linear of the
  official ``model.py`` and ``attention.py``).

  Kernel and bias are both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with
  a = sqrt(5) is exactly that bound for the kernel).
  """
  bound = 1.0 / math.sqrt(fan_in)

  def bias_init(rng, shape, dtype=jnp.float32):
    return jax.random.uniform(rng, shape, dtype, -bound, bound)

  kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
  return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name)


def dense(features: int, fan_in: int, init: str = "torch", residual_scale: float = 1.0,
          name: str | None = None) -> nn.Dense:
  """``nn.Dense`` with the ``init`` scheme (``INITS``, validated by ``AttentionSpec``).

  "torch": :func:`torch_linear`. "gpt2": kernel N(0, (0.02 * residual_scale)^2), zero bias;
  safari passes ``residual_scale = 1/sqrt(2 * num_layers)`` for the layers that write into
  the residual stream (attention output, MLP output), GPT-2's scaled initialisation.
  """
  if init == "torch":
    return torch_linear(features, fan_in, name=name)
  return nn.Dense(features, kernel_init=nn.initializers.normal(GPT2_STD * residual_scale),
                  bias_init=nn.initializers.zeros, name=name)


def grid_size(m: int, n: int, subgrid: bool) -> tuple[int, int]:
  """The grid in use: ``(M, N)``, or the ``(M/2, N/2)`` warm-up sub-grid (App. F.1).

  The official code (``Model.start_MIMO_warmup``, ``model.py``) halves both axes with integer
  division; an axis of size 1 stays 1 (the official code divides by zero there, a case none
  of its configs reaches).
  """
  if subgrid:
    return max(1, m // 2), max(1, n // 2)
  return m, n


def qk_scale(kernel: str, head_dim: int, m: int = 1, n: int = 1,
             exp_temperature: float = 1.0) -> float:
  """Factor on q and k before the feature map. ReLU and DPFP follow the official code
  (``attention_performer.py``, ``attention_mimoformer.py``): (sqrt(D) M N)^(-1/2) on an
  M x N grid, i.e. D^(-1/4) for FAVOR+ (the ReLU kernel applies another). The exp kernel gets
  sqrt(exp_temperature): its own D^(-1/4) then gives the softmax kernel
  exp(t q . k / sqrt(D)), the paper's (Eq. 12; Eq. 20 for the bundles) at t = 1."""
  if kernel == "exp":
    return math.sqrt(exp_temperature)
  return (math.sqrt(head_dim) * m * n) ** -0.5


def feature_map(kernel: str, projection=None, dpfp_nu: int = 1):
  """The feature map phi named by ``kernel`` (``KERNELS``): "relu" random features (as the
  official ``attention_performer.py``) or "exp" positive softmax features, both with the
  (R, D) ``projection``, or "dpfp" (no projection)."""
  if kernel == "dpfp":
    return functools.partial(attention_ops.dpfp_kernel, nu=dpfp_nu)
  fn = attention_ops.relu_kernel if kernel == "relu" else attention_ops.exp_kernel
  return functools.partial(fn, projection=projection)


def check_group(batch: int, m: int, n: int) -> None:
  """Raises ``ValueError`` unless the batch splits into whole M x N superposition groups."""
  if batch % (m * n):
    raise ValueError(
        f"batch size {batch} is not divisible by the superposition group size "
        f"mimo.m * mimo.n = {m} * {n} = {m * n}")


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """Static settings of one attention layer (config.model.* and config.mimo.m/n), validated
  at the config boundary (``mimojax.train.config``).

  attention: "softmax" | "favor" (FAVOR+, Eq. 10) | "favor_s" (FAVOR+S grid, Eq. 19).
  kernel: feature map of favor/favor_s: "relu" (official code), "exp" (positive softmax
    features) or "dpfp" (DPFP, no random projection).
  num_features: R, rows of the random projection (relu/exp).
  exp_temperature: t of the exp kernel's softmax kernel exp(t q . k / sqrt(D)); 1 is the
    paper's (Eq. 12). Not in the paper; favor/favor_s with the exp kernel only.
  redraw_features: draw a fresh projection from the "features" rng at every training call
    instead of using the frozen one (eval always uses the frozen one).
  attention_dropout: dropout on the softmax attention weights (softmax only, as in the
    official code).
  exact_kernel: favor_s with the exp kernel only: the exact kernel exp(t q~ . k~ / sqrt(D))
    that the positive features estimate, quadratic in L (``ops.favor_s_exact_attention``).
    Not in the paper; a training phase (``mimo.exact_kernel_fraction``).
  m, n: the FAVOR+S grid (favor_s only).
  subgrid: run FAVOR+S on the [:M/2, :N/2] sub-grid of the same keys (App. F.1 warm-up, a
    training phase).
  mass_balance: weight of ``ops.bundle_mass_spread`` of this layer's normalisers, sown into
    the "losses" collection during training (att. variant of favor_s only; 0: off). Not in
    the paper.
  init: initialisation of W_q, W_k, W_v, W_o (``INITS``); ``residual_scale`` also scales
    W_o under "gpt2" (see :func:`dense`).
  reference_padding: favor/favor_s only. False (default): padded keys contribute nothing
    (``ops`` mask semantics; extra padding leaves real outputs unchanged). True: the
    official code's behaviour (``attention_performer.py``): k and v are multiplied by the
    mask and no mask is passed on, so every pad adds phi(0) (= eps for the ReLU kernel) to
    the normaliser.
  """

  num_heads: int
  head_dim: int
  attention: str = "softmax"
  kernel: str = "relu"
  num_features: int = 256
  exp_temperature: float = 1.0
  redraw_features: bool = False
  dpfp_nu: int = 1
  attention_dropout: float = 0.0
  causal: bool = False
  exact_kernel: bool = False
  m: int = 1
  n: int = 1
  subgrid: bool = False
  mass_balance: float = 0.0
  reference_padding: bool = False
  init: str = "torch"
  residual_scale: float = 1.0

  @property
  def grid(self) -> tuple[int, int]:
    """The grid in use: (M, N), or the (M/2, N/2) warm-up sub-grid with ``subgrid``."""
    return grid_size(self.m, self.n, self.subgrid)


def softmax_weights_dropout(weights, rate: float, rng):
  """Inverted dropout on attention weights ``(..., H, Lq, Lk)``."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, weights.shape)
  return jnp.where(keep, weights / (1.0 - rate), 0.0)


def _favor_s_setup(spec: AttentionSpec, projection, binding_keys, feature_op, exact_op):
  """``(op, keys, scale, grid)`` of a FAVOR+S layer on ``spec.grid``: ``exact_op`` with the
  exact kernel, else ``feature_op`` with the layer's feature map; the keys cut to the grid;
  the q, k scale (``qk_scale``); and ``grid(x)``, (B, ...) -> (B/(MN), M, N, ...)."""
  m, n = spec.grid
  if spec.exact_kernel:
    op = exact_op
  else:
    op = functools.partial(feature_op,
                           kernel_fn=feature_map(spec.kernel, projection, spec.dpfp_nu))
  scale = qk_scale(spec.kernel, spec.head_dim, m, n, spec.exp_temperature)
  grid = lambda x: None if x is None else channels.to_grid(x, m, n)
  return op, binding_keys[:m, :n], scale, grid


def attention_op(spec: AttentionSpec, projection=None, binding_keys=None,
                 superposed_output: bool = False, dropout_fn=None):
  """``attend(q, k, v, mask=None)`` of a layer with ``spec`` for its projected q, k, v
  ``(B, L, H, D)``: the attention the module computes, with its scaling (``qk_scale``) and
  frozen constants (``projection`` (R, D) of relu/exp features, ``binding_keys`` (M, N, D)
  of FAVOR+S, cut to ``spec.grid``). Returns ``(B, L, H, D)``, or ``(B/M, L, H, D)`` with
  ``superposed_output`` (att.+MLP, Eq. 68). ``dropout_fn``: softmax weight dropout."""
  if spec.attention == "softmax":
    return functools.partial(attention_ops.softmax_attention, causal=spec.causal,
                             dropout_fn=dropout_fn)
  if spec.attention == "favor":
    kernel_fn = feature_map(spec.kernel, projection, spec.dpfp_nu)
    s = qk_scale(spec.kernel, spec.head_dim, exp_temperature=spec.exp_temperature)
    return lambda q, k, v, mask=None: attention_ops.favor_attention(
        q * s, k * s, v, kernel_fn, mask=mask, causal=spec.causal)
  op, keys, s, grid = _favor_s_setup(spec, projection, binding_keys,
                                     attention_ops.favor_s_attention,
                                     attention_ops.favor_s_exact_attention)

  def attend(q, k, v, mask=None):
    check_group(q.shape[0], *spec.grid)
    out = op(grid(q * s), grid(k * s), grid(v), keys, mask=grid(mask), causal=spec.causal,
             superposed_output=superposed_output)
    return out.reshape((-1,) + out.shape[2:]) if superposed_output else channels.from_grid(out)
  return attend


def normalisers_op(spec: AttentionSpec, projection=None, binding_keys=None):
  """``normalisers(q, k, mask=None)`` of a FAVOR+S layer (att. variant): the ``B^(m,n)`` of
  every query row, ``(B/(MN), N, L, H, M)`` (``ops.favor_s_normalisers``), for projected q, k
  ``(B, L, H, D)``; arguments as :func:`attention_op`."""
  op, keys, s, grid = _favor_s_setup(spec, projection, binding_keys,
                                     attention_ops.favor_s_normalisers,
                                     attention_ops.favor_s_exact_normalisers)
  return lambda q, k, mask=None: op(grid(q * s), grid(k * s), keys, mask=grid(mask),
                                    causal=spec.causal)


class MultiHeadAttention(nn.Module):
  """Pre-projected multi-head attention of the MIMOFormer layer (official code,
  IBM/multiple-input-multiple-output-nets: ``MIMOFormer/code/attention.py``,
  ``attention_performer.py``, ``attention_mimoformer.py``).

  ``W_q, W_k, W_v``: Dense E -> H*D with bias, split into heads; the attention of
  ``spec.attention`` (:func:`attention_op`); heads concatenated; ``W_o``: Dense H*D ->
  ``out_dim``.

  * favor (Performer): q and k are divided by D^(1/4) before the feature map, which
    applies its own D^(-1/4) (effective D^(-1/2)); v unscaled.
  * favor_s: q and k are divided by s = (sqrt(D)*M*N)^(1/2), v unscaled. Keys ``a`` (M, N,
    D) bipolar, one set per layer shared by all heads. ``spec.subgrid`` uses the
    ``[:M/2, :N/2]`` sub-grid of the same keys and s with (M/2)(N/2) (App. F.1).
    ``superposed_output`` returns the att.+MLP output (Eq. 68): ``(B/M, L, out_dim)``,
    row ``g*N + n`` holding the still-bound superposition over m of column n.

  Constants (collection "constants"): ``projection`` (R, D) for relu/exp kernels, drawn
  once by ``ops.gaussian_orthogonal_matrix`` and shared by all heads; ``binding_keys``
  (M, N, D) for favor_s. Both come from the "constants" rng at init (flax falls back to
  the "params" rng when no "constants" rng is given).

  Sown for analysis (collection "intermediates", stored only when the caller makes it
  mutable): ``q`` and ``k``, the projected ``(B, L, H, D)`` queries and keys that
  :func:`attention_op` takes, and for FAVOR+S att. the ``normalisers`` of
  :func:`normalisers_op`. With ``spec.mass_balance`` > 0, training sows
  ``mass_balance * ops.bundle_mass_spread(normalisers)`` into "losses".
  """

  spec: AttentionSpec
  out_dim: int
  superposed_output: bool = False

  def _projection(self, train: bool):
    spec = self.spec
    if spec.attention == "softmax" or spec.kernel == "dpfp":
      return None
    stored = self.variable(
        CONSTANTS, "projection",
        lambda: attention_ops.gaussian_orthogonal_matrix(
            self.make_rng(CONSTANTS), spec.num_features, spec.head_dim)).value
    if spec.redraw_features and train:
      return attention_ops.gaussian_orthogonal_matrix(
          self.make_rng("features"), spec.num_features, spec.head_dim)
    return stored

  def _binding_keys(self):
    spec = self.spec
    if spec.attention != "favor_s":
      return None
    return self.variable(
        CONSTANTS, "binding_keys",
        lambda: binding.rademacher_keys(
            self.make_rng(CONSTANTS), (spec.m, spec.n, spec.head_dim))).value

  def _dropout_fn(self, train: bool):
    rate = self.spec.attention_dropout
    if self.spec.attention != "softmax" or rate == 0.0 or not train:
      return None
    return functools.partial(softmax_weights_dropout, rate=rate, rng=self.make_rng("dropout"))

  def _sow_normalisers(self, q, k, mask, projection, keys, train: bool):
    """FAVOR+S att.: the normalisers for analysis and the mass-balance loss term, computed
    only when one of them is wanted."""
    spec = self.spec
    if spec.attention != "favor_s" or self.superposed_output:
      return
    balance = bool(spec.mass_balance) and train and not self.is_initializing()
    if not (balance or self.is_mutable_collection("intermediates")):
      return
    den = normalisers_op(spec, projection, keys)(q, k, mask)
    self.sow("intermediates", "normalisers", den)
    if balance:
      self.sow(LOSSES, "mass_balance",
               spec.mass_balance * attention_ops.bundle_mass_spread(den))

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool):
    """``x`` (B, L, E), ``mask`` (B, L) or None -> (B, L, out_dim) (or (B/M, ...))."""
    spec = self.spec
    if mask is not None and mask.shape != x.shape[:2]:
      raise ValueError(f"mask shape {mask.shape} must equal inputs' (B, L) = {x.shape[:2]}")
    heads = spec.num_heads * spec.head_dim
    split = lambda y: y.reshape(y.shape[:-1] + (spec.num_heads, spec.head_dim))
    project = lambda name: split(dense(heads, x.shape[-1], spec.init, name=name)(x))
    q, k, v = project("query"), project("key"), project("value")
    if spec.attention == "favor_s" and mask is not None:
      # a row with no real token (a filler) adds no query to its bundle; rows with a real
      # token keep their padded queries, as the official code does
      q = q * jnp.any(mask, axis=-1)[:, None, None, None].astype(q.dtype)
    if spec.reference_padding and spec.attention != "softmax" and mask is not None:
      real = mask[..., None, None].astype(k.dtype)
      k, v, mask = k * real, v * real, None
    self.sow("intermediates", "q", q)
    self.sow("intermediates", "k", k)
    keys = self._binding_keys()  # drawn before the projection, as at every earlier init
    projection = self._projection(train)
    attend = attention_op(spec, projection, keys, self.superposed_output,
                          self._dropout_fn(train))
    out = attend(q, k, v, mask)
    self._sow_normalisers(q, k, mask, projection, keys, train)
    out = out.reshape(out.shape[:-2] + (heads,))
    return dense(self.out_dim, heads, spec.init, spec.residual_scale, name="out")(out)
