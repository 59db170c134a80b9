"""Multiply-accumulates per sample of the wide networks and DataMUX's MNIST networks,
counted from the model itself.

Two independent counts:

* :func:`layer_counts` traces the module once with ``jax.eval_shape`` (nothing is compiled
  or computed) under a ``flax.linen.intercept_methods`` hook that sees every ``nn.Conv``,
  ``nn.Dense``, PWHRR binding, MBAT unbinding, BatchNorm and activation call with its real
  input and output shapes, so the count follows the module and cannot drift from it.
  Per layer it records

  - ``macs``, the paper's convention (Table A2, App. E.2): kernel area x C_in x C_out x
    output positions, zero padding included; dense layers in x out per row; PWHRR binding
    as a circulant matrix product, C x C per pixel and channel (Eq. 5); MBAT unbinding
    D x N*D per superposition (Eq. 6); DataMUX's per-instance mux convs as convs, its
    matrix mux D x D and Hadamard mux D per instance, its demux heads D x F per instance;
  - ``in_bounds_macs``, the same but counting only kernel taps that land inside the input
    (what XLA's cost analysis counts);
  - ``elementwise``, the extra operations a ``ptflops``-style profiler adds: 2 per BatchNorm
    element, 1 per activation element, 1 per bias element. Table A2's "first conv. layer"
    column includes the stem's BN + ReLU this way (1.77 + 0.20 = 1.97 MMAC for 3 -> 64).

* :func:`xla_macs_per_sample` lowers and compiles the jitted inference forward pass from
  abstract variables and reads ``cost_analysis()["flops"] / 2``. It counts in-bounds taps,
  elementwise work and the FFT of the binding as XLA implements it, so it is below the
  paper's convention (about 0.91x for WRN-28-10).

Parts (Table A2 columns): ``first_conv`` (stem conv, BN, ReLU), ``binding``, ``rest``
(residual trunk, final BN / activation), ``unbinding``, ``fcl`` (classifier). For DataMUX's
networks (``models.datamux_vision``) the mux is ``binding``, the shared trunk ``rest``, the
N demux heads ``unbinding`` and the shared readout ``fcl``; per sample is per group / N.

DataMUX CNN+Nonlinear(8x) (MIMONets App. E.2: 0.88 MMAC per image at N = 1, 0.65 at
N = 16): per image the mux costs 9*1*16*400 + 9*16*8*400 = 518,400 MACs, the trunk
(conv 8 -> 10 on 18 x 18, conv 10 -> 16 4x4 on 6 x 6, conv 16 -> 120, Linear 120 -> 84)
352,800 / N, the demux head 84*84 = 7,056 and the readout 840: 879,096 at N = 1 (0.88) and
548,346 at N = 16. The paper's 0.65 at N = 16 is this count with the demux layer counted
once per image instead of once per group (the 84 -> 84 N layer for every image:
+ (N - 1) * 7,056 = 654,186); :func:`datamux_paper_macs` gives that figure.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mimojax.models.datamux import MATRIX_MUXES
from mimojax.models.datamux import Multiplexer
from mimojax.models.datamux_vision import Demux
from mimojax.models.datamux_vision import InstanceConv
from mimojax.nn.conv import Activation
from mimojax.nn.conv import BatchNorm
from mimojax.nn.conv import MBATUnbind
from mimojax.nn.conv import PWHRRBind

PARTS = ("first_conv", "binding", "rest", "unbinding", "fcl")
CONVENTIONS = ("paper", "ptflops", "in_bounds")

# Paper Table A2 (CIFAR-100, MMAC per sample) and App. E.2 (MNIST MIMOConv-10-1).
PAPER_MMAC = {
    "wrn-28-10": {"first_conv": 0.49, "rest": 5245, "fcl": 0.064, "total": 5251},
    "mimoconv-28-10 N=1": {"first_conv": 1.97, "binding": 4.19, "rest": 5329,
                           "unbinding": 0.41, "fcl": 0.064, "total": 5335},
    "mimoconv-28-10 N=2": {"first_conv": 1.97, "binding": 4.19, "rest": 2664,
                           "unbinding": 0.41, "fcl": 0.064, "total": 2671},
    "mimoconv-28-10 N=4": {"first_conv": 1.97, "binding": 4.19, "rest": 1332,
                           "unbinding": 0.41, "fcl": 0.064, "total": 1339},
    "mimoconv-10-1 N=1": {"total": 5.10},
    "mimoconv-10-1 N=16": {"total": 0.47},
    "datamux-cnn-nonlinear8 N=1": {"total": 0.88},
    "datamux-cnn-nonlinear8 N=16": {"total": 0.65},
}


@dataclasses.dataclass(frozen=True)
class LayerCount:
  """Cost of one layer call for the traced batch (all images, not per sample)."""
  path: str
  kind: str  # conv | dense | bind | unbind | mux | demux | norm | act
  macs: int
  in_bounds_macs: int
  elementwise: int


def _padding_pairs(padding, in_sizes, out_sizes, kernel, strides):
  """Explicit (lo, hi) padding per spatial axis for an ``nn.Conv`` padding attribute."""
  if isinstance(padding, str):
    if padding == "VALID":
      return [(0, 0)] * len(kernel)
    if padding == "SAME":
      pads = []
      for i, o, k, s in zip(in_sizes, out_sizes, kernel, strides):
        total = max((o - 1) * s + k - i, 0)
        pads.append((total // 2, total - total // 2))
      return pads
    raise ValueError(f"conv padding {padding!r} is not countable; use VALID, SAME or pairs")
  if isinstance(padding, int):
    return [(padding, padding)] * len(kernel)
  return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _in_bounds_taps(in_size: int, out_size: int, k: int, s: int, lo: int) -> int:
  """Number of (output position, kernel tap) pairs of one axis that read a real input."""
  pos = np.arange(out_size)[:, None] * s + np.arange(k)[None, :] - lo
  return int(np.sum((pos >= 0) & (pos < in_size)))


def _conv_count(module: nn.Conv, x, y) -> tuple[int, int]:
  kernel = tuple(module.kernel_size)
  nd = len(kernel)
  strides = module.strides or 1
  strides = (strides,) * nd if isinstance(strides, int) else tuple(strides)
  in_sizes, out_sizes = x.shape[-nd - 1:-1], y.shape[-nd - 1:-1]
  c_in, c_out = x.shape[-1], y.shape[-1]
  per_tap = (c_in // module.feature_group_count) * c_out
  rows = math.prod(y.shape[:-nd - 1])
  macs = rows * math.prod(out_sizes) * math.prod(kernel) * per_tap
  pads = _padding_pairs(module.padding, in_sizes, out_sizes, kernel, strides)
  taps = math.prod(_in_bounds_taps(i, o, k, s, lo) for i, o, k, s, (lo, _)
                   in zip(in_sizes, out_sizes, kernel, strides, pads))
  return macs, rows * taps * per_tap


def _count(module, x, y) -> tuple[str, int, int, int] | None:
  """(kind, macs, in-bounds macs, elementwise) of one call, None for uncounted modules."""
  if isinstance(module, nn.Conv):
    macs, in_bounds = _conv_count(module, x, y)
    return "conv", macs, in_bounds, y.size if module.use_bias else 0
  if isinstance(module, nn.Dense):
    macs = math.prod(x.shape[:-1]) * x.shape[-1] * y.shape[-1]
    return "dense", macs, macs, y.size if module.use_bias else 0
  if isinstance(module, PWHRRBind):  # circulant C x C per pixel and channel
    macs = x.size * x.shape[-1]
    return "bind", macs, macs, 0
  if isinstance(module, MBATUnbind):  # (G, D) @ (D, N*D)
    macs = x.size * y.shape[-2] * y.shape[-1]
    return "unbind", macs, macs, 2 * y.size if module.bias_relu else 0
  if isinstance(module, InstanceConv):  # (G, N, H, W, C) -> (G, N, H, W, F), 3x3, padding 1
    macs = math.prod(y.shape[:-1]) * 9 * x.shape[-1] * y.shape[-1]
    h, w = x.shape[-3:-1]
    taps = _in_bounds_taps(h, h, 3, 1, 1) * _in_bounds_taps(w, w, 3, 1, 1)
    return "conv", macs, math.prod(y.shape[:2]) * taps * x.shape[-1] * y.shape[-1], 0
  if isinstance(module, Multiplexer):  # (G, N, D): D x D (matrix) or D (vector) per instance
    macs = x.size * (x.shape[-1] if module.mux in MATRIX_MUXES else 1)
    return "mux", macs, macs, 0
  if isinstance(module, Demux):  # (G, D) -> (G, N, F)
    macs = x.shape[-1] * y.size
    return "demux", macs, macs, y.size
  if isinstance(module, BatchNorm):
    return "norm", 0, 0, 2 * x.size
  if isinstance(module, Activation):
    return "act", 0, 0, x.size
  return None


def layer_counts(model: nn.Module, inputs_shape, **call_kwargs) -> list[LayerCount]:
  """Per-layer costs of ``model(inputs, train=False, **call_kwargs)`` for a batch of shape
  ``inputs_shape`` (NHWC), found by tracing with ``jax.eval_shape`` (no compilation).

  The mode counted is the one the model runs: MIMOConv's inputs per pass n is its call
  argument ``inputs_per_pass`` or, without it, ``model.phase.inputs_per_pass``
  (``model.clone(phase=Phase(inputs_per_pass=n))``)."""
  records: list[LayerCount] = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__":
      counted = _count(context.module, args[0], out)
      if counted is not None:
        records.append(LayerCount("/".join(context.module.path), *counted))
    return out

  def init(x):
    rngs = {"params": jax.random.key(0), "constants": jax.random.key(1)}
    return model.init(rngs, x, train=False, **call_kwargs)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(init, jax.ShapeDtypeStruct(tuple(inputs_shape), jnp.float32))
  return records


def part_of(path: str) -> str:
  """Table A2 column of a layer path."""
  top = path.split("/")[0]
  if top.startswith("stem_"):
    return "first_conv"
  if top in ("bind", "mux"):
    return "binding"
  if top in ("unbind", "demux"):
    return "unbinding"
  if top in ("classifier", "readout"):
    return "fcl"
  return "rest"


def group_size(model: nn.Module) -> int:
  """Inputs that share one pass: MIMOConv's N channels, DataMUX's N instances, else 1."""
  return getattr(model, "num_channels", None) or getattr(model, "num_instances", 1)


def macs_per_sample(model: nn.Module, image_shape, *, convention: str = "paper",
                    batch: int | None = None, **call_kwargs) -> dict[str, float]:
  """MACs per input image by Table A2 part, plus ``"total"``.

  ``convention``: ``"paper"`` (linear layers, padding included), ``"ptflops"`` (plus BN,
  activation and bias elementwise operations), ``"in_bounds"`` (linear layers, taps inside
  the input only). ``batch`` defaults to :func:`group_size` (one full pass at n = N);
  ``call_kwargs`` as :func:`layer_counts`.
  """
  if convention not in CONVENTIONS:
    raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")
  batch = batch or group_size(model)
  parts = dict.fromkeys(PARTS, 0.0)
  for rec in layer_counts(model, (batch,) + tuple(image_shape), **call_kwargs):
    value = {"paper": rec.macs, "ptflops": rec.macs + rec.elementwise,
             "in_bounds": rec.in_bounds_macs}[convention]
    parts[part_of(rec.path)] += value / batch
  parts["total"] = sum(parts[p] for p in PARTS)
  return parts


def datamux_paper_macs(model: nn.Module, image_shape) -> float:
  """MIMONets App. E.2's MACs per image of a DataMUX network: :func:`macs_per_sample`
  (paper convention) with the demux layer counted once per image rather than once per group
  of N, i.e. ``total + (N - 1) * unbinding`` (see the module doc)."""
  parts = macs_per_sample(model, image_shape)
  return parts["total"] + (group_size(model) - 1) * parts["unbinding"]


def xla_macs_per_sample(model: nn.Module, image_shape, *, batch: int | None = None,
                        **call_kwargs) -> float:
  """XLA cost analysis of the compiled inference forward pass: ``flops / 2`` per image.

  Lowered from abstract variables (``jax.eval_shape`` of init), so no parameters are
  materialised; the forward pass is compiled once.
  """
  batch = batch or group_size(model)
  x = jax.ShapeDtypeStruct((batch,) + tuple(image_shape), jnp.float32)

  def init(x):
    rngs = {"params": jax.random.key(0), "constants": jax.random.key(1)}
    return model.init(rngs, x, train=False, **call_kwargs)

  variables = jax.eval_shape(init, x)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False, **call_kwargs))
  cost = forward.lower(variables, x).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost["flops"]) / 2 / batch
