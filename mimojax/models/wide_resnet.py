"""WideResNet, WideIsoNet and MIMOConv (Sec. 3, Sec. 5.1, App. B and E).

Official code (IBM/multiple-input-multiple-output-nets):
``MIMOConv/src/models/superwideresnet.py``, ``MIMOConv/src/models/superwideisonet.py`` and
``MIMOConv/src/superposition.py``.

Networks (images NHWC float32 -> logits ``(B, num_classes)``):

* :class:`WideResNet` (WRN-depth-width, Zagoruyko & Komodakis): stem conv3x3 (-> BN ->
  ReLU in the official layout), three stages of ``(depth - 4) / 6`` pre-activation
  :class:`~mimojax.nn.conv.BasicBlock` with ``16 * width * 2**s`` channels (stride 2 from
  stage 1 on), global average pool, one linear classifier. WideIsoNet is the same network
  trained with the isometry regulariser (App. B.2) -- a non-zero ``isometry_gamma``.
* :class:`MIMOConv` (Fig. 2): the stem runs on every image; ``n`` images per pass are
  placed in the N channels (channel k <- image k mod n, ``ops.assign_channels``), bound with
  N PWHRR keys (Eq. 5), superposed, pushed through the residual trunk once, pooled,
  unbound by MBAT into N feature vectors (Eq. 6), the N/n replicas of each image averaged
  (``ops.merge_replicas``) and classified by one shared linear layer.

Layouts (``layout``): ``"standard"`` is the WRN paper's network (plain stem conv,
projection shortcut on the pre-activated input, final BN + activation before pooling;
36,479,194 parameters for WRN-28-10 on CIFAR-10); ``"official"`` is the IBM code's
``SuperWideResnet`` (stem conv -> BN -> ReLU, projection = conv1x1 + BN on the raw input,
no final BN / activation) that produced every number of Table 1 and Table A2, WRN
baselines included.

BatchNorm: ``train=True`` normalises with batch statistics and updates the running ones
(collection ``"batch_stats"``, the caller passes ``mutable=["batch_stats"]``);
``train=False`` uses the running statistics, or with ``bn_eval_batch_stats=True`` the
eval batch's statistics without updating anything (the official code never calls
``model.eval()``: ``MIMOConv/src/train_superposition.py``, ``validate_dynamic.py``).

Regularisers (applied by the training loss; the networks only expose them):
``model.regularization_loss(params, model_state)`` returns
``isometry_gamma * isometry + key_mu * keys`` where ``isometry`` is
``ops.isometry_penalty`` over every block conv and projection shortcut conv at its stride
(selected by :meth:`isometry_include`; the stem, keys, unbinding and classifier are
excluded, as ``isometry_regularization`` in ``superwideisonet.py``) and ``keys`` is
``ops.key_orthonormality_penalty`` of trainable PWHRR keys (App. B.3 Eq. 26).
``model.regularizers(params, model_state)`` returns the unweighted terms for logging.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax.numpy as jnp

from mimojax import ops
from mimojax.models.phase import Phase
from mimojax.nn.conv import Activation
from mimojax.nn.conv import BasicBlock
from mimojax.nn.conv import BatchNorm
from mimojax.nn.conv import MBATUnbind
from mimojax.nn.conv import PWHRRBind
from mimojax.nn.conv import conv3x3
from mimojax.nn.conv import torch_bias_init

STEM_FEATURES = 16  # times initial_width (App. E.5 "initial width factor")
_BLOCK_CONV = re.compile(r"stage(\d+)_block(\d+)/(conv1|conv2|shortcut_conv)/kernel")


def stage_sizes_for_depth(depth: int) -> tuple[int, int, int]:
  """Blocks per stage of a 3-stage WRN-depth: ``(depth - 4) / 6`` each (28 -> 4, 10 -> 1)."""
  if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
    raise ValueError(f"model.depth must be an int 6k + 4 >= 10 (e.g. 10, 16, 28), got {depth!r}")
  return ((depth - 4) // 6,) * 3


def stage_stride(stage: int) -> int:
  """Stride of the first block of ``stage`` (stage 0 keeps the resolution)."""
  return 1 if stage == 0 else 2


def stage_features(stage: int, width: int) -> int:
  """Channels of ``stage``: ``16 * width * 2**stage`` (160 / 320 / 640 for width 10)."""
  return STEM_FEATURES * width * 2**stage


class _WideBase(nn.Module):
  """Fields and parts shared by :class:`WideResNet` and :class:`MIMOConv`."""

  num_classes: int
  stage_sizes: tuple[int, ...] = (4, 4, 4)
  width: int = 10
  initial_width: int = 1
  activation: str = "relu"
  layout: str = "standard"
  bn_eval_batch_stats: bool = False
  isometry_gamma: float = 0.0
  phase: Phase = Phase()

  def _check(self, inputs):
    if inputs.ndim != 4:
      raise ValueError(f"inputs must be NHWC images (B, H, W, C), got shape {inputs.shape}")

  def _norm_mode(self, train: bool) -> dict:
    use_batch = train or self.bn_eval_batch_stats
    return dict(use_batch_stats=use_batch, update_stats=train)

  def _stem(self, inputs, norm):
    """conv3x3 (C_in -> 16 * initial_width, no bias) on every image, then BN -> ReLU in the
    official layout (the standard WRN leaves both to the first block's pre-activation)."""
    x = conv3x3(STEM_FEATURES * self.initial_width, name="stem_conv")(inputs)
    if self.layout == "standard":
      return x
    x = BatchNorm(name="stem_bn")(x, **norm)
    return Activation("relu", name="stem_act")(x)

  def _trunk(self, x, norm):
    """Residual stages (``stage{s}_block{b}``) and, in the standard layout, final BN + act."""
    for s, blocks in enumerate(self.stage_sizes):
      for b in range(blocks):
        x = BasicBlock(stage_features(s, self.width), stage_stride(s) if b == 0 else 1,
                       self.activation, self.layout, name=f"stage{s}_block{b}")(x, **norm)
    if self.layout == "standard":
      x = Activation(self.activation, name="final_act")(BatchNorm(name="final_bn")(x, **norm))
    return x

  def _classifier(self, features):
    """Shared linear classifier, PyTorch ``nn.Linear`` default init."""
    fan_in = features.shape[-1]
    return nn.Dense(self.num_classes,
                    kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
                    bias_init=torch_bias_init(fan_in), name="classifier")(features)

  @nn.nowrap
  def isometry_include(self, path: str) -> int | None:
    """Stride of the block / shortcut conv kernel at ``path`` (a '/'-joined params path),
    or None for every other leaf: the selection of ``ops.isometry_penalty`` (official
    ``isometry_regularization``, ``MIMOConv/src/models/superwideisonet.py``)."""
    match = _BLOCK_CONV.fullmatch(path)
    if match is None:
      return None
    stage, block, conv = int(match[1]), int(match[2]), match[3]
    return stage_stride(stage) if block == 0 and conv != "conv2" else 1

  @nn.nowrap
  def regularizers(self, params, model_state=None) -> dict:
    """Unweighted regularisers: ``{"isometry": ...}`` (App. B.2, gamma = 1)."""
    del model_state
    return {"isometry": ops.isometry_penalty(params, self.isometry_include)}

  @nn.nowrap
  def regularization_loss(self, params, model_state=None):
    """``isometry_gamma * isometry`` (0 without computing anything when gamma = 0)."""
    del model_state
    if not self.isometry_gamma:
      return jnp.zeros((), jnp.float32)
    return self.isometry_gamma * ops.isometry_penalty(params, self.isometry_include)


class WideResNet(_WideBase):
  """WRN-depth-width (and WideIsoNet with ``isometry_gamma > 0``); see the module doc."""

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    self._check(inputs)
    norm = self._norm_mode(train)
    x = self._trunk(self._stem(inputs, norm), norm)
    return self._classifier(jnp.mean(x, axis=(1, 2)))


class MIMOConv(_WideBase):
  """MIMOConv with N = ``num_channels`` superposition channels; see the module doc.

  ``inputs_per_pass`` n (call argument, else ``phase.inputs_per_pass``; None = N) selects
  dynamic inference: n images share a pass, each fills N/n channels, and the N/n replica
  outputs are averaged. n must divide N, and the batch must divide by n.
  ``model.clone(phase=Phase(inputs_per_pass=1))`` is the slow mode of dynamic training.
  ``valid`` (B,) bool, optional: an input marked False (a filler of a partly filled group)
  has its stem features zeroed before binding, so it adds nothing to the superposition and
  the real inputs' outputs do not depend on it (``mimojax.inference.Predictor``).
  """

  num_channels: int = 1
  key_init: str = "uniform"
  trainable_keys: bool = True
  unbind_bias_relu: bool = True
  key_mu: float = 0.1

  @nn.nowrap
  def resolve_inputs_per_pass(self, inputs_per_pass: int | None = None) -> int:
    """The n in use: the call argument, else the phase's, else N; ValueError unless n | N."""
    n = inputs_per_pass if inputs_per_pass is not None else self.phase.inputs_per_pass
    n = self.num_channels if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or self.num_channels % n:
      raise ValueError(f"inputs_per_pass must be a positive divisor of mimo.n = "
                       f"{self.num_channels}, got {n!r}")
    return n

  @nn.compact
  def __call__(self, inputs, *, train: bool, inputs_per_pass: int | None = None,
               valid=None):
    self._check(inputs)
    n = self.resolve_inputs_per_pass(inputs_per_pass)
    if inputs.shape[0] % n:
      raise ValueError(f"batch size {inputs.shape[0]} is not divisible by inputs_per_pass = {n}")
    norm = self._norm_mode(train)
    x = self._stem(inputs, norm)  # every image separately: (B, H, W, C0)
    if valid is not None:
      x = x * valid.astype(x.dtype)[:, None, None, None]
    x = ops.assign_channels(x, self.num_channels, n)  # (B/n, N, H, W, C0)
    x = PWHRRBind(self.num_channels, self.key_init, self.trainable_keys, name="bind")(x)
    x = ops.superpose(x, axis=1)  # (B/n, H, W, C0)
    x = self._trunk(x, norm)
    pooled = jnp.mean(x, axis=(1, 2))  # (B/n, D)
    unbound = MBATUnbind(self.num_channels, self.unbind_bias_relu, name="unbind")(pooled)
    features = ops.merge_replicas(unbound, self.num_channels, n)  # (B, D)
    return self._classifier(features)

  @nn.nowrap
  def regularizers(self, params, model_state=None) -> dict:
    """Unweighted ``{"isometry", "keys"}``; ``keys`` is Eq. 26 (mu = 1) of the binding keys
    wherever they live (params or frozen constants)."""
    keys = (params if self.trainable_keys else (model_state or {}).get("constants", {}))
    return {"isometry": ops.isometry_penalty(params, self.isometry_include),
            "keys": ops.key_orthonormality_penalty(keys["bind"]["keys"])}

  @nn.nowrap
  def regularization_loss(self, params, model_state=None):
    """``isometry_gamma * isometry + key_mu * keys`` (App. B.2, B.3). The key term is left
    out for frozen keys (it has no gradient); zero weights skip their computation."""
    total = super().regularization_loss(params, model_state)
    if self.key_mu and self.trainable_keys:
      total = total + self.key_mu * ops.key_orthonormality_penalty(params["bind"]["keys"])
    return total


# ---------------------------------------------------------------------------------------
# Constructors (MODELS entries): a validated config (``mimojax.train.config.Config``) and
# the data's ImageDataInfo -> module. None in a model field means the model's default.


def _common_fields(config, info, *, activation: str, layout: str, initial_width: int,
                   isometry_gamma: float) -> dict:
  """Fields shared by every wide network, with the model's defaults for None."""
  model = config.model
  pick = lambda value, default: default if value is None else value
  return dict(
      num_classes=info.num_classes,
      stage_sizes=stage_sizes_for_depth(model.depth),
      width=model.width,
      initial_width=pick(model.initial_width, initial_width),
      activation=pick(model.activation, activation),
      layout=pick(model.layout, layout),
      bn_eval_batch_stats=model.bn_eval_batch_stats,
      isometry_gamma=pick(model.isometry_gamma, isometry_gamma))


# Each wide network's defaults for the None fields of config.model (the config boundary
# validates the resolved values).
DEFAULTS = {
    "wide_resnet": dict(activation="relu", layout="standard", initial_width=1,
                        isometry_gamma=0.0),
    # WideIsoNet (official ``WideISOReLUNet``): isometry gamma 1e-4 (App. E.5), kept > 0
    "wide_isonet": dict(activation="relu", layout="official", initial_width=1,
                        isometry_gamma=1e-4),
    # MIMOConv (official ``MIMONet``)
    "mimoconv": dict(activation="prelu", layout="official", initial_width=4,
                     isometry_gamma=1e-4),
}


def wide_resnet(config, info) -> WideResNet:
  """WRN-depth-width baseline: ReLU, ``"standard"`` layout, initial width 1, no isometry
  term (set ``model.layout="official"`` for the paper's WRN-28-10 row)."""
  return WideResNet(**_common_fields(config, info, **DEFAULTS["wide_resnet"]))


def wide_isonet(config, info) -> WideResNet:
  """WideIsoNet: ReLU, ``"official"`` layout, isometry regulariser gamma 1e-4 (App. E.5)."""
  return WideResNet(**_common_fields(config, info, **DEFAULTS["wide_isonet"]))


def mimoconv(config, info) -> MIMOConv:
  """MIMOConv: PReLU, ``"official"`` layout, initial width 4, isometry gamma 1e-4;
  ``mimo.n`` channels (N), ``mimo.inputs_per_pass`` (None = N), ``mimo.key_mu``, uniform
  trainable keys, unbinding with bias + ReLU."""
  model, mimo = config.model, config.mimo
  return MIMOConv(
      **_common_fields(config, info, **DEFAULTS["mimoconv"]),
      num_channels=mimo.n,
      phase=Phase(inputs_per_pass=mimo.inputs_per_pass),
      key_init=model.key_init,
      trainable_keys=model.trainable_keys,
      unbind_bias_relu=model.unbind_bias_relu,
      key_mu=mimo.key_mu)
