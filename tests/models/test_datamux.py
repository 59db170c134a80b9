"""DataMUX Transformer: the mux at N = 1, row order, instance-slot symmetry of the MLP demux,
frozen and learned mux weights under a real train step, the retrieval warm-up phase,
padding masks, causality of the LM head, and its config rules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mimojax.configs.base import base_config
from mimojax.data import DataInfo
from mimojax.models import Phase
from mimojax.models import build_model
from mimojax.train import config as config_lib
from mimojax.train import step as step_lib

VOCAB, CLASSES, L = 13, 4, 9


Info = functools.partial(DataInfo, num_examples=100)


def _config(head="classifier", n=2, **mimo):
  c = base_config()
  c.model.update(dict(name="datamux", head=head, num_layers=2, num_heads=2, head_dim=4,
                      embed_dim=8, mlp_dim=16, max_len=16, dropout=0.0))
  c.mimo.update(dict(n=n, **mimo))
  c.train.num_steps = 1
  c.train.batch_size = c.eval.batch_size = 12 * n
  return c


def _model(config, head="classifier"):
  info = Info(VOCAB, VOCAB if head == "lm" else CLASSES, L,
              "lm" if head == "lm" else "classification")
  typed = config_lib.from_dict(config)
  config_lib.check_data(typed, info)
  return build_model(typed, info)


def _ids(rng, rows, low=1):
  return jax.random.randint(rng, (rows, L), low, VOCAB)


def _init(model, ids):
  keys = {"params": jax.random.key(1), "constants": jax.random.key(2),
          "dropout": jax.random.key(3)}
  return model.init(keys, ids, train=False)


def test_one_instance_with_unit_vectors_leaves_the_embeddings_unmuxed():
  model = _model(_config(n=1))
  ids = _ids(jax.random.key(0), 3)
  variables = _init(model, ids)
  variables = {**variables, "constants": {"mux": {"weights": jnp.ones((1, 8))}}}
  _, inter = model.apply(variables, ids, train=False, capture_intermediates=True)
  embedded = inter["intermediates"]["embed"]["__call__"][0]
  muxed = inter["intermediates"]["mux"]["__call__"][0]
  np.testing.assert_array_equal(muxed, embedded)


@pytest.mark.parametrize("head,demux", [("classifier", "index"), ("classifier", "mlp"),
                                        ("lm", "index"), ("lm", "mlp")])
def test_outputs_follow_the_groups_of_the_input_rows(head, demux):
  """Swapping two whole groups swaps their output rows; a group's rows depend only on it."""
  model = _model(_config(head=head, n=2, demux=demux), head)
  ids = _ids(jax.random.key(0), 6)
  variables = _init(model, ids)
  out = model.apply(variables, ids, train=False)
  assert out.shape[0] == 6 and (out.shape[1:] == (CLASSES,) if head == "classifier"
                                else out.shape[1:] == (L, VOCAB))
  order = jnp.array([4, 5, 2, 3, 0, 1])
  np.testing.assert_allclose(model.apply(variables, ids[order], train=False), out[order],
                             rtol=1e-5, atol=1e-5)


def test_mlp_demux_swapping_instances_with_their_vectors_and_heads_swaps_outputs():
  model = _model(_config(n=3, demux="mlp"))
  ids = _ids(jax.random.key(0), 6)
  variables = _init(model, ids)
  out = np.asarray(model.apply(variables, ids, train=False)).reshape(2, 3, CLASSES)
  perm = jnp.array([2, 0, 1])
  swap = lambda a: a[perm]
  swapped = {
      "params": {**variables["params"],
                 "demux": jax.tree.map(swap, variables["params"]["demux"])},
      "constants": jax.tree.map(swap, variables["constants"])}
  ids_swapped = ids.reshape(2, 3, L)[:, perm].reshape(6, L)
  got = np.asarray(model.apply(swapped, ids_swapped, train=False)).reshape(2, 3, CLASSES)
  np.testing.assert_allclose(got, out[:, perm], rtol=1e-5, atol=1e-5)
  plain = np.asarray(model.apply(variables, ids_swapped, train=False)).reshape(2, 3, CLASSES)
  assert not np.allclose(plain, out[:, perm], atol=1e-4)


def _train_once(model, ids, labels, phase, learning_rate=0.5):
  model = model.clone(phase=phase)
  tx = optax.sgd(learning_rate)
  state = step_lib.init_state(model, tx, jax.random.key(0), {"inputs": ids})
  train_step = step_lib.make_train_step(model, tx, "classification",
                                        task_weight=phase.task_weight)
  new, metrics = jax.jit(train_step)(state, {"inputs": ids, "label": labels},
                                     jax.random.key(1))
  return state, new, metrics


@pytest.mark.parametrize("learn", [False, True])
def test_frozen_mux_weights_get_no_update_and_learned_ones_do(learn):
  model = _model(_config(n=2, mux="hadamard", learn_mux=learn))
  ids = _ids(jax.random.key(0), 4)
  state, new, _ = _train_once(model, ids, jnp.arange(4) % CLASSES, Phase())
  if learn:
    assert "constants" not in state.model_state
    assert not np.allclose(new.params["mux"]["weights"], state.params["mux"]["weights"])
  else:
    assert "mux" not in state.params
    np.testing.assert_array_equal(new.model_state["constants"]["mux"]["weights"],
                                  state.model_state["constants"]["mux"]["weights"])


def test_warm_up_trains_retrieval_only_and_fine_tuning_both():
  model = _model(_config(n=2, retrieval_fraction=0.5, task_weight=0.9, retrieval_weight=0.1))
  ids = _ids(jax.random.key(0), 4)
  labels = jnp.arange(4) % CLASSES
  warm = Phase(task_weight=0.0, retrieval_weight=1.0)
  state, new, metrics = _train_once(model, ids, labels, warm)
  assert float(metrics["retrieval"]) > 0
  for name in ("classifier_hidden", "classifier_out"):  # the task head gets no gradient
    jax.tree.map(np.testing.assert_array_equal, new.params[name], state.params[name])
  assert not np.allclose(new.params["retrieval_out"]["kernel"],
                         state.params["retrieval_out"]["kernel"])
  state, new, metrics = _train_once(model, ids, labels, Phase(task_weight=0.9,
                                                              retrieval_weight=0.1))
  assert not np.allclose(new.params["classifier_out"]["kernel"],
                         state.params["classifier_out"]["kernel"])
  assert not np.allclose(new.params["retrieval_out"]["kernel"],
                         state.params["retrieval_out"]["kernel"])


def test_retrieval_loss_is_near_log_vocab_at_init_and_not_sown_without_weight():
  model = _model(_config(n=2, retrieval_weight=0.1))
  ids = _ids(jax.random.key(0), 8)
  variables = _init(model, ids)
  rngs = {"dropout": jax.random.key(5)}
  _, sown = model.clone(phase=Phase(task_weight=0.0, retrieval_weight=1.0)).apply(
      variables, ids, train=True, rngs=rngs, mutable=["losses"])
  assert abs(float(sown["losses"]["retrieval"][0]) - np.log(VOCAB)) < 1.0
  _, sown = model.clone(phase=Phase()).apply(variables, ids, train=True, rngs=rngs,
                                             mutable=["losses"])
  assert "losses" not in sown or not sown["losses"]


@pytest.mark.parametrize("mask", [True, False])
def test_masked_padding_leaves_outputs_unchanged(mask):
  c = _config(n=2)
  c.model.mask_padding = mask
  model = _model(c)
  ids = _ids(jax.random.key(0), 4)
  padded = jnp.concatenate([ids[:, :6], jnp.zeros((4, 3), ids.dtype)], axis=1)
  variables = _init(model, ids)
  short = model.apply(variables, ids[:, :6], train=False)
  long = model.apply(variables, padded, train=False)
  assert np.allclose(short, long, atol=1e-5) == mask


def test_lm_head_is_causal_for_every_instance():
  model = _model(_config(head="lm", n=2), "lm")
  ids = _ids(jax.random.key(0), 4)
  variables = _init(model, ids)
  out = model.apply(variables, ids, train=False)
  changed = ids.at[:, 5:].set(1 + ids[:, 5:] % (VOCAB - 1))
  out2 = model.apply(variables, changed, train=False)
  np.testing.assert_allclose(out2[:, :5], out[:, :5], rtol=1e-5, atol=1e-5)
  assert not np.allclose(out2[:, 5:], out[:, 5:])


def test_partial_group_raises():
  model = _model(_config(n=2))
  with pytest.raises(ValueError, match="divisible"):
    _init(model, _ids(jax.random.key(0), 3))


@pytest.mark.parametrize("field,value,match", [
    ("mimo.mux", "kernel", "mimo.mux"),
    ("mimo.demux", "keys", "mimo.demux"),
    ("mimo.m", 2, "mimo.m"),
    ("model.attention", "favor", "model.attention"),
    ("model.norm_position", "middle", "model.norm_position"),
    ("mimo.mux_norm", 0.0, "mimo.mux_norm"),
    ("model.head", "dual", "model.head"),
])
def test_config_rules(field, value, match):
  c = _config()
  group, name = field.split(".")
  c[group][name] = value
  with pytest.raises(ValueError, match=match):
    config_lib.from_dict(c)


def test_retrieval_fields_need_datamux_and_mask_needs_a_classifier():
  c = base_config()
  c.train.num_steps = 1
  c.mimo.retrieval_weight = 0.1
  with pytest.raises(ValueError, match="mimo.retrieval_weight"):
    config_lib.from_dict(c)
  c = _config(head="lm")
  c.model.mask_padding = True
  with pytest.raises(ValueError, match="model.mask_padding"):
    config_lib.from_dict(c)


def test_max_len_must_hold_the_prefix():
  c = _config(n=4)
  c.model.max_len = L + 4
  typed = config_lib.from_dict(c)
  with pytest.raises(ValueError, match="demux prefix"):
    config_lib.check_data(typed, Info(VOCAB, CLASSES, L, "classification"))
