"""DataMUX's MNIST CNN / MLP (App. A.10-A.11): shapes, the muxes, N = 1 identities against a
plain network built from the module's own parameters, instance-swap equivariance, frozen vs
learned mux weights in a real train step, and one smoke run of the experiment."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import datamux_mnist
from mimojax.data.images import ImageDataInfo
from mimojax.models import build_model
from mimojax.models.datamux_vision import DataMuxCNN
from mimojax.models.datamux_vision import DataMuxMLP
from mimojax.models.datamux_vision import NonlinearMux
from mimojax.train import config as config_lib
from mimojax.train import loop
from mimojax.train import step

RNGS = {"params": jax.random.key(1), "constants": jax.random.key(2)}
INFO = ImageDataInfo(vocab_size=0, num_classes=10, seq_len=0, task_type="classification",
                     num_examples=100, image_shape=(20, 20, 1))


def images(b, seed=0):
  return jax.random.uniform(jax.random.key(seed), (b, 20, 20, 1))


def conv(x, p):
  return jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]


def pool(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def dense(x, p):
  return x @ p["kernel"] + p["bias"]


def plain_lenet(params, x):
  """The notebook's LeNet (no mux, one demux head) written with the module's parameters."""
  x = pool(jnp.tanh(conv(x, params["conv1"])))
  x = pool(jnp.tanh(conv(x, params["conv2"])))
  x = jnp.tanh(conv(x, params["conv3"])).reshape(x.shape[0], -1)
  x = jnp.tanh(dense(x, params["hidden"]))
  demux = params["demux"]
  x = jnp.tanh(x @ demux["kernel"][0] + demux["bias"][0])
  return jnp.tanh(dense(x, params["readout"]))


def plain_mlp(params, x):
  x = jnp.tanh(dense(x.reshape(x.shape[0], -1), params["hidden"]))
  demux = params["demux"]
  x = jnp.tanh(x @ demux["kernel"][0] + demux["bias"][0])
  return jnp.tanh(dense(x, params["readout"]))


def test_cnn_activation_shapes_20_18_9_6_3_1():
  model = DataMuxCNN(num_instances=4, mux="nonlinear", mux_maps=8, learn_mux=True)
  x = images(8)
  variables = model.init(RNGS, x)
  out, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  inter = state["intermediates"]
  assert out.shape == (8, 10) and bool(jnp.all(jnp.abs(out) <= 1))
  assert inter["mux"]["__call__"][0].shape == (2, 20, 20, 8)
  assert inter["conv1"]["__call__"][0].shape == (2, 18, 18, 10)
  assert inter["pool1"][0].shape == (2, 9, 9, 10)
  assert inter["conv2"]["__call__"][0].shape == (2, 6, 6, 16)
  assert inter["pool2"][0].shape == (2, 3, 3, 16)
  assert inter["conv3"]["__call__"][0].shape == (2, 1, 1, 120)
  assert inter["hidden"]["__call__"][0].shape == (2, 84)
  assert inter["demux"]["__call__"][0].shape == (2, 4, 84)


@pytest.mark.parametrize("maps", [1, 4, 8])
def test_nonlinear_mux_output_and_kernels(maps):
  mux = NonlinearMux(num_instances=3, maps=maps)
  x = images(6).reshape(2, 3, 20, 20, 1)
  variables = mux.init(RNGS, x)
  assert mux.apply(variables, x).shape == (2, 20, 20, maps)
  params = variables["params"]
  assert params["conv1"]["kernel"].shape == (3, 3, 3, 1, 16)
  assert params["conv2"]["kernel"].shape == (3, 3, 3, 16, maps)
  assert abs(float(jnp.std(params["conv2"]["kernel"])) - 1.0) < 0.1  # N(0, 1)


def with_mux(variables, collection, path, value):
  out = jax.tree.map(lambda a: a, variables)
  node = out[collection]
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value
  return out


@pytest.mark.parametrize("mux", ["ortho", "kernel"])
def test_cnn_n1_identity_mux_is_the_plain_lenet(mux):
  model = DataMuxCNN(num_instances=1, mux=mux)
  x = images(5)
  variables = model.init(RNGS, x)
  if mux == "kernel":
    delta = jnp.zeros((1, 3, 3, 1, 1)).at[0, 1, 1, 0, 0].set(1.0)
    variables = with_mux(variables, "constants", ("mux", "conv", "kernel"), delta)
  else:
    variables = with_mux(variables, "constants", ("mux", "weights"), jnp.eye(400)[None])
  np.testing.assert_allclose(model.apply(variables, x), plain_lenet(variables["params"], x),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mux", ["hadamard", "binary", "ortho"])
def test_mlp_n1_identity_mux_is_the_plain_mlp(mux):
  model = DataMuxMLP(num_instances=1, mux=mux)
  x = images(5)
  variables = model.init(RNGS, x)
  if mux in ("hadamard", "binary"):
    if mux == "binary":  # one chunk covering everything
      np.testing.assert_array_equal(variables["constants"]["mux"]["weights"], 1.0)
    variables = with_mux(variables, "constants", ("mux", "weights"), jnp.ones((1, 400)))
  else:
    variables = with_mux(variables, "constants", ("mux", "weights"), jnp.eye(400)[None])
  np.testing.assert_allclose(model.apply(variables, x), plain_mlp(variables["params"], x),
                             rtol=1e-5, atol=1e-6)


def swap_instances(tree, i, j):
  """Every leaf under "mux" / "demux" has the instance on its leading axis: swap i and j."""
  def swap(path, leaf):
    top = path[0].key if hasattr(path[0], "key") else None
    if top in ("mux", "demux"):
      order = np.arange(leaf.shape[0])
      order[[i, j]] = order[[j, i]]
      return leaf[order]
    return leaf
  return {k: jax.tree_util.tree_map_with_path(swap, v) for k, v in tree.items()}


@pytest.mark.parametrize("model", [
    DataMuxCNN(num_instances=4, mux="nonlinear", mux_maps=4, learn_mux=True),
    DataMuxCNN(num_instances=4, mux="kernel"), DataMuxMLP(num_instances=4, mux="hadamard"),
    DataMuxMLP(num_instances=4, mux="low_rank")],
    ids=["cnn-nonlinear", "cnn-kernel", "mlp-hadamard", "mlp-low_rank"])
def test_swapping_instances_with_their_mux_and_demux_swaps_outputs(model):
  x = images(8)
  variables = model.init(RNGS, x)
  out = model.apply(variables, x)
  order = np.arange(8).reshape(2, 4)
  order[:, [1, 3]] = order[:, [3, 1]]
  swapped_x = x[order.reshape(-1)]
  swapped = model.apply(swap_instances(variables, 1, 3), swapped_x)
  np.testing.assert_allclose(swapped, out[order.reshape(-1)], rtol=1e-5, atol=1e-6)
  # swapping only the images changes the outputs (the instance slots are not symmetric)
  assert not np.allclose(model.apply(variables, swapped_x), out[order.reshape(-1)], atol=1e-4)


def test_batch_not_divisible_by_n_raises():
  model = DataMuxCNN(num_instances=4, mux="kernel")
  with pytest.raises(ValueError, match="batch size 6 is not divisible by the 4 instances"):
    model.init(RNGS, images(6))
  with pytest.raises(ValueError, match="batch size 3 is not divisible by the 2 instances"):
    DataMuxMLP(num_instances=2).init(RNGS, images(3))


def train_once(model, x, labels):
  tx = optax.sgd(0.5)
  state = step.init_state(model, tx, jax.random.key(0), {"inputs": x, "label": labels})
  train_step = jax.jit(step.make_train_step(model, tx, "classification", loss="mse"))
  new, metrics = train_step(state, {"inputs": x, "label": labels}, jax.random.key(3))
  assert math.isfinite(float(metrics["loss"])) and float(metrics["skipped"]) == 0
  return state, new


def test_frozen_mux_gets_no_update_and_learned_mux_does():
  x, labels = images(8), jnp.arange(8) % 10
  frozen = DataMuxCNN(num_instances=2, mux="kernel")
  before, after = train_once(frozen, x, labels)
  assert "mux" not in before.params and "mux" in before.model_state["constants"]
  jax.tree.map(np.testing.assert_array_equal, after.model_state["constants"],
               before.model_state["constants"])
  changed = lambda a, b: not np.array_equal(a, b)
  assert changed(after.params["conv1"]["kernel"], before.params["conv1"]["kernel"])
  assert changed(after.params["demux"]["kernel"], before.params["demux"]["kernel"])
  learned = frozen.clone(learn_mux=True)
  before, after = train_once(learned, x, labels)
  assert "constants" not in before.model_state
  assert all(jax.tree.leaves(jax.tree.map(changed, after.params["mux"], before.params["mux"])))


@pytest.mark.parametrize("arg, name, n", [("n=4,mux=kernel,learn", "datamux_cnn", 4),
                                          ("model=mlp,n=2,mux=hadamard", "datamux_mlp", 2)])
def test_constructors_follow_the_config(arg, name, n):
  config = config_lib.from_dict(datamux_mnist.get_config(arg))
  model = build_model(config, INFO)
  assert config.model.name == name and model.num_instances == n
  assert model.learn_mux == ("learn" in arg) and model.mux == config.mimo.mux


def test_experiment_smoke_run_writes_metrics(tmp_path):
  config = datamux_mnist.get_config("n=2,mux=nonlinear,maps=4,smoke")
  state = loop.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train = [r for r in rows if r["split"] == "train"]
  test = [r for r in rows if r["split"] == "test"]
  assert [r["step"] for r in train] == [3, 6] and [r["step"] for r in test] == [3, 6]
  assert all(math.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in train + test)
  assert int(np.asarray(state.step)[0]) == 6
