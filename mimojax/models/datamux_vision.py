"""DataMUX's MNIST networks: a LeNet-like CNN and an MLP over N multiplexed images (Murahari
et al., 2022, App. A.10-A.11; princeton-nlp/DataMUX: ``vision/vision_multiplexing.ipynb``,
``MuxLeNet``).

Inputs are NHWC images ``(B, H, W, C)`` (MNIST: 20 x 20 x 1, pixels / 255), B = G*N with
instance i of group g in row ``g*N + i`` (``ops.to_grid(x, 1, N)``); the output is one row of
10 scores in ``[-1, 1]`` per input row, in input order, trained with MSE on +-1 targets.

* :class:`DataMuxCNN`: mux -> conv3x3 (-> 10, VALID) -> maxpool 2 -> conv4x4 (-> 16) ->
  maxpool 2 -> conv3x3 (-> 120) -> flatten -> Linear 84 -> demux (N separate Linear 84 -> 84)
  -> shared readout Linear 84 -> 10, tanh after every conv and linear layer, the readout's
  included (notebook ``MuxLeNet.forward``). Spatial sizes 20 -> 18 -> 9 -> 6 -> 3 -> 1.
  Muxes (``mimo.mux``, App. A.11):

  - ``ortho`` / ``low_rank``: each instance's flattened image times its own Haar-random
    orthogonal (notebook ``SO(N)``) or LowRank matrix, mixed with ``ops.matrix_mux``
    (a sum over sqrt(N)), reshaped back to an image;
  - ``kernel``: one 3x3 kernel per instance, N(0, 1), zero padding 1, no bias, the N
    filtered images summed (notebook ``Gaussian``; ``learnable`` with ``mimo.learn_mux``);
  - ``nonlinear``: per instance conv3x3 (-> 16, padding 1, no bias) -> tanh -> conv3x3
    (-> k = ``mimo.mux_maps``) -> tanh, kernels N(0, 1), summed over instances into k maps
    (notebook ``nonlinear``, k = 1, and ``nonlinear-expand``, k = 4 or 8).

* :class:`DataMuxMLP` (App. A.10, Fig. 6a; not in the official code): the flat 400-pixel
  image muxed by a Hadamard (Gaussian vectors of norm ``mimo.mux_norm`` or binary chunks,
  ``ops.hadamard_mux``) or matrix (ortho, LowRank) mux -> Linear 100 -> demux Linear
  100 -> 20 N split into N groups of 20 -> shared Linear 20 -> 10, all tanh.

Mux weights are params with ``learn_mux`` and otherwise frozen constants (collection
``"constants"``, drawn from the ``"constants"`` rng): never updated, but checkpointed with
the state. Every instance-indexed weight (mux kernels, matrices and vectors; demux heads)
has the instance on its leading axis. Other layers are initialised like PyTorch's
``nn.Conv2d`` / ``nn.Linear`` defaults, as the notebook's layers are.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimojax import ops
from mimojax.models.datamux import MUXES
from mimojax.models.datamux import Multiplexer
from mimojax.models.phase import Phase
from mimojax.nn.attention import CONSTANTS
from mimojax.nn.attention import torch_linear

CNN_MUXES = MUXES["datamux_cnn"]
MLP_MUXES = MUXES["datamux_mlp"]
MUX_HIDDEN = 16  # channels of the nonlinear mux's first conv (App. A.11)
CNN_HIDDEN = 84
MLP_HIDDEN = 100
MLP_DEMUX = 20  # features per instance after the MLP's demux


def _torch_uniform(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default conv / linear weight and bias."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda rng, shape, dtype=jnp.float32: jax.random.uniform(rng, shape, dtype, -bound,
                                                                  bound)


def _conv(features: int, size: int, c_in: int, name: str) -> nn.Conv:
  """VALID ``size`` x ``size`` conv with bias, PyTorch ``nn.Conv2d`` default init:
  weight and bias U(+-1/sqrt(size^2 C_in))."""
  init = _torch_uniform(size * size * c_in)
  return nn.Conv(features, (size, size), padding="VALID", kernel_init=init, bias_init=init,
                 name=name)


def _mux_weight(module: nn.Module, name: str, init, shape, learn: bool):
  """A mux weight ``init(rng, shape)``: a param when ``learn``, else a frozen constant."""
  if learn:
    return module.param(name, init, shape)
  return module.variable(CONSTANTS, name, lambda: init(module.make_rng(CONSTANTS), shape)).value


def _zero_filler(inputs, valid):
  """``inputs`` with the rows that ``valid`` (B,) marks False set to zero: every mux maps a
  zero image to zero (no biases), so a filler adds nothing to its group's superposition
  (``mimojax.inference.Predictor``)."""
  if valid is None:
    return inputs
  return inputs * valid.astype(inputs.dtype).reshape((-1,) + (1,) * (inputs.ndim - 1))


def split_instances(inputs, num_instances: int):
  """``(G*N, ...) -> (G, N, ...)``; a ValueError naming the sizes if N does not divide B."""
  if inputs.shape[0] % num_instances:
    raise ValueError(f"batch size {inputs.shape[0]} is not divisible by the {num_instances} "
                     "instances per group (mimo.n)")
  return ops.to_grid(inputs, 1, num_instances)[:, 0]


class InstanceConv(nn.Module):
  """N per-instance 3x3 convolutions (cross-correlation, as ``torch.nn.functional.conv2d``),
  zero padding 1, no bias: ``(G, N, H, W, C) -> (G, N, H, W, F)``, instance i filtered by
  ``kernel[i]`` of shape ``(3, 3, C, F)``, N(0, 1) (notebook ``torch.randn``). One plain
  conv per instance: JAX cannot vmap a grouped conv's kernel gradient over seeds when the
  images are shared (``feature_group_count > 1``, data not batched)."""

  num_instances: int
  features: int
  learn: bool = True

  @nn.compact
  def __call__(self, x):
    n = self.num_instances
    if x.ndim != 5 or x.shape[1] != n:
      raise ValueError(f"InstanceConv input must be (G, N={n}, H, W, C), got shape {x.shape}")
    c = x.shape[-1]
    kernel = _mux_weight(self, "kernel", jax.random.normal, (n, 3, 3, c, self.features),
                         self.learn)
    kernel = kernel.astype(x.dtype)
    return jnp.stack([jax.lax.conv_general_dilated(
        x[:, i], kernel[i], (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC")) for i in range(n)], axis=1)


class KernelMux(nn.Module):
  """App. A.11 "CNN+Random Kernel" / "Learned Kernel": ``sum_i k_i * x_i`` with one 3x3
  kernel per instance (C -> C channels), N(0, 1), padding 1. (G, N, H, W, C) -> (G, H, W, C)."""

  num_instances: int
  learn: bool = False

  @nn.compact
  def __call__(self, x):
    return InstanceConv(self.num_instances, x.shape[-1], self.learn, name="conv")(x).sum(axis=1)


class NonlinearMux(nn.Module):
  """App. A.11 "CNN+Nonlinear(k x)": ``sum_i tanh(conv2_i(tanh(conv1_i(x_i))))`` with conv1_i
  C -> 16 and conv2_i 16 -> k, 3x3, padding 1, no bias, N(0, 1) (notebook ``nonlinear`` /
  ``nonlinear-expand``). (G, N, H, W, C) -> (G, H, W, k)."""

  num_instances: int
  maps: int = 1
  learn: bool = True

  @nn.compact
  def __call__(self, x):
    n = self.num_instances
    h = jnp.tanh(InstanceConv(n, MUX_HIDDEN, self.learn, name="conv1")(x))
    return jnp.tanh(InstanceConv(n, self.maps, self.learn, name="conv2")(h)).sum(axis=1)


class Demux(nn.Module):
  """N separate linear heads on the shared features (App. A.10 demultiplexing layer):
  ``(G, D) -> (G, N, F)``, head i = ``h @ kernel[i] + bias[i]``, PyTorch ``nn.Linear``
  init (one Linear(D, F) per instance, or equivalently one Linear(D, N*F) split in N)."""

  num_instances: int
  features: int

  @nn.compact
  def __call__(self, h):
    d, n = h.shape[-1], self.num_instances
    init = _torch_uniform(d)
    kernel = self.param("kernel", init, (n, d, self.features))
    bias = self.param("bias", init, (n, self.features))
    return jnp.einsum("gd,ndf->gnf", h, kernel) + bias


class DataMuxCNN(nn.Module):
  """DataMUX's LeNet-like multiplexing CNN (App. A.10-A.11); see the module doc."""

  num_classes: int = 10
  num_instances: int = 1
  mux: str = "nonlinear"  # ortho | low_rank | kernel | nonlinear
  mux_maps: int = 1  # nonlinear: maps per instance k
  learn_mux: bool = False
  phase: Phase = Phase()  # no phases; the field every model has

  def _mux(self, x):
    """(G, N, H, W, C) -> (G, H, W, C')."""
    n = self.num_instances
    if self.mux == "nonlinear":
      return NonlinearMux(n, self.mux_maps, self.learn_mux, name="mux")(x)
    if self.mux == "kernel":
      return KernelMux(n, self.learn_mux, name="mux")(x)
    if self.mux in ("ortho", "low_rank"):
      flat = Multiplexer(self.mux, learn=self.learn_mux, name="mux")(
          x.reshape(x.shape[:2] + (-1,)))
      return flat.reshape((x.shape[0],) + x.shape[2:])
    raise ValueError(f"mimo.mux={self.mux!r} is not allowed; choose from {list(CNN_MUXES)}")

  @nn.compact
  def __call__(self, inputs, *, train: bool = False, valid=None):
    del train  # no dropout or normalisation layers
    if inputs.ndim != 4:
      raise ValueError(f"inputs must be NHWC images (B, H, W, C), got shape {inputs.shape}")
    x = self._mux(split_instances(_zero_filler(inputs, valid), self.num_instances))
    x = jnp.tanh(_conv(10, 3, x.shape[-1], "conv1")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    self.sow("intermediates", "pool1", x)
    x = jnp.tanh(_conv(16, 4, x.shape[-1], "conv2")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    self.sow("intermediates", "pool2", x)
    x = jnp.tanh(_conv(120, 3, x.shape[-1], "conv3")(x))
    x = x.reshape(x.shape[0], -1)
    x = jnp.tanh(torch_linear(CNN_HIDDEN, x.shape[-1], name="hidden")(x))
    x = jnp.tanh(Demux(self.num_instances, CNN_HIDDEN, name="demux")(x))  # (G, N, 84)
    out = jnp.tanh(torch_linear(self.num_classes, CNN_HIDDEN, name="readout")(x))
    return out.reshape(-1, self.num_classes)


class DataMuxMLP(nn.Module):
  """DataMUX's multiplexing MLP (App. A.10, Fig. 6a); see the module doc."""

  num_classes: int = 10
  num_instances: int = 1
  mux: str = "hadamard"  # hadamard | binary | ortho | low_rank
  learn_mux: bool = False
  mux_norm: float = 1.0
  mux_overlap: float = 0.0
  phase: Phase = Phase()  # no phases; the field every model has

  def _mux(self, x):
    """(G, N, D) -> (G, D)."""
    if self.mux not in MLP_MUXES:
      raise ValueError(f"mimo.mux={self.mux!r} is not allowed; choose from {list(MLP_MUXES)}")
    return Multiplexer(self.mux, self.mux_norm, self.mux_overlap, self.learn_mux, name="mux")(x)

  @nn.compact
  def __call__(self, inputs, *, train: bool = False, valid=None):
    del train
    x = split_instances(_zero_filler(inputs, valid), self.num_instances)
    x = self._mux(x.reshape(x.shape[:2] + (-1,)))  # (G, D)
    x = jnp.tanh(torch_linear(MLP_HIDDEN, x.shape[-1], name="hidden")(x))
    x = jnp.tanh(Demux(self.num_instances, MLP_DEMUX, name="demux")(x))  # (G, N, 20)
    out = jnp.tanh(torch_linear(self.num_classes, MLP_DEMUX, name="readout")(x))
    return out.reshape(-1, self.num_classes)


# ---------------------------------------------------------------------------------------
# Constructors (MODELS entries): a validated config and the data's ImageDataInfo -> module.


def datamux_cnn(config, info) -> DataMuxCNN:
  """The CNN with ``mimo.n`` instances, ``mimo.mux`` (``mimo.mux_maps``, ``mimo.learn_mux``)."""
  mimo = config.mimo
  return DataMuxCNN(num_classes=info.num_classes, num_instances=mimo.n, mux=mimo.mux,
                    mux_maps=mimo.mux_maps, learn_mux=mimo.learn_mux)


def datamux_mlp(config, info) -> DataMuxMLP:
  """The MLP with ``mimo.n`` instances, ``mimo.mux`` (``mimo.mux_norm``, ``mimo.mux_overlap``,
  ``mimo.learn_mux``)."""
  mimo = config.mimo
  return DataMuxMLP(num_classes=info.num_classes, num_instances=mimo.n, mux=mimo.mux,
                    learn_mux=mimo.learn_mux, mux_norm=mimo.mux_norm,
                    mux_overlap=mimo.mux_overlap)
