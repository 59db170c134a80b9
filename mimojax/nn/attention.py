"""Multi-head attention: softmax, FAVOR+ (Performer) and FAVOR+S (MIMOFormer, Sec. 4).

The module holds the trainable projections W_q, W_k, W_v, W_o and the frozen constants
(FAVOR random projection P, bipolar binding keys a) and calls ``mimojax.ops`` for the
attention maths. Queries, keys and values are ``(B, L, H, D)``; masks ``(B, L)`` booleans,
True = real token. For FAVOR+S a batch is viewed as ``(B/(M*N), M, N, ...)`` grids, example
``(g*M + m)*N + n`` in group ``g`` and channel ``(m, n)`` (``ops.to_grid``).
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
# "gpt2" (safari SimpleLM `_init_weights`: N(0, 0.02) kernels, zero biases).
INITS = ("torch", "gpt2")
GPT2_STD = 0.02

# Variable collection of the frozen constants (FAVOR projections, bipolar keys).
CONSTANTS = "constants"
LOSSES = "losses"  # weighted loss terms sown in training; the train step adds them


def torch_linear(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
  """``nn.Dense`` initialised like PyTorch's ``nn.Linear`` default (reference 2.1).

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


def grid_size(m: int, n: int, curriculum: bool) -> tuple[int, int]:
  """The grid in use: ``(M, N)``, or the ``(M/2, N/2)`` warm-up sub-grid (App. F.1, ref 2.5).

  The reference halves both axes with integer division; an axis of size 1 stays 1 (the
  reference divides by zero there, a case none of its configs reaches).
  """
  if curriculum:
    return max(1, m // 2), max(1, n // 2)
  return m, n


def qk_scale(kernel: str, head_dim: int, m: int = 1, n: int = 1,
             exp_temperature: float = 1.0) -> float:
  """Factor on q and k before the feature map. ReLU and DPFP follow the official code (ref
  2.2 / 2.3): (sqrt(D) M N)^(-1/2) on an M x N grid, i.e. D^(-1/4) for FAVOR+ (the ReLU
  kernel applies another). The exp kernel gets sqrt(exp_temperature): its own D^(-1/4) then
  gives the softmax kernel exp(t q . k / sqrt(D)), the paper's (Eq. 12; Eq. 20 for the
  bundles) at t = 1."""
  if kernel == "exp":
    return math.sqrt(exp_temperature)
  return (math.sqrt(head_dim) * m * n) ** -0.5


def feature_map(kernel: str, projection=None, dpfp_nu: int = 1):
  """The feature map phi named by ``kernel`` (``KERNELS``): "relu" random features (ref 2.2
  step 4) or "exp" positive softmax features, both with the (R, D) ``projection``, or "dpfp"
  (no projection)."""
  if kernel == "dpfp":
    return functools.partial(attention_ops.dpfp_kernel, nu=dpfp_nu)
  fn = attention_ops.relu_kernel if kernel == "relu" else attention_ops.exp_kernel
  return functools.partial(fn, projection=projection)


def scaled_linear_attention(q, k, v, kernel: str, kernel_fn, keys=None, mask=None,
                            causal: bool = False, superposed_output: bool = False,
                            exp_temperature: float = 1.0, return_normalisers: bool = False):
  """FAVOR+ (``keys`` None) or FAVOR+S on the M x N grid of ``keys`` (M, N, D) (Eq. 19),
  with q and k scaled by ``qk_scale``; ``kernel_fn`` None: FAVOR+S's exact kernel. q, k, v
  ``(B, L, H, D)``; the output is ``(B, L, H, D)``, or ``(B/M, L, H, D)`` with
  ``superposed_output``. ``return_normalisers`` (FAVOR+S): also the normalisers of
  ``ops.favor_s_attention``, ``(B/(MN), N, L, H, M)``."""
  if keys is None:
    s = qk_scale(kernel, q.shape[-1], exp_temperature=exp_temperature)
    return attention_ops.favor_attention(q * s, k * s, v, kernel_fn, mask=mask, causal=causal)
  m, n = keys.shape[:2]
  s = qk_scale(kernel, q.shape[-1], m, n, exp_temperature)
  grid = lambda x: channels.to_grid(x, m, n)
  out = attention_ops.favor_s_attention(
      grid(q * s), grid(k * s), grid(v), keys, kernel_fn,
      mask=None if mask is None else grid(mask), causal=causal,
      superposed_output=superposed_output, return_normalisers=return_normalisers)
  out, den = out if return_normalisers else (out, None)
  out = out.reshape((-1,) + out.shape[2:]) if superposed_output else channels.from_grid(out)
  return (out, den) if return_normalisers else out


def check_group(batch: int, m: int, n: int) -> None:
  """Raises ``ValueError`` unless the batch splits into whole M x N superposition groups."""
  if batch % (m * n):
    raise ValueError(
        f"batch size {batch} is not divisible by the superposition group size "
        f"mimo.m * mimo.n = {m} * {n} = {m * n}")


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """Static settings of one attention layer (config.model.* and config.mimo.m/n).

  attention: "softmax" | "favor" (FAVOR+, Eq. 10) | "favor_s" (FAVOR+S grid, Eq. 19).
  kernel: feature map of favor/favor_s: "relu" (reference), "exp" (positive softmax
    features) or "dpfp" (DPFP, no random projection).
  num_features: R, rows of the random projection (relu/exp).
  exp_temperature: t of the exp kernel's softmax kernel exp(t q . k / sqrt(D)); 1 is the
    paper's (Eq. 12). Not in the paper; favor/favor_s with the exp kernel only.
  redraw_features: draw a fresh projection from the "features" rng at every training call
    instead of using the frozen one (eval always uses the frozen one).
  attention_dropout: dropout on the softmax attention weights (softmax only, as in the
    reference).
  exact_kernel: favor_s with the exp kernel only: the exact kernel exp(t q~ . k~ / sqrt(D))
    that the positive features estimate, quadratic in L (``ops.favor_s_attention`` with
    ``kernel_fn=None``). Not in the paper; the loop uses it for the first
    ``mimo.exact_kernel_fraction`` of training.
  m, n: the FAVOR+S grid (favor_s only).
  mass_balance: weight of ``ops.bundle_mass_spread`` of this layer's normalisers, sown into
    the "losses" collection during training (att. variant of favor_s only; 0: off). Not in
    the paper.
  init: initialisation of W_q, W_k, W_v, W_o (``INITS``); ``residual_scale`` also scales
    W_o under "gpt2" (see :func:`dense`).
  reference_padding: favor/favor_s only. False (default): padded keys contribute nothing
    (``ops`` mask semantics; extra padding leaves real outputs unchanged). True: the
    official code's behaviour (ref 2.2): k and v are multiplied by the mask and no mask is
    passed on, so every pad adds phi(0) (= eps for the ReLU kernel) to the normaliser.
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
  mass_balance: float = 0.0
  reference_padding: bool = False
  init: str = "torch"
  residual_scale: float = 1.0

  def __post_init__(self):
    if self.attention not in ATTENTIONS:
      raise ValueError(f"model.attention must be one of {ATTENTIONS}, got {self.attention!r}")
    if self.kernel not in KERNELS:
      raise ValueError(f"model.kernel must be one of {KERNELS}, got {self.kernel!r}")
    if self.init not in INITS:
      raise ValueError(f"model.init must be one of {INITS}, got {self.init!r}")
    for name in ("num_heads", "head_dim", "num_features", "dpfp_nu", "m", "n"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        field = f"mimo.{name}" if name in ("m", "n") else f"model.{name}"
        raise ValueError(f"{field} must be a positive int, got {value!r}")
    if (isinstance(self.exp_temperature, bool)
        or not isinstance(self.exp_temperature, (int, float)) or self.exp_temperature <= 0
        or (self.exp_temperature != 1
            and (self.kernel != "exp" or self.attention == "softmax"))):
      raise ValueError(
          f"model.exp_temperature: allowed values are numbers > 0 with model.kernel = 'exp' "
          f"and model.attention in ('favor', 'favor_s'), else 1; got {self.exp_temperature!r}"
          f" with kernel {self.kernel!r}, attention {self.attention!r}")
    if not 0.0 <= self.attention_dropout < 1.0:
      raise ValueError(
          f"model.attention_dropout must be in [0, 1), got {self.attention_dropout!r}")
    if (isinstance(self.mass_balance, bool) or not isinstance(self.mass_balance, (int, float))
        or self.mass_balance < 0 or (self.mass_balance and self.attention != "favor_s")):
      raise ValueError(
          f"mimo.mass_balance: allowed values are numbers >= 0, > 0 only with "
          f"model.attention = 'favor_s'; got {self.mass_balance!r} with attention "
          f"{self.attention!r}")
    if self.exact_kernel and (self.attention, self.kernel) != ("favor_s", "exp"):
      raise ValueError(
          f"mimo.exact_kernel_fraction > 0 needs model.attention = 'favor_s' and "
          f"model.kernel = 'exp'; got {self.attention!r}, {self.kernel!r}")
    if self.attention != "favor_s" and (self.m, self.n) != (1, 1):
      raise ValueError(
          f"mimo.m x mimo.n = {self.m} x {self.n} needs model.attention = 'favor_s', "
          f"got {self.attention!r}")


def softmax_weights_dropout(weights, rate: float, rng):
  """Inverted dropout on attention weights ``(..., H, Lq, Lk)``."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, weights.shape)
  return jnp.where(keep, weights / (1.0 - rate), 0.0)


class MultiHeadAttention(nn.Module):
  """Pre-projected multi-head attention of the MIMOFormer layer (reference 2.1-2.4).

  ``W_q, W_k, W_v``: Dense E -> H*D with bias, split into heads; the attention of
  ``spec.attention``; heads concatenated; ``W_o``: Dense H*D -> ``out_dim``.

  * favor (Performer, ref 2.2): q and k are divided by D^(1/4) before the feature map,
    which applies its own D^(-1/4) (effective D^(-1/2)); v unscaled.
  * favor_s (ref 2.3): q and k are divided by s = (sqrt(D)*M*N)^(1/2), v unscaled. Keys
    ``a`` (M, N, D) bipolar, one set per layer shared by all heads. ``curriculum`` uses the
    ``[:M/2, :N/2]`` sub-grid of the same keys and s with (M/2)(N/2) (App. F.1).
    ``superposed_output`` returns the att.+MLP output (Eq. 68): ``(B/M, L, out_dim)``,
    row ``g*N + n`` holding the still-bound superposition over m of column n.

  Constants (collection "constants"): ``projection`` (R, D) for relu/exp kernels, drawn
  once by ``ops.gaussian_orthogonal_matrix`` and shared by all heads; ``binding_keys``
  (M, N, D) for favor_s. Both come from the "constants" rng at init (flax falls back to
  the "params" rng when no "constants" rng is given).
  """

  spec: AttentionSpec
  out_dim: int
  superposed_output: bool = False
  curriculum: bool = False

  def _projection(self, train: bool):
    spec = self.spec
    stored = self.variable(
        CONSTANTS, "projection",
        lambda: attention_ops.gaussian_orthogonal_matrix(
            self.make_rng(CONSTANTS), spec.num_features, spec.head_dim)).value
    if spec.redraw_features and train:
      return attention_ops.gaussian_orthogonal_matrix(
          self.make_rng("features"), spec.num_features, spec.head_dim)
    return stored

  def _kernel_fn(self, train: bool):
    spec = self.spec
    projection = None if spec.kernel == "dpfp" else self._projection(train)
    return feature_map(spec.kernel, projection, spec.dpfp_nu)

  def _softmax(self, q, k, v, mask, train: bool):
    spec = self.spec
    if spec.attention_dropout == 0.0 or not train:
      return attention_ops.softmax_attention(q, k, v, mask=mask, causal=spec.causal)
    dropout_fn = functools.partial(
        softmax_weights_dropout, rate=spec.attention_dropout, rng=self.make_rng("dropout"))
    return attention_ops.softmax_attention(
        q, k, v, mask=mask, causal=spec.causal, dropout_fn=dropout_fn)

  def _favor(self, q, k, v, mask, train: bool):
    return scaled_linear_attention(q, k, v, self.spec.kernel, self._kernel_fn(train),
                                   mask=mask, causal=self.spec.causal,
                                   exp_temperature=self.spec.exp_temperature)

  def _favor_s(self, q, k, v, mask, train: bool):
    """FAVOR+S on the grid (ref 2.3 steps 1-7; Eq. 19, 67, 68)."""
    spec = self.spec
    keys = self.variable(
        CONSTANTS, "binding_keys",
        lambda: binding.rademacher_keys(
            self.make_rng(CONSTANTS), (spec.m, spec.n, spec.head_dim))).value
    m, n = grid_size(spec.m, spec.n, self.curriculum)
    check_group(q.shape[0], m, n)
    balance = bool(spec.mass_balance) and train and not self.is_initializing()
    kernel_fn = None if spec.exact_kernel else self._kernel_fn(train)
    out = scaled_linear_attention(
        q, k, v, spec.kernel, kernel_fn, keys[:m, :n], mask=mask,
        causal=spec.causal, superposed_output=self.superposed_output,
        exp_temperature=spec.exp_temperature, return_normalisers=balance)
    if not balance:
      return out
    out, den = out
    self.sow(LOSSES, "mass_balance", spec.mass_balance * attention_ops.bundle_mass_spread(den))
    return out

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool):
    """``x`` (B, L, E), ``mask`` (B, L) or None -> (B, L, out_dim) (or (B/M, ...))."""
    spec = self.spec
    if self.superposed_output and spec.attention != "favor_s":
      raise ValueError(
          f"superposed_output (mimo.variant = 'att_mlp') needs model.attention = 'favor_s', "
          f"got {spec.attention!r}")
    if self.superposed_output and spec.mass_balance:
      raise ValueError(
          "mimo.mass_balance > 0 is not supported with mimo.variant = 'att_mlp' (one summed "
          "normaliser, Eq. 68); allowed: mimo.variant = 'att' or mimo.mass_balance = 0")
    if self.superposed_output and self.curriculum:
      raise ValueError(
          "curriculum (mimo.curriculum_fraction > 0) is not supported with "
          "mimo.variant = 'att_mlp'; allowed: mimo.variant = 'att'")
    if mask is not None and mask.shape != x.shape[:2]:
      raise ValueError(f"mask shape {mask.shape} must equal inputs' (B, L) = {x.shape[:2]}")
    heads = spec.num_heads * spec.head_dim
    split = lambda y: y.reshape(y.shape[:-1] + (spec.num_heads, spec.head_dim))
    project = lambda name: split(dense(heads, x.shape[-1], spec.init, name=name)(x))
    q, k, v = project("query"), project("key"), project("value")
    if spec.reference_padding and spec.attention != "softmax" and mask is not None:
      real = mask[..., None, None].astype(k.dtype)
      k, v, mask = k * real, v * real, None
    attend = {"softmax": self._softmax, "favor": self._favor, "favor_s": self._favor_s}
    out = attend[spec.attention](q, k, v, mask, train)
    out = out.reshape(out.shape[:-2] + (heads,))
    return dense(self.out_dim, heads, spec.init, spec.residual_scale, name="out")(out)
