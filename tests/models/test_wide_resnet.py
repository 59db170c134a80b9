"""WideResNet / WideIsoNet / MIMOConv: shapes, parameter counts, dynamic inference, BN modes,
binding/unbinding layout, regularisers and config validation. Official code:
IBM/multiple-input-multiple-output-nets, ``MIMOConv/src``.

The big WRN-28-10 networks are only traced with ``jax.eval_shape``; behaviour tests run small
widths with parameters drawn by numpy into the ``eval_shape`` structure (no jax init compile).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax import ops
from mimojax.configs.base import base_config
from mimojax.data import DataInfo
from mimojax.models import MODELS
from mimojax.models import Phase
from mimojax.models.wide_resnet import MIMOConv
from mimojax.models.wide_resnet import WideResNet
from mimojax.nn import conv
from mimojax.train import config as config_lib

RNGS = {"params": jax.random.key(0), "constants": jax.random.key(1)}


def abstract_variables(model, shape, **kwargs):
  return jax.eval_shape(
      lambda x: model.init(RNGS, x, train=False, **kwargs),
      jax.ShapeDtypeStruct(shape, jnp.float32))


def num_params(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def random_variables(model, shape, seed=0, **kwargs):
  """Variables of ``model`` with the init structure, values drawn by numpy."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    if name.endswith("var"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    elif name.endswith("scale"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    elif name.endswith(("slope",)):
      value = rng.uniform(0.0, 1.0, leaf.shape)
    elif leaf.ndim >= 2:
      value = rng.normal(0, 1 / math.sqrt(math.prod(leaf.shape[:-1])), leaf.shape)
    else:
      value = rng.normal(0, 0.1, leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, shape, **kwargs))


def small_mimoconv(**kwargs):
  fields = dict(num_classes=7, num_channels=4, stage_sizes=(1, 1), width=1, initial_width=1,
                activation="prelu", layout="official")
  fields.update(kwargs)
  return MIMOConv(**fields)


def cifar100_mimoconv(n):
  return MIMOConv(num_classes=100, num_channels=n, width=10, initial_width=4,
                     activation="prelu", layout="official")


# ---------------------------------------------------------------------------------------
# Parameter counts and shapes of the paper-sized networks (eval_shape only).


def test_mimoconv_28_10_parameter_count_matches_official():
  # Official count incl. the 12 unused skipInit alphas (one per block): 37,034,864 at N=1
  # and 38,265,776 at N=4 (``SuperWideISONet``, ``MIMOConv/src/models/superwideisonet.py``);
  # mimojax has no alphas.
  assert num_params(abstract_variables(cifar100_mimoconv(1), (1, 32, 32, 3))["params"]) == \
      37_034_864 - 12
  assert num_params(abstract_variables(cifar100_mimoconv(4), (4, 32, 32, 3))["params"]) == \
      38_265_776 - 12


def expected_wrn_params(depth, width, classes, layout, c_in=3, initial_width=1):
  """Closed-form parameter count of a WRN (convs + BN scale/bias + classifier)."""
  blocks = (depth - 4) // 6
  stem = 16 * initial_width
  total = 9 * c_in * stem + (2 * stem if layout == "official" else 0)
  c = stem
  for s in range(3):
    f = 16 * width * 2**s
    for b in range(blocks):
      total += 2 * c + 9 * c * f + 2 * f + 9 * f * f  # bn1, conv1, bn2, conv2
      if c != f or (s > 0 and b == 0):
        total += c * f + (2 * f if layout == "official" else 0)
      c = f
  if layout == "standard":
    total += 2 * c
  return total + c * classes + classes


@pytest.mark.parametrize("layout", ["standard", "official"])
def test_wrn_28_10_parameter_count(layout):
  model = WideResNet(num_classes=100, layout=layout)
  count = num_params(abstract_variables(model, (2, 32, 32, 3))["params"])
  assert count == expected_wrn_params(28, 10, 100, layout)
  if layout == "standard":  # the well-known WRN-28-10 sizes: 36,479,194 on CIFAR-10
    assert count - (640 * 90 + 90) == 36_479_194


def test_mimoconv_28_10_intermediate_shapes():
  """The official layout at batch 4N: stem per image, bound (4, 32, 32, 64), pooled (4, 640),
  unbinding (4, N, 640), logits (4N, 100)."""
  n = 4
  model = cifar100_mimoconv(n)
  seen = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    name = "/".join(context.module.path)
    if name in ("stem_conv", "bind", "unbind", "classifier"):
      seen[name] = (args[0].shape, out.shape)
    return out

  import flax.linen as nn
  with nn.intercept_methods(record):
    out = jax.eval_shape(lambda x: model.init_with_output(RNGS, x, train=False)[0],
                         jax.ShapeDtypeStruct((4 * n, 32, 32, 3), jnp.float32))
  assert out.shape == (4 * n, 100)
  assert seen["stem_conv"] == ((16, 32, 32, 3), (16, 32, 32, 64))
  assert seen["bind"] == ((4, n, 32, 32, 64), (4, n, 32, 32, 64))
  assert seen["unbind"] == ((4, 640), (4, n, 640))
  assert seen["classifier"] == ((16, 640), (16, 100))


# ---------------------------------------------------------------------------------------
# Dynamic inference (official ``SuperWideResnet.forward``, ``validate_dynamic.py``).


class Jitted:
  """``model.apply`` jitted per (train, inputs_per_pass); exposes ``clone`` of the model."""

  def __init__(self, model):
    self.module = model
    self.apply = jax.jit(model.apply, static_argnames=("train", "inputs_per_pass", "mutable"))

  def clone(self, **fields):
    return Jitted(self.module.clone(**fields))

  def __getattr__(self, name):
    return getattr(self.module, name)


@pytest.fixture(scope="module")
def small():
  model = small_mimoconv()
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 8, 8, 3)), jnp.float32)
  return Jitted(model), random_variables(model, (4, 8, 8, 3)), x


def test_slow_mode_is_mean_of_fast_mode_on_replicated_batch(small):
  model, variables, x = small
  slow = model.apply(variables, x, train=False, inputs_per_pass=1)
  fast = model.apply(variables, jnp.repeat(x, 4, axis=0), train=False)  # [x1 x1 x1 x1 x2 ...]
  np.testing.assert_allclose(slow, fast.reshape(4, 4, -1).mean(axis=1), rtol=1e-5, atol=1e-6)


def test_normal_mode_channels_hold_input_k_mod_n(small):
  """n = 2 puts image k mod 2 in channel k: [x1, x2] in normal mode is the fast-mode group
  [x1, x2, x1, x2], and each output averages its two replicas."""
  model, variables, x = small
  normal = model.apply(variables, x, train=False, inputs_per_pass=2)
  tiled = jnp.concatenate([x[0:2], x[0:2], x[2:4], x[2:4]])
  fast = model.apply(variables, tiled, train=False).reshape(2, 2, 2, -1)  # group, copy, i
  np.testing.assert_allclose(normal.reshape(2, 2, -1), fast.mean(axis=1), rtol=1e-5,
                             atol=1e-6)


def test_full_inputs_per_pass_equals_static_model(small):
  model, variables, x = small
  static = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(static, model.apply(variables, x, train=False, inputs_per_pass=4))
  slow_field = model.clone(phase=Phase(inputs_per_pass=1)).apply(variables, x, train=False)
  np.testing.assert_array_equal(slow_field, model.apply(variables, x, train=False,
                                                        inputs_per_pass=1))


def test_groups_are_isolated_in_inference(small):
  model, variables, x = small
  batch = jnp.concatenate([x, x[::-1]])  # two groups of N = 4
  base = model.apply(variables, batch, train=False)
  changed = model.apply(variables, batch.at[5].add(1.0), train=False)
  np.testing.assert_array_equal(base[:4], changed[:4])
  assert not np.allclose(base[4:], changed[4:])


def test_bad_inputs_per_pass_and_batch_raise(small):
  model, variables, x = small
  with pytest.raises(ValueError, match="inputs_per_pass"):
    model.apply(variables, x, train=False, inputs_per_pass=3)
  with pytest.raises(ValueError, match="batch size 6 is not divisible by inputs_per_pass = 4"):
    model.apply(variables, jnp.zeros((6, 8, 8, 3)), train=False)
  with pytest.raises(ValueError, match="NHWC"):
    model.apply(variables, jnp.zeros((4, 8, 8)), train=False)


# ---------------------------------------------------------------------------------------
# BatchNorm modes.


def test_batchnorm_modes_follow_torch():
  bn = conv.BatchNorm()
  x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 3, 5)), jnp.float32)
  variables = bn.init(jax.random.key(0), x, use_batch_stats=False, update_stats=False)
  y, updates = bn.apply(variables, x, use_batch_stats=True, update_stats=True,
                        mutable=["batch_stats"])
  xs = np.asarray(x).reshape(-1, 5)
  mean, var = xs.mean(0), xs.var(0)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * xs.var(0, ddof=1),
                             rtol=1e-5)
  # Batch statistics without updating need no mutable collection (official test time).
  np.testing.assert_allclose(bn.apply(variables, x, use_batch_stats=True, update_stats=False),
                             y, rtol=1e-6)
  np.testing.assert_allclose(bn.apply(variables, x, use_batch_stats=False, update_stats=False),
                             x / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_model_train_updates_stats_and_eval_batch_stats_option(small):
  model, variables, x = small
  logits, updates = model.apply(variables, x, train=True, mutable=("batch_stats",))
  assert logits.shape == (4, 7)
  before = variables["batch_stats"]["stage0_block0"]["bn1"]["mean"]
  assert not np.allclose(updates["batch_stats"]["stage0_block0"]["bn1"]["mean"], before)
  batch_eval = model.clone(bn_eval_batch_stats=True).apply(variables, x, train=False)
  np.testing.assert_allclose(batch_eval, logits, rtol=1e-5, atol=1e-6)
  assert not np.allclose(model.apply(variables, x, train=False), logits)


# ---------------------------------------------------------------------------------------
# Building blocks against explicit computations.


def test_activations():
  x = jnp.linspace(-3, 3, 12).reshape(2, 6)
  for kind, name, init in (("prelu", "slope", 0.5), ("srelu", "threshold", -1.0)):
    act = conv.Activation(kind)
    variables = act.init(jax.random.key(0), x)
    np.testing.assert_array_equal(variables["params"][name], np.full((6,), init))
  xs = np.asarray(x)
  np.testing.assert_allclose(conv.prelu(x, 0.5), np.where(xs > 0, xs, 0.5 * xs))
  np.testing.assert_allclose(conv.srelu(x, -1.0), np.maximum(xs, -1.0))
  np.testing.assert_allclose(conv.Activation("relu").apply({}, x), np.maximum(xs, 0))


def test_pwhrr_binds_each_channel_with_its_key_by_circular_convolution():
  n, c = 3, 6
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, n, 2, 2, c)).astype(np.float32)
  keys = rng.normal(size=(n, c)).astype(np.float32)
  out = conv.PWHRRBind(n).apply({"params": {"keys": keys}}, jnp.asarray(x))
  expected = np.zeros_like(x)
  for k in range(n):
    for i in range(c):
      for j in range(c):
        expected[:, k, :, :, i] += keys[k, j] * x[:, k, :, :, (i - j) % c]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_frozen_keys_live_in_constants():
  model = small_mimoconv(trainable_keys=False)
  variables = abstract_variables(model, (4, 8, 8, 3))
  assert variables["constants"]["bind"]["keys"].shape == (4, 16)
  assert "bind" not in variables["params"]
  trainable = abstract_variables(small_mimoconv(), (4, 8, 8, 3))
  assert trainable["params"]["bind"]["keys"].shape == (4, 16)
  assert "constants" not in trainable


def test_key_initialisers():
  keys = conv.key_initializer("uniform")(jax.random.key(0), (64, 64))
  assert float(jnp.max(jnp.abs(keys))) <= 1 / 8
  assert abs(float(jnp.var(keys)) - (1 / 8) ** 2 / 3) < 1e-3
  gauss = conv.key_initializer("gaussian")(jax.random.key(0), (64, 64))
  assert abs(float(jnp.var(gauss)) - 1 / 64) < 2e-3
  with pytest.raises(ValueError, match="key_init"):
    conv.key_initializer("orthogonal")


def test_mbat_unbinding_is_one_dense_holding_n_matrices():
  n, d = 3, 4
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, d)).astype(np.float32)
  kernel = rng.normal(size=(d, n * d)).astype(np.float32)
  bias = rng.normal(size=(n * d,)).astype(np.float32)
  out = conv.MBATUnbind(n).apply({"params": {"kernel": kernel, "bias": bias}}, h)
  plain = conv.MBATUnbind(n, bias_relu=False).apply({"params": {"kernel": kernel}}, h)
  for k in range(n):
    block = h @ kernel[:, k * d:(k + 1) * d]
    np.testing.assert_allclose(plain[:, k], block, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[:, k], np.maximum(block + bias[k * d:(k + 1) * d], 0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["official", "standard"])
def test_projection_shortcut_layouts(layout):
  """Official: BN(conv1x1(x)) on the raw input; standard: conv1x1(act(BN(x)))."""
  block = conv.BasicBlock(6, stride=2, layout=layout)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.float32)
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), x, use_batch_stats=False,
                                             update_stats=False))
  rng = np.random.default_rng(1)
  variables = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), jnp.float32),
                           shapes)
  y = block.apply(variables, x, use_batch_stats=False, update_stats=False)
  zero_conv2 = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.zeros_like(v) if "conv2" in jax.tree_util.keystr(p) else v, variables)
  shortcut = np.asarray(block.apply(zero_conv2, x, use_batch_stats=False, update_stats=False))
  p = variables["params"]
  s = variables["batch_stats"]

  def bn(v, name):
    return (v - s[name]["mean"]) / np.sqrt(s[name]["var"] + 1e-5) * p[name]["scale"] + \
        p[name]["bias"]

  w = np.asarray(p["shortcut_conv"]["kernel"][0, 0])
  source = np.asarray(x) if layout == "official" else np.maximum(bn(np.asarray(x), "bn1"), 0)
  expected = source[:, ::2, ::2] @ w
  if layout == "official":
    expected = bn(expected, "shortcut_bn")
  np.testing.assert_allclose(shortcut, expected, rtol=1e-5, atol=1e-5)
  assert y.shape == (2, 2, 2, 6)


# ---------------------------------------------------------------------------------------
# Regularisers.


def test_isometry_selection_of_wrn_28_10():
  model = WideResNet(num_classes=10, layout="official")
  params = abstract_variables(model, (1, 32, 32, 3))["params"]
  selected = {}
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    stride = model.isometry_include(name)
    if stride is not None:
      selected[name] = stride
  assert len(selected) == 12 * 2 + 3  # block convs + 3 projection shortcuts, no stem
  strided = {k for k, v in selected.items() if v == 2}
  assert strided == {f"stage{s}_block0/{c}/kernel" for s in (1, 2)
                     for c in ("conv1", "shortcut_conv")}
  assert "stage0_block0/shortcut_conv/kernel" in selected


def test_regularizers_against_explicit_sums(small):
  model, variables, _ = small
  model = model.module.clone(isometry_gamma=1e-4, key_mu=0.1)
  params = variables["params"]
  terms = jax.jit(model.regularizers)(params, variables)

  @jax.jit
  def explicit_sum(params):  # the selection written out by hand
    total = 0.0
    for stage in range(2):
      block = params[f"stage{stage}_block0"]
      stride = 1 if stage == 0 else 2
      total += ops.conv_isometry_penalty(block["conv1"]["kernel"], stride)
      total += ops.conv_isometry_penalty(block["conv2"]["kernel"], 1)
      if "shortcut_conv" in block:
        total += ops.conv_isometry_penalty(block["shortcut_conv"]["kernel"], stride)
    return total

  np.testing.assert_allclose(terms["isometry"], explicit_sum(params), rtol=1e-6)
  np.testing.assert_allclose(terms["keys"],
                             ops.key_orthonormality_penalty(params["bind"]["keys"]), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(model.regularization_loss)(params, variables),
                             1e-4 * terms["isometry"] + 0.1 * terms["keys"], rtol=1e-6)
  assert float(model.clone(isometry_gamma=0.0, key_mu=0.0).regularization_loss(params)) == 0.0


# ---------------------------------------------------------------------------------------
# Constructors.


def make_config(name="mimoconv", n=4, **model_fields):
  """The plain dict of a study's config (as a config.json holds it) with these fields."""
  config = base_config()
  config.mimo.n = n
  config.train.num_steps = 1
  values = config.to_dict()
  values["model"].update({"name": name, **model_fields})
  return values


def build(config, info):
  """The network of a config dict, read and checked at the config boundary as a run does."""
  typed = config_lib.from_dict(config)
  config_lib.check_data(typed, info)
  return MODELS[typed.model.name](typed, info)


INFO = DataInfo(vocab_size=0, num_classes=10, seq_len=0, task_type="classification",
                num_examples=1)


def test_constructors_apply_model_defaults():
  mimo = build(make_config(), INFO)
  assert (mimo.num_channels, mimo.activation, mimo.layout, mimo.initial_width) == \
      (4, "prelu", "official", 4)
  assert (mimo.isometry_gamma, mimo.key_mu, mimo.stage_sizes) == (1e-4, 0.1, (4, 4, 4))
  wrn = build(make_config("wide_resnet", n=1, depth=16, width=2), INFO)
  assert (wrn.activation, wrn.layout, wrn.isometry_gamma, wrn.stage_sizes) == \
      ("relu", "standard", 0.0, (2, 2, 2))
  iso = build(make_config("wide_isonet", n=1), INFO)
  assert (iso.layout, iso.isometry_gamma) == ("official", 1e-4)
  mnist = build(make_config(depth=10, width=1, initial_width=1), INFO)
  assert (mnist.stage_sizes, mnist.width, mnist.initial_width) == ((1, 1, 1), 1, 1)


@pytest.mark.parametrize("fields, match", [
    (dict(depth=27), "model.depth"),
    (dict(activation="gelu"), "model.activation"),
    (dict(layout="resnet"), "model.layout"),
    (dict(key_init="ortho"), "model.key_init"),
    (dict(width=0), "model.width"),
    (dict(trainable_keys="yes"), "model.trainable_keys"),
    (dict(isometry_gamma=-1.0), "model.isometry_gamma"),
])
def test_constructor_rejects_bad_fields(fields, match):
  with pytest.raises(ValueError, match=match):
    build(make_config(**fields), INFO)


def test_constructor_rejects_bad_mimo_and_task():
  config = make_config()
  config["mimo"]["inputs_per_pass"] = 3
  with pytest.raises(ValueError, match="inputs_per_pass"):
    build(config, INFO)
  with pytest.raises(ValueError, match="mimo.n"):
    build(make_config(n=0), INFO)
  lm = DataInfo(vocab_size=20, num_classes=20, seq_len=8, task_type="lm", num_examples=1)
  with pytest.raises(ValueError, match="classification"):
    build(make_config("wide_resnet", n=1), lm)
  with pytest.raises(ValueError, match="wide_isonet"):
    build(make_config("wide_isonet", n=1, isometry_gamma=0.0), INFO)
