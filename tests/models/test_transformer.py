"""Transformer network: heads x attentions x variants, att.+MLP unbinding, group isolation,
the warm-up sub-grid phase (App. F.1), causality, pooling, and the config rules of the
transformer family (checked at the config boundary)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.configs.base import base_config
from mimojax.models import MODELS
from mimojax.models import Phase
from mimojax.models import build_model
from mimojax.models.transformer import Encoder
from mimojax.models.transformer import pool
from mimojax.nn.blocks import bundle_skip
from mimojax.nn.blocks import retrieve
from mimojax.train import config as config_lib

VOCAB, CLASSES, L = 11, 3, 10


@dataclasses.dataclass(frozen=True)
class Info:
  """Stand-in for mimojax.data.DataInfo (same fields)."""
  vocab_size: int
  num_classes: int
  seq_len: int
  task_type: str
  num_examples: int = 100


TASKS = {"classifier": "classification", "dual": "dual", "lm": "lm"}


def _config(head="classifier", attention="favor_s", kernel="relu", variant="att", m=2, n=2,
            curriculum_fraction=0.0, **model):
  c = base_config()
  c.model.update(dict(head=head, attention=attention, kernel=kernel, num_features=16,
                      num_layers=1, num_heads=2, head_dim=8, embed_dim=16, mlp_dim=16,
                      max_len=16, classifier_dim=16, dropout=0.1))
  c.model.update(model)
  c.mimo.update(dict(m=m, n=n, variant=variant, curriculum_fraction=curriculum_fraction))
  c.train.num_steps = 1
  c.eval.batch_size = 32  # whole groups of every grid the tests use
  return c


def _build(config, info):
  """The model of a ConfigDict, read and checked at the config boundary as a run does."""
  typed = config_lib.from_dict(config)
  config_lib.check_data(typed, info)
  return build_model(typed, info)


def _model(config):
  head = config.model.head
  info = Info(VOCAB, VOCAB if head == "lm" else CLASSES, L, TASKS[head])
  return _build(config, info)


def _tokens(batch=8, seed=0, pad_from=None):
  x = np.random.RandomState(seed).randint(1, VOCAB, (batch, L))
  if pad_from is not None:  # varying lengths, id 0 = padding
    x = np.where(np.arange(L)[None, :] < np.asarray(pad_from)[:batch, None], x, 0)
  return jnp.asarray(x, jnp.int32)


RNGS = {"params": jax.random.key(1), "constants": jax.random.key(2)}


def _init(model, x, inputs2=None):
  # Eager on purpose: the tests share shapes, so op-by-op compiles are reused across tests.
  return model.init(RNGS, x, train=False, inputs2=inputs2)


def _apply(model, variables, x, inputs2=None, train=False):
  rngs = {"dropout": jax.random.key(3)} if train else None
  return model.apply(variables, x, train=train, inputs2=inputs2, rngs=rngs)


LENGTHS = [L, 7, 3, L, 5, 8, 2, 9]


@pytest.mark.parametrize("head", ["classifier", "dual", "lm"])
@pytest.mark.parametrize("attention,kernel,variant", [
    ("softmax", "relu", "att"), ("favor", "relu", "att"), ("favor", "exp", "att"),
    ("favor", "dpfp", "att"), ("favor_s", "relu", "att"), ("favor_s", "dpfp", "att"),
    ("favor_s", "relu", "att_mlp")])
def test_shapes_and_collections(head, attention, kernel, variant):
  """Traced only (eval_shape); the other tests execute each path."""
  model = _model(_config(head, attention, kernel, variant))
  x = _tokens(pad_from=None if head == "lm" else LENGTHS)
  x2 = _tokens(seed=5, pad_from=LENGTHS[::-1]) if head == "dual" else None
  variables = jax.eval_shape(lambda x, x2: _init(model, x, x2), x, x2)
  with_constants = attention == "favor_s" or (attention == "favor" and kernel != "dpfp")
  assert set(variables) == ({"params", "constants"} if with_constants else {"params"})
  out = jax.eval_shape(lambda v, x, x2: _apply(model, v, x, x2, train=True), variables, x, x2)
  assert out.shape == ((8, L, VOCAB) if head == "lm" else (8, CLASSES))
  assert out.dtype == jnp.float32


def test_cls_pooling_prepends_token():
  model = _model(_config("classifier", pooling="cls"))
  x = _tokens(pad_from=LENGTHS)
  variables = _init(model, x)
  assert variables["params"]["encoder"]["embed"]["cls"].shape == (16,)
  assert _apply(model, variables, x).shape == (8, CLASSES)
  with pytest.raises(ValueError, match="model.max_len=10 must be >= 11"):
    _model(_config("classifier", pooling="cls", max_len=L))


def test_constants_are_not_params_and_keys_are_bipolar():
  model = _model(_config("classifier", variant="att_mlp", num_layers=2))
  variables = _init(model, _tokens())
  layer = variables["constants"]["encoder"]["layer_0"]
  assert layer["embedding_keys"].shape == (2, 2, 16)
  assert layer["attention"]["binding_keys"].shape == (2, 2, 8)
  assert layer["attention"]["projection"].shape == (16, 8)
  for keys in (layer["embedding_keys"], layer["attention"]["binding_keys"]):
    assert set(np.unique(keys)) <= {-1.0, 1.0}
  names = {"/".join(str(getattr(k, "key", k)) for k in path)
           for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
  assert not any(s in name for name in names
                 for s in ("projection", "binding_keys", "embedding_keys"))
  # The layers draw independent constants.
  other = variables["constants"]["encoder"]["layer_1"]["attention"]["projection"]
  assert not np.allclose(layer["attention"]["projection"], other)


def test_retrieve_inverts_bundle_skip_exactly_for_one_row():
  """M = 1 -> retrieve(skip(X)) = X bit-exactly; M = 2 -> X + bound cross-talk."""
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.normal(size=(8, L, 16)), jnp.float32)
  keys_1 = jnp.asarray(rng.choice([-1.0, 1.0], size=(1, 2, 16)), jnp.float32)
  np.testing.assert_array_equal(retrieve(bundle_skip(x, keys_1), keys_1), x)
  keys_2 = jnp.asarray(rng.choice([-1.0, 1.0], size=(2, 2, 16)), jnp.float32)
  out = retrieve(bundle_skip(x, keys_2), keys_2)
  for g in range(2):
    for m in range(2):
      for n in range(2):
        other = x[(g * 2 + 1 - m) * 2 + n] * keys_2[1 - m, n] * keys_2[m, n]
        np.testing.assert_array_equal(out[(g * 2 + m) * 2 + n], x[(g * 2 + m) * 2 + n] + other)


@pytest.mark.parametrize("variant", ["att", "att_mlp"])
def test_group_isolation_and_batch_divisibility(variant):
  """Network level: perturbing group 1 leaves group 0 bit-identical."""
  model = _model(_config("classifier", variant=variant))
  x = _tokens(pad_from=LENGTHS)
  variables = _init(model, x)
  out = _apply(model, variables, x)
  x2 = x.at[5, :4].set((x[5, :4] % (VOCAB - 1)) + 1).at[6, 1].set(0)
  out2 = _apply(model, variables, x2)
  np.testing.assert_array_equal(out[:4], out2[:4])
  assert not np.allclose(out[4:], out2[4:])
  with pytest.raises(ValueError, match="batch size 6 is not divisible .* 2 \\* 2 = 4"):
    model.apply(variables, x[:6], train=False)


def test_curriculum_trees_identical_and_switch_back_matches_fresh_model():
  """The sub-grid phase shares every variable; afterwards the full model equals a freshly
  built one; warm-up batches only need (M/2)(N/2) divisibility."""
  config = _config("lm", m=2, n=2, curriculum_fraction=0.2)
  model = _model(config)
  warm = model.clone(phase=Phase(subgrid=True))
  x = _tokens()
  variables = _init(model, x)
  warm_variables = _init(warm, x)
  assert jax.tree.structure(variables) == jax.tree.structure(warm_variables)
  jax.tree.map(np.testing.assert_array_equal, variables, warm_variables)
  # 1 x 1 sub-grid: a batch of 2 is whole warm-up groups (but not a full 2 x 2 group).
  assert jax.eval_shape(lambda x: _apply(warm, variables, x), x[:2]).shape == (2, L, VOCAB)
  with pytest.raises(ValueError, match="batch size 2"):
    _apply(model, variables, x[:2])
  out_warm = _apply(warm, variables, x)
  out = _apply(warm.clone(phase=Phase()), variables, x)
  np.testing.assert_array_equal(out, _apply(_model(config), variables, x))
  assert not np.allclose(out_warm, out)
  assert bool(jnp.all(jnp.isfinite(out_warm)))


@pytest.mark.parametrize("head", ["classifier", "lm"])
def test_exact_kernel_on_the_one_channel_sub_grid_is_the_softmax_transformer(head):
  """On the 1 x 1 warm-up grid binding cancels (a * a = 1), so FAVOR+S with the exact exp
  kernel at t = 1 is softmax attention: the same logits as the softmax model, same params."""
  config = _config(head, kernel="exp", curriculum_fraction=0.2)
  model = _model(config)
  exact = model.clone(phase=Phase(subgrid=True, exact_kernel=True))
  x = _tokens(pad_from=LENGTHS)
  variables = _init(model, x)
  softmax = _model(_config(head, attention="softmax", m=1, n=1))
  expected = _apply(softmax, {"params": variables["params"]}, x)
  np.testing.assert_allclose(_apply(exact, variables, x), expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(_apply(model.clone(phase=Phase(subgrid=True)), variables, x),
                         expected, atol=1e-3)
  bad = _config(head)  # relu kernel
  bad.mimo.exact_kernel_fraction = 0.2
  with pytest.raises(ValueError, match="exact_kernel_fraction"):
    _model(bad)


def test_curriculum_with_att_mlp_raises():
  with pytest.raises(ValueError, match="curriculum_fraction"):
    _model(_config("lm", variant="att_mlp", curriculum_fraction=0.2))


@pytest.mark.parametrize("attention,variant", [("softmax", "att"), ("favor", "att"),
                                               ("favor_s", "att"), ("favor_s", "att_mlp")])
def test_lm_is_causal(attention, variant):
  """Logits at position i do not depend on tokens after i."""
  model = _model(_config("lm", attention, variant=variant))
  x = _tokens()
  variables = _init(model, x)
  out = _apply(model, variables, x)
  cut = 4
  x2 = x.at[:, cut:].set(_tokens(seed=9)[:, cut:])
  out2 = _apply(model, variables, x2)
  np.testing.assert_allclose(out[:, :cut], out2[:, :cut], rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[:, cut:], out2[:, cut:])


def test_mean_pool_zeros_pads_and_divides_by_full_length():
  lengths = [6, 6, 2, 6, 6, 6, 6, 6]
  x = np.random.RandomState(0).normal(size=(8, L, 16))
  x[:, 6:] = 1e6
  expected = np.stack([x[b, :length].sum(0) / L for b, length in enumerate(lengths)])
  x = jnp.asarray(x, jnp.float32)
  mask = jnp.asarray(np.arange(L)[None, :] < np.array(lengths)[:, None])
  np.testing.assert_allclose(pool(x, mask, "mean"), expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(pool(x, mask, "cls"), x[:, 0])


def _encoder_features(model, variables, tokens):
  """Pooled output of a separately built Encoder on the model's encoder variables."""
  encoder = Encoder(model.spec, model.vocab_size, model.num_layers, model.embed_dim,
                    model.mlp_dim, model.max_len, model.dropout, model.embed_dropout)
  sub = {name: tree["encoder"] for name, tree in variables.items()}
  hidden, mask = encoder.apply(sub, tokens, train=False)
  return np.asarray(pool(hidden, mask, "mean"), np.float64)


def test_dual_head_classifies_concatenated_features():
  """[x0, x1, x0*x1, x0-x1] from one shared encoder, checked against separate applies."""
  model = _model(_config("dual", attention="softmax", m=1, n=1))
  x, x2 = _tokens(pad_from=LENGTHS), _tokens(seed=4, pad_from=LENGTHS[::-1])
  variables = _init(model, x, x2)
  out = _apply(model, variables, x, x2)
  f0 = _encoder_features(model, variables, x)
  f1 = _encoder_features(model, variables, x2)
  z = np.concatenate([f0, f1, f0 * f1, f0 - f1], axis=-1)
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  hidden = np.maximum(z @ params["classifier_hidden"]["kernel"]
                      + params["classifier_hidden"]["bias"], 0)
  expected = hidden @ params["classifier_out"]["kernel"] + params["classifier_out"]["bias"]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  assert not np.allclose(out, _apply(model, variables, x2, x))


def test_jit_grads_finite():
  """FAVOR+S with the att.+MLP skip/retrieve under jit + grad (masked classifier)."""
  model = _model(_config("classifier", variant="att_mlp"))
  x = _tokens(pad_from=LENGTHS)
  variables = _init(model, x)

  @jax.jit
  def loss(params):
    logits = model.apply({"params": params, "constants": variables["constants"]}, x,
                         train=True, rngs={"dropout": jax.random.key(0)})
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  grads = jax.grad(loss)(variables["params"])
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_constructor_validation():
  assert MODELS["transformer"] is not None
  with pytest.raises(ValueError, match="model.name='resnet' is not allowed; choose from .*"
                     "'transformer'"):
    _build(_config(name="resnet"), Info(VOCAB, CLASSES, L, "classification"))
  with pytest.raises(ValueError, match="model.head"):
    _build(_config(head="seq2seq"), Info(VOCAB, CLASSES, L, "classification"))
  with pytest.raises(ValueError, match="needs a 'lm' task"):
    _build(_config("lm"), Info(VOCAB, CLASSES, L, "classification"))
  with pytest.raises(ValueError, match="model.attention"):
    _model(_config(attention="nystrom"))
  with pytest.raises(ValueError, match="model.kernel"):
    _model(_config(kernel="cosine"))
  with pytest.raises(ValueError, match="mimo.variant"):
    _model(_config(variant="mlp"))
  with pytest.raises(ValueError, match="mimo.m"):
    _model(_config(m=0))
  with pytest.raises(ValueError, match="model.pooling"):
    _model(_config(pooling="max"))
  with pytest.raises(ValueError, match="model.dropout"):
    _model(_config(dropout=1.5))
  # mimo is ignored unless attention == favor_s
  assert _model(_config(attention="favor", m=4, n=4)).spec.m == 1


def test_gpt2_init_scales_and_zero_biases():
  """safari SimpleLM `_init_weights`: N(0, 0.02) kernels, zero biases, and N(0, 0.02^2 / 2L)
  for the layers writing into the residual stream (attention out, MLP out)
  (HazyResearch/safari: src/models/sequence/simple_lm.py)."""
  config = _config("lm", attention="favor", num_layers=2, embed_dim=64, mlp_dim=256,
                   num_heads=1, head_dim=64, init="gpt2")
  params = _init(_model(config), _tokens())["params"]["encoder"]
  for i in range(2):
    layer = params[f"layer_{i}"]
    for kernel, std in [(layer["attention"]["query"]["kernel"], 0.02),
                        (layer["mlp"]["hidden"]["kernel"], 0.02),
                        (layer["attention"]["out"]["kernel"], 0.02 / 2),
                        (layer["mlp"]["out"]["kernel"], 0.02 / 2)]:
      assert abs(float(kernel.std()) / std - 1) < 0.05
    biases = [layer["attention"][p]["bias"] for p in ("query", "key", "value", "out")]
    assert all(not np.any(b) for b in biases + [layer["mlp"]["out"]["bias"]])


def test_tied_lm_head_is_transposed_token_embedding():
  model = _model(_config("lm", attention="favor", tie_embeddings=True))
  x = _tokens()
  variables = _init(model, x)
  assert "lm_head" not in variables["params"]
  logits, state = model.apply(variables, x, train=False, capture_intermediates=True)
  hidden, _ = state["intermediates"]["encoder"]["__call__"][0]
  table = variables["params"]["encoder"]["embed"]["token"]["embedding"]
  np.testing.assert_allclose(logits, np.einsum("ble,ve->blv", hidden, table), rtol=1e-5,
                             atol=1e-6)


def test_gelu_mlp_matches_formula():
  model = _model(_config("lm", attention="favor", activation="gelu"))
  x = _tokens()
  variables = _init(model, x)
  _, state = model.apply(variables, x, train=False, capture_intermediates=True)
  mlp = variables["params"]["encoder"]["layer_0"]["mlp"]
  calls = state["intermediates"]["encoder"]["layer_0"]
  h_in = calls["norm_mlp"]["__call__"][0]
  h = h_in @ mlp["hidden"]["kernel"] + mlp["hidden"]["bias"]
  gelu = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
  np.testing.assert_allclose(calls["mlp"]["__call__"][0],
                             gelu @ mlp["out"]["kernel"] + mlp["out"]["bias"], rtol=1e-4,
                             atol=1e-6)


@pytest.mark.parametrize("field, value, match", [
    ("init", "xavier", r"model.init='xavier' is not allowed; choose from \['torch', 'gpt2'\]"),
    ("activation", "swish",
     r"model.activation='swish' is not allowed; choose from \['relu', 'gelu', 'gelu_exact'\]"),
    ("tie_embeddings", True, "model.tie_embeddings=True needs model.head='lm'"),
    ("exp_temperature", 2.0, "model.exp_temperature: allowed values are numbers > 0 with "
     "model.kernel = 'exp'")])
def test_layer_options_validation(field, value, match):
  with pytest.raises(ValueError, match=match):
    _model(_config("classifier", **{field: value}))
