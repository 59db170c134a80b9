"""The sharpness probe reads true attention rows out of the FAVOR+S layer's attention_op."""

import jax
import jax.numpy as jnp
import numpy as np

from mimojax.analysis import attention_sharpness as probe
from mimojax.ops import attention
from mimojax.ops import binding


def _explicit_rows(params, tokens, keys, projection):
  """Channel (m, n): phi(q~_n) . phi(k~_m) over causal keys, normalised (Eq. 19 / 63)."""
  m, n = keys.shape[:2]
  p = jax.tree.map(np.asarray, params)
  x = p["token"][tokens] + p["position"]
  x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  x = x * p["scale"] + p["shift"]
  s = (np.sqrt(probe.DIM) * m * n) ** -0.5
  q, k = (x @ p["wq"] + p["bq"]) * s, (x @ p["wk"] + p["bk"]) * s
  q_bundled = np.einsum("bmnld,mnd->bnld", q, keys)
  k_bundled = np.einsum("bmnld,mnd->bmld", k, keys)
  phi = lambda y: np.maximum(y @ (np.asarray(projection) * probe.DIM ** -0.25).T, 0) + 1e-3
  scores = np.einsum("bnir,bmjr->bmnij", phi(q_bundled), phi(k_bundled))
  scores = np.where(np.tril(np.ones((probe.LENGTH, probe.LENGTH), bool)), scores, 0)
  return scores / scores.sum(-1, keepdims=True)


def test_rows_are_the_channel_attention_weights():
  params = probe.init_params(jax.random.key(0))
  params = jax.tree.map(lambda w: w * 20 if w.ndim == 2 else w, params)  # not near-uniform
  keys = binding.rademacher_keys(jax.random.key(1), (2, 2, probe.DIM))
  projection = attention.gaussian_orthogonal_matrix(jax.random.key(2), 64, probe.DIM)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, probe.VOCAB, (2, 2, 2, probe.LENGTH)))
  rows = jax.jit(lambda p, t: probe.attention_rows(p, t, keys, "relu", projection))(params, tokens)
  np.testing.assert_allclose(rows, _explicit_rows(params, tokens, np.asarray(keys), projection),
                             rtol=2e-4, atol=1e-6)
  assert probe.previous_weight(rows).shape == (2, 2, 2, probe.LENGTH - 1)
