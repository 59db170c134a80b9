"""Convolutional building blocks of WideResNet / WideIsoNet / MIMOConv (Sec. 3, App. B).

* :class:`Activation`: ReLU, parametric ReLU (App. B.1 Eq. 22, per-channel slope, init 0.5)
  or shifted ReLU (Eq. 21, per-channel threshold, init -1). As in the official code
  (IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/models/superwideisonet.py``)
  neither parameter is clamped.
* :class:`BatchNorm`: PyTorch ``BatchNorm2d`` semantics (momentum 0.1, eps 1e-5, unbiased
  running variance) with the choice of batch or running statistics made per call, so the
  official code's test-time behaviour (batch statistics, nothing updated) is expressible.
* :class:`BasicBlock`: the pre-activation residual block (official
  ``MIMOConv/src/models/superwideresnet.py``, ``BasicBlock``) in two layouts:
  ``"official"`` (IBM ``BasicBlock``: projection shortcut = 1x1 conv + BN on the raw input)
  and ``"standard"`` (Zagoruyko & Komodakis: projection 1x1 conv on the pre-activated input).
* :class:`PWHRRBind`: N binding keys and position-wise HRR binding (Eq. 5).
* :class:`MBATUnbind`: one dense layer holding all N unbinding matrices (Eq. 6), with the
  official code's bias and ReLU as an option (on by default).

Initialisation follows the official code: every conv kernel and the unbinding matrices are
kaiming-normal with fan_out and ReLU gain; BN scale 1, bias 0; biases U(+-1/sqrt(fan_in)).
Keys are U(+-1/sqrt(C)) (torch ``Conv1d`` default) or, as the paper says, N(0, 1/C).
"""

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimojax import ops

ACTIVATIONS = ("relu", "prelu", "srelu")
LAYOUTS = ("official", "standard")
KEY_INITS = ("uniform", "gaussian")
PRELU_INIT = 0.5
SRELU_INIT = -1.0

# kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / (k_h k_w C_out)).
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_bias_init(fan_in: int) -> Callable:
  """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(rng, shape, dtype=jnp.float32):
    return jax.random.uniform(rng, shape, dtype, -bound, bound)

  return init


def conv3x3(features: int, stride: int = 1, name: str | None = None) -> nn.Conv:
  """3x3 convolution, padding 1 on each side (PyTorch ``padding=1``), no bias."""
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                 use_bias=False, kernel_init=conv_kernel_init, name=name)


def conv1x1(features: int, stride: int = 1, name: str | None = None) -> nn.Conv:
  """1x1 (projection) convolution without padding or bias."""
  return nn.Conv(features, (1, 1), strides=(stride, stride), padding="VALID",
                 use_bias=False, kernel_init=conv_kernel_init, name=name)


def prelu(x, slope):
  """Parametric ReLU (Eq. 22): ``max(x, 0) + slope * min(x, 0)``."""
  return jnp.maximum(x, 0) + slope * jnp.minimum(x, 0)


def srelu(x, threshold):
  """Shifted ReLU (Eq. 21): ``max(x, b) = ReLU(x - b) + b``."""
  return jnp.maximum(x, threshold)


class Activation(nn.Module):
  """ReLU, PReLU (param ``slope`` per channel) or SReLU (param ``threshold`` per channel).

  ``init_value`` overrides the parameter's initial value (official ``-p`` flag); None gives
  0.5 for PReLU and -1 for SReLU.
  """

  kind: str = "relu"
  init_value: float | None = None

  @nn.compact
  def __call__(self, x):
    if self.kind == "relu":
      return nn.relu(x)
    channels = (x.shape[-1],)
    if self.kind == "prelu":
      value = PRELU_INIT if self.init_value is None else self.init_value
      slope = self.param("slope", nn.initializers.constant(value), channels)
      return prelu(x, slope)
    value = SRELU_INIT if self.init_value is None else self.init_value
    threshold = self.param("threshold", nn.initializers.constant(value), channels)
    return srelu(x, threshold)


class BatchNorm(nn.Module):
  """Batch normalisation over all but the last axis with PyTorch ``BatchNorm2d`` semantics.

  ``use_batch_stats`` normalises with the batch's mean and biased variance, otherwise with
  the running statistics (collection ``"batch_stats"``). ``update_stats`` (only with batch
  statistics) moves the running mean and the *unbiased* running variance by ``1 - momentum``
  as torch does (``momentum`` here is Flax's decay, 0.9 = torch momentum 0.1).
  """

  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, *, use_batch_stats: bool, update_stats: bool):
    channels = (x.shape[-1],)
    scale = self.param("scale", nn.initializers.ones, channels)
    bias = self.param("bias", nn.initializers.zeros, channels)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, channels, jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, channels, jnp.float32)
    xf = x.astype(jnp.float32)
    if use_batch_stats:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if update_stats and not self.is_initializing():
        count = x.size // x.shape[-1]
        unbiased = var * (count / max(count - 1, 1))
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * unbiased
    else:
      mean, var = running_mean.value, running_var.value
    y = (xf - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
    return y.astype(x.dtype)


class BasicBlock(nn.Module):
  """Pre-activation residual block: ``conv2(act(BN(conv1(act(BN(x)))))) + s`` (official
  ``MIMOConv/src/models/superwideresnet.py``, ``BasicBlock.forward``).

  ``conv1`` carries the stride. The shortcut ``s`` is ``x`` unless the stride is not 1 or
  the channel count changes; then it is a 1x1 projection, in the ``"official"`` layout
  ``BN(conv1x1(x))`` on the raw input, in the ``"standard"`` layout ``conv1x1`` of the
  pre-activated input ``act(BN(x))`` (no BN). Submodule names (``conv1``, ``conv2``,
  ``shortcut_conv``) are what the isometry regulariser selects.
  """

  features: int
  stride: int = 1
  activation: str = "relu"
  layout: str = "official"
  activation_init: float | None = None

  @nn.compact
  def __call__(self, x, *, use_batch_stats: bool, update_stats: bool):
    norm = dict(use_batch_stats=use_batch_stats, update_stats=update_stats)
    pre = Activation(self.activation, self.activation_init, name="act1")(
        BatchNorm(name="bn1")(x, **norm))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      if self.layout == "official":
        shortcut = BatchNorm(name="shortcut_bn")(
            conv1x1(self.features, self.stride, name="shortcut_conv")(x), **norm)
      else:
        shortcut = conv1x1(self.features, self.stride, name="shortcut_conv")(pre)
    out = conv3x3(self.features, self.stride, name="conv1")(pre)
    out = Activation(self.activation, self.activation_init, name="act2")(
        BatchNorm(name="bn2")(out, **norm))
    out = conv3x3(self.features, 1, name="conv2")(out)
    return out + shortcut


def key_initializer(kind: str) -> Callable:
  """Binding-key init for keys ``(N, C)``: ``"uniform"`` U(+-1/sqrt(C)) (official code,
  torch ``Conv1d`` default) or ``"gaussian"`` N(0, 1/C) (paper Sec. 3, App. A.1)."""
  if kind not in KEY_INITS:
    raise ValueError(f"key_init={kind!r} is not allowed; choose from {list(KEY_INITS)}")
  if kind == "gaussian":
    return lambda rng, shape: ops.gaussian_keys(rng, shape)

  def uniform(rng, shape):
    bound = 1.0 / math.sqrt(shape[-1])
    return jax.random.uniform(rng, shape, jnp.float32, -bound, bound)

  return uniform


class PWHRRBind(nn.Module):
  """Position-wise HRR binding (Eq. 5): channel k's feature map is circularly convolved,
  pixel by pixel along the C feature axis, with key ``a_k``.

  Input ``(G, N, H, W, C)`` -> bound ``(G, N, H, W, C)`` (superpose afterwards). The keys
  ``(N, C)`` are a trainable parameter ``"keys"`` or, with ``trainable=False``, a frozen
  constant ``"keys"`` in the ``"constants"`` collection (drawn from the ``"constants"`` rng).
  Keys are parametrised directly as circular-convolution keys (the torch layout differs by
  a fixed index permutation, ``ops.binding.torch_pwhrr_key_to_hrr``; same distribution).
  """

  num_channels: int
  key_init: str = "uniform"
  trainable: bool = True

  @nn.compact
  def __call__(self, x):
    if x.ndim != 5 or x.shape[1] != self.num_channels:
      raise ValueError(f"PWHRRBind input must be (G, N={self.num_channels}, H, W, C), "
                       f"got shape {x.shape}")
    shape = (self.num_channels, x.shape[-1])
    init = key_initializer(self.key_init)
    if self.trainable:
      keys = self.param("keys", init, shape)
    else:
      keys = self.variable("constants", "keys",
                           lambda: init(self.make_rng("constants"), shape)).value
    return ops.hrr_bind(x, keys[:, None, None, :], axis=-1)


class MBATUnbind(nn.Module):
  """MBAT unbinding (Eq. 6) of pooled superposition features ``(G, D) -> (G, N, D)``.

  One ``(D, N*D)`` kernel holds all N unbinding matrices (channel k uses columns
  ``k*D:(k+1)*D``), initialised kaiming-normal with fan_out = N*D like the official 1x1
  conv. ``bias_relu`` adds the official code's bias (N*D) and ReLU (``Superposition`` in
  ``MIMOConv/src/superposition.py``); without it the unbinding is the paper's plain matrix
  product.
  """

  num_channels: int
  bias_relu: bool = True

  @nn.compact
  def __call__(self, h):
    if h.ndim != 2:
      raise ValueError(f"MBATUnbind input must be pooled features (G, D), got shape {h.shape}")
    d, n = h.shape[-1], self.num_channels
    kernel = self.param("kernel", conv_kernel_init, (d, n * d))
    matrices = kernel.reshape(d, n, d).transpose(1, 0, 2)
    out = ops.mbat_unbind(h[:, None, :], matrices)
    if self.bias_relu:
      bias = self.param("bias", torch_bias_init(d), (n * d,))
      out = nn.relu(out + bias.reshape(n, d))
    return out
