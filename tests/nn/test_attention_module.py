"""MultiHeadAttention module: explicit computations; FAVOR+S reducing to FAVOR+ at M = N = 1,
group isolation and the curriculum sub-grid; constants.

Official code: IBM/multiple-input-multiple-output-nets, ``MIMOFormer/code``."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import MultiHeadAttention

B, L, E, H, D, R = 8, 10, 16, 2, 8, 16


def _inputs(batch=B, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, L, E))


def _mask(batch=B):
  lengths = np.array([L, L - 2, 3, L, 1, L - 1, 4, L])[:batch]
  return jnp.asarray(np.arange(L)[None, :] < lengths[:, None])


def _init(module, x, mask=None, seed=1):
  return module.init({"params": jax.random.key(seed), "constants": jax.random.key(seed + 1)},
                     x, mask, train=False)


def _dense(params, name, x):
  return x @ np.asarray(params[name]["kernel"], np.float64) + np.asarray(
      params[name]["bias"], np.float64)


def _qkv(params, x):
  x = np.asarray(x, np.float64)
  return [_dense(params, name, x).reshape(x.shape[:2] + (H, D))
          for name in ("query", "key", "value")]


def _relu_features(x, projection, eps=1e-3):
  """phi(x) = ReLU(D^-1/4 x P^T) + eps (official ``attention_performer.py``), x pre-scaled."""
  return np.maximum(x @ np.asarray(projection, np.float64).T * D ** -0.25, 0.0) + eps


def test_softmax_module_equals_explicit_computation():
  x, mask = _inputs(), _mask()
  module = MultiHeadAttention(AttentionSpec(num_heads=H, head_dim=D), out_dim=E)
  variables = _init(module, x, mask)
  assert "constants" not in variables
  out = module.apply(variables, x, mask, train=False)
  params = variables["params"]
  q, k, v = _qkv(params, x)
  heads = np.zeros((B, L, H, D))
  for b in range(B):
    for h in range(H):
      scores = q[b, :, h] @ k[b, :, h].T / np.sqrt(D)
      scores = np.where(np.asarray(mask[b])[None, :], scores, -np.inf)
      weights = np.exp(scores - scores.max(-1, keepdims=True))
      heads[b, :, h] = (weights / weights.sum(-1, keepdims=True)) @ v[b, :, h]
  expected = _dense(params, "out", heads.reshape(B, L, H * D))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reference_padding", [False, True])
def test_favor_module_equals_explicit_performer(reference_padding):
  """Official ``attention_performer.py``: q/D^1/4, k/D^1/4 and the kernel's own D^-1/4.
  Padded keys are excluded, or (reference_padding) zeroed before phi so each adds eps * 1_R
  to the normaliser."""
  x, mask = _inputs(), _mask()
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor", num_features=R,
                       reference_padding=reference_padding)
  module = MultiHeadAttention(spec, out_dim=E)
  variables = _init(module, x, mask)
  assert set(variables["constants"]) == {"projection"}
  projection = variables["constants"]["projection"]
  assert projection.shape == (R, D)
  out = module.apply(variables, x, mask, train=False)
  params = variables["params"]
  q, k, v = _qkv(params, x)
  heads = np.zeros((B, L, H, D))
  for b in range(B):
    real = np.asarray(mask[b])
    for h in range(H):
      phi_q = _relu_features(q[b, :, h] * D ** -0.25, projection)
      phi_k = _relu_features(k[b, real, h] * D ** -0.25, projection)
      den = phi_q @ phi_k.sum(0)
      if reference_padding:
        den = den + phi_q.sum(-1) * 1e-3 * (L - real.sum())
      heads[b, :, h] = (phi_q @ (phi_k.T @ v[b, real, h])) / den[:, None]
  expected = _dense(params, "out", heads.reshape(B, L, H * D))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def _explicit_grid(variables, x, m_size, n_size):
  """Official ``MimoformerAttention.forward_mimoformer`` (``attention_mimoformer.py``)
  written as loops over the grid, batch index (g*M + m)*N + n.

  Returns the heads (B, L, H, D) before W_o and the normalisers B^(m,n) (G, N, L, H, M)."""
  projection = variables["constants"]["projection"]
  keys = np.asarray(variables["constants"]["binding_keys"], np.float64)
  s = (np.sqrt(D) * m_size * n_size) ** 0.5
  q, k, v = _qkv(variables["params"], x)
  q, k = q / s, k / s
  groups = x.shape[0] // (m_size * n_size)
  heads = np.zeros(x.shape[:2] + (H, D))
  dens = np.zeros((groups, n_size, x.shape[1], H, m_size))
  idx = lambda g, m, n: (g * m_size + m) * n_size + n
  for g in range(groups):
    for h in range(H):
      q_bundle = [sum(q[idx(g, m, n), :, h] * keys[m, n] for m in range(m_size))
                  for n in range(n_size)]
      k_bundle = [sum(k[idx(g, m, n), :, h] * keys[m, n] for n in range(n_size))
                  for m in range(m_size)]
      v_bundle = [sum(v[idx(g, m, n), :, h] * keys[m, n] for n in range(n_size))
                  for m in range(m_size)]
      phi_k = [_relu_features(kb, projection) for kb in k_bundle]
      a_mat = sum(pk.T @ vb for pk, vb in zip(phi_k, v_bundle))
      for n in range(n_size):
        phi_q = _relu_features(q_bundle[n], projection)
        for m in range(m_size):
          den = phi_q @ phi_k[m].sum(0)
          dens[g, n, :, h, m] = den
          heads[idx(g, m, n), :, h] = (phi_q @ a_mat) / den[:, None] * keys[m, n]
  return heads, dens


def test_favor_s_module_equals_explicit_grid_computation():
  m_size, n_size = 2, 2
  x = _inputs()
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", num_features=R,
                       m=m_size, n=n_size)
  module = MultiHeadAttention(spec, out_dim=E)
  variables = _init(module, x)
  keys = variables["constants"]["binding_keys"]
  assert keys.shape == (m_size, n_size, D)
  assert set(np.unique(keys)) <= {-1.0, 1.0}
  out = module.apply(variables, x, train=False)
  heads, _ = _explicit_grid(variables, x, m_size, n_size)
  expected = _dense(variables["params"], "out", heads.reshape(B, L, H * D))
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_mass_balance_sows_weighted_spread_of_the_normalisers_in_training_only():
  """mass_balance * mean Var_m log B^(m,n) (explicit normalisers) goes to "losses" when
  train=True; init and eval sow nothing, and the output is unchanged."""
  x = _inputs()
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", num_features=R,
                       m=2, n=2, mass_balance=0.3)
  module = MultiHeadAttention(spec, out_dim=E)
  variables = _init(module, x)
  assert set(variables) == {"params", "constants"}
  out, sown = module.apply(variables, x, train=True, mutable=["losses"])
  (value,) = sown["losses"]["mass_balance"]
  _, dens = _explicit_grid(variables, x, 2, 2)
  np.testing.assert_allclose(value, 0.3 * np.mean(np.var(np.log(dens), axis=-1)), rtol=1e-4)
  assert value > 0
  np.testing.assert_allclose(out, module.apply(variables, x, train=False), rtol=1e-6)
  assert module.apply(variables, x, train=False, mutable=["losses"])[1] == {}
  plain = MultiHeadAttention(dataclasses.replace(spec, mass_balance=0.0), out_dim=E)
  assert plain.apply(variables, x, train=True, mutable=["losses"])[1] == {}


@pytest.mark.parametrize("kernel", ["relu", "exp", "dpfp"])
def test_favor_s_with_unit_grid_and_ones_keys_equals_favor(kernel):
  """Module level: M = N = 1, keys a = 1 -> FAVOR+ with the same P."""
  x, mask = _inputs(), _mask()
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor", kernel=kernel,
                       num_features=R)
  favor = MultiHeadAttention(spec, out_dim=E)
  favor_s = MultiHeadAttention(dataclasses.replace(spec, attention="favor_s"), out_dim=E)
  variables = _init(favor_s, x, mask)
  expected_constants = {"binding_keys"} | ({"projection"} if kernel != "dpfp" else set())
  assert set(variables["constants"]) == expected_constants
  constants = dict(variables["constants"], binding_keys=jnp.ones((1, 1, D)))
  favor_vars = {"params": variables["params"],
                "constants": {k: v for k, v in constants.items() if k != "binding_keys"}}
  if kernel == "dpfp":
    favor_vars = {"params": variables["params"]}
  out_s = favor_s.apply({"params": variables["params"], "constants": constants}, x, mask,
                        train=False)
  out = favor.apply(favor_vars, x, mask, train=False)
  np.testing.assert_allclose(out_s, out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("superposed_output", [False, True])
def test_group_isolation_is_bit_exact(superposed_output):
  """Perturbing group 1 leaves every output of group 0 bit-identical."""
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", num_features=R, m=2, n=2)
  module = MultiHeadAttention(spec, out_dim=E, superposed_output=superposed_output)
  x, mask = _inputs(), _mask()
  variables = _init(module, x, mask)
  apply = jax.jit(lambda x, mask: module.apply(variables, x, mask, train=False))
  out = apply(x, mask)
  x2 = x.at[5].add(3.0)
  mask2 = mask.at[6, 0].set(False)
  out2 = apply(x2, mask2)
  rows = 2 if superposed_output else 4  # group 0 rows: B/M rows per group when superposed
  assert out.shape[0] == (B // 2 if superposed_output else B)
  np.testing.assert_array_equal(out[:rows], out2[:rows])
  assert not np.allclose(out[rows:], out2[rows:])


def test_non_divisible_batch_raises():
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", num_features=R, m=2, n=2)
  module = MultiHeadAttention(spec, out_dim=E)
  with pytest.raises(ValueError, match="batch size 6 is not divisible .* 4"):
    _init(module, _inputs(batch=6))


def test_curriculum_uses_sub_grid_of_same_keys():
  """Warm-up = [:M/2, :N/2] sub-grid and (M/2)(N/2) scale (App. F.1); trees identical."""
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", num_features=R, m=2, n=2)
  full = MultiHeadAttention(spec, out_dim=E)
  warm = full.clone(spec=dataclasses.replace(spec, subgrid=True))
  x, mask = _inputs(), _mask()
  variables = _init(full, x, mask)
  warm_variables = _init(warm, x, mask)
  assert jax.tree.structure(variables) == jax.tree.structure(warm_variables)
  jax.tree.map(np.testing.assert_array_equal, variables, warm_variables)
  # The warm-up module equals a 1 x 1 module whose keys are the sub-grid of the same keys.
  small = MultiHeadAttention(dataclasses.replace(spec, m=1, n=1), out_dim=E)
  sub_keys = variables["constants"]["binding_keys"][:1, :1]
  small_vars = {"params": variables["params"],
                "constants": dict(variables["constants"], binding_keys=sub_keys)}
  out_warm = warm.apply(variables, x, mask, train=False)
  np.testing.assert_array_equal(out_warm, small.apply(small_vars, x, mask, train=False))
  # Switching back: a freshly built M x N module with the same variables, bit for bit.
  out_back = warm.clone(spec=spec).apply(variables, x, mask, train=False)
  fresh = MultiHeadAttention(spec, out_dim=E).apply(variables, x, mask, train=False)
  np.testing.assert_array_equal(out_back, fresh)
  assert not np.allclose(out_back, out_warm)


@pytest.mark.parametrize("attention,kernel", [("softmax", "relu"), ("favor", "relu"),
                                              ("favor", "exp"), ("favor_s", "relu"),
                                              ("favor_s", "dpfp")])
def test_causal_outputs_ignore_future_positions(attention, kernel):
  mn = (2, 2) if attention == "favor_s" else (1, 1)
  spec = AttentionSpec(num_heads=H, head_dim=D, attention=attention, kernel=kernel,
                       num_features=R, causal=True, m=mn[0], n=mn[1])
  module = MultiHeadAttention(spec, out_dim=E)
  x = _inputs()
  variables = _init(module, x)
  out = module.apply(variables, x, train=False)
  cut = 3
  x2 = x.at[:, cut:].set(jax.random.normal(jax.random.key(7), (B, L - cut, E)))
  out2 = module.apply(variables, x2, train=False)
  np.testing.assert_allclose(out[:, :cut], out2[:, :cut], rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[:, cut:], out2[:, cut:])


def test_redraw_features_uses_features_rng_only_in_training():
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor", num_features=R,
                       redraw_features=True)
  module = MultiHeadAttention(spec, out_dim=E)
  frozen = MultiHeadAttention(dataclasses.replace(spec, redraw_features=False), out_dim=E)
  x = _inputs()
  variables = _init(module, x)
  train = lambda seed: module.apply(variables, x, train=True,
                                    rngs={"features": jax.random.key(seed)})
  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1))
  np.testing.assert_array_equal(module.apply(variables, x, train=False),
                                frozen.apply(variables, x, train=False))


def test_softmax_attention_dropout_needs_dropout_rng_and_changes_output():
  spec = AttentionSpec(num_heads=H, head_dim=D, attention_dropout=0.5)
  module = MultiHeadAttention(spec, out_dim=E)
  x = _inputs()
  variables = _init(module, x)
  eval_out = module.apply(variables, x, train=False)
  train_out = lambda seed: module.apply(variables, x, train=True,
                                        rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(train_out(0), train_out(0))
  assert not np.allclose(train_out(0), eval_out)


def test_exp_favor_estimates_the_softmax_module_with_the_same_parameters():
  """Positive softmax features estimate exp(q . k / sqrt(D)) (Eq. 12): with many features the
  FAVOR+ module's output approaches the softmax module's, not a colder softmax's."""
  x, mask = _inputs(), _mask()
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor", kernel="exp",
                       num_features=4096)
  variables = _init(MultiHeadAttention(spec, out_dim=E), x, mask)
  out = MultiHeadAttention(spec, out_dim=E).apply(variables, x, mask, train=False)
  softmax = MultiHeadAttention(dataclasses.replace(spec, attention="softmax"), out_dim=E)
  error = lambda params: float(
      jnp.abs(out - softmax.apply({"params": params}, x, mask, train=False)).mean()
      / jnp.abs(out).mean())
  params = variables["params"]
  colder = dict(params, query=jax.tree.map(lambda w: w * D ** -0.5, params["query"]))
  assert error(params) < 0.03
  assert error(colder) > 3 * error(params)


@pytest.mark.parametrize("attention", ["favor", "favor_s"])
def test_exp_temperature_equals_query_and_key_scaled_by_its_root(attention):
  """exp(t q . k / sqrt(D)): the module at temperature t is the t = 1 module whose W_q, W_k
  (and biases) are multiplied by sqrt(t), exactly."""
  x, mn = _inputs(), (2, 2) if attention == "favor_s" else (1, 1)
  spec = AttentionSpec(num_heads=H, head_dim=D, attention=attention, kernel="exp",
                       num_features=R, causal=True, m=mn[0], n=mn[1])
  variables = _init(MultiHeadAttention(spec, out_dim=E), x)
  hot = MultiHeadAttention(dataclasses.replace(spec, exp_temperature=4.0), out_dim=E)
  out = hot.apply(variables, x, train=False)
  params = dict(variables["params"])
  for name in ("query", "key"):
    params[name] = jax.tree.map(lambda w: 2.0 * w, params[name])
  expected = MultiHeadAttention(spec, out_dim=E).apply(dict(variables, params=params), x,
                                                       train=False)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(out, MultiHeadAttention(spec, out_dim=E).apply(variables, x,
                                                                        train=False))


