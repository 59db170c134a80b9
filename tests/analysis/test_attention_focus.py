"""The attention read-out of trained LMs: rows against independent formulas, the statistics,
and a smoke run whose read-out accuracy equals the run's own evaluation."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import attention_focus
from experiments import synthetic
from mimojax import data as data_lib
from mimojax.nn.attention import AttentionSpec
from mimojax.ops import attention as attention_ops
from mimojax.ops import binding
from mimojax.train import loop

B, L, H, D = 4, 10, 2, 4  # L > D: rows come from several blocks of one-hot values


def _causal_normalised(scores):
  scores = jnp.where(jnp.tril(jnp.ones((L, L), bool)), scores, 0.0)
  return scores / scores.sum(-1, keepdims=True)


def test_softmax_rows_are_the_softmax_weights():
  q, k = jax.random.normal(jax.random.key(0), (2, B, L, H, D))
  attend, m, n = attention_focus.layer_attention(
      AttentionSpec(num_heads=H, head_dim=D, causal=True), {})
  rows = attention_focus.attention_rows(q, k, attend, m, n)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(D)
  expected = _causal_normalised(jnp.exp(scores - scores.max(-1, keepdims=True)))
  np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m, n, curriculum", [(1, 1, False), (2, 2, False), (2, 2, True)])
def test_favor_rows_are_each_channels_own_kernel_weights(m, n, curriculum):
  """Row of channel (m, n): phi(q~_n) . phi(k~_m) over j <= i, normalised (Eq. 19, 67); with
  ``curriculum``, on the M/2 x N/2 sub-grid of the same keys (App. F.1)."""
  q, k = jax.random.normal(jax.random.key(1), (2, B, L, H, D))
  projection = attention_ops.gaussian_orthogonal_matrix(jax.random.key(2), 16, D)
  keys = binding.rademacher_keys(jax.random.key(3), (m, n, D))
  if m * n == 1:  # plain FAVOR+: no binding
    keys = jnp.ones_like(keys)
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s" if m * n > 1 else "favor",
                       causal=True, m=m, n=n)
  constants = {"projection": projection, "binding_keys": keys}
  rows = attention_focus.attention_rows(
      q, k, *attention_focus.layer_attention(spec, constants, curriculum))
  if curriculum:
    m, n, keys = m // 2, n // 2, keys[:m // 2, :n // 2]
  scale = (np.sqrt(D) * m * n) ** -0.5  # D^(-1/4) for FAVOR+
  grid = lambda x: np.asarray(x * scale).reshape(B // (m * n), m, n, L, H, D)
  qg, kg = grid(q), grid(k)
  phi = lambda x: attention_ops.relu_kernel(x, projection)
  for g in range(B // (m * n)):
    for i in range(m):
      for j in range(n):
        q_bundle = phi(sum(qg[g, mm, j] * keys[mm, j] for mm in range(m)))  # (L, H, R)
        k_bundle = phi(sum(kg[g, i, nn] * keys[i, nn] for nn in range(n)))
        expected = _causal_normalised(jnp.einsum("qhr,khr->hqk", q_bundle, k_bundle))
        np.testing.assert_allclose(rows[(g * m + i) * n + j], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("m, n", [(2, 2), (3, 2)])
def test_mass_ratios_against_the_bundle_normalisers(m, n):
  """sum_{m' != m} B^(m',n) / B^(m,n) (Eq. 67's normaliser) per example and query position,
  mean over heads, against the normalisers built from the bundles by hand."""
  batch = 2 * m * n
  q, k = jax.random.normal(jax.random.key(4), (2, batch, L, H, D))
  projection = attention_ops.gaussian_orthogonal_matrix(jax.random.key(5), 16, D)
  keys = binding.rademacher_keys(jax.random.key(6), (m, n, D))
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", causal=True, m=m, n=n)
  attend, _, _ = attention_focus.layer_attention(
      spec, {"projection": projection, "binding_keys": keys})
  ratios = attention_focus.mass_ratios(q, k, attend)
  scale = (np.sqrt(D) * m * n) ** -0.5
  grid = lambda x: np.asarray(x * scale).reshape(batch // (m * n), m, n, L, H, D)
  qg, kg = grid(q), grid(k)
  phi = lambda x: np.asarray(attention_ops.relu_kernel(x, projection))
  causal = np.tril(np.ones((L, L)))
  for g in range(batch // (m * n)):
    q_bundles = [phi(sum(qg[g, i, j] * keys[i, j] for i in range(m))) for j in range(n)]
    k_bundles = [phi(sum(kg[g, i, j] * keys[i, j] for j in range(n))) for i in range(m)]
    # mass[i, j]: (H, L) normaliser B^(i,j) of every query position
    mass = np.array([[np.einsum("qhr,khr,qk->hq", q_bundles[j], k_bundles[i], causal)
                      for j in range(n)] for i in range(m)])
    for i in range(m):
      for j in range(n):
        expected = (mass[:, j].sum(0) - mass[i, j]) / mass[i, j]
        np.testing.assert_allclose(ratios[(g * m + i) * n + j], expected.mean(0), rtol=1e-4)


def test_focus_stats_on_known_rows():
  # two sequences; the last token 7 follows ... 7 at position 2 (answer position 3)
  tokens = jnp.array([[1, 2, 7, 5, 3, 7], [1, 2, 3, 4, 5, 6]])
  length = tokens.shape[1]
  shift = jnp.eye(length, k=-1).at[0, 0].set(1.0)  # every query i >= 1 attends to i - 1
  last = jnp.zeros(length).at[3].set(0.75).at[0].set(0.25)
  rows = jnp.stack([shift.at[-1].set(last), shift])[:, None]  # (B, H=1, L, L)
  stats = attention_focus.focus_stats(rows, tokens)
  assert stats["sequences"] == 2 and stats["with_answer"] == 1  # no 6 before the second's end
  assert stats["prev"] == pytest.approx(1.0)  # answer position 3 attends to 2
  assert stats["prev_uniform"] == pytest.approx(1 / 4)
  assert stats["match"] == pytest.approx(0.75)
  assert stats["match_uniform"] == pytest.approx(1 / 6)
  # position 5 (token 7) is the only one with an earlier copy (position 2); the shift
  # rows put nothing there, uniform attention 1/6
  assert stats["same"] == pytest.approx(0.0)
  assert stats["same_uniform"] == pytest.approx(1 / 6)
  matching = jnp.stack([shift.at[-1].set(jnp.full(length, 0.1).at[2].set(0.5)), shift])
  assert attention_focus.focus_stats(matching[:, None], tokens)["same"] == pytest.approx(0.5)


def test_read_out_of_a_smoke_run_reproduces_its_test_accuracy(tmp_path):
  """On the full grid and, with --subgrid, on the warm-up sub-grid (`accuracy/subgrid`)."""
  config = synthetic.get_config("model=mimoformer,task=ar,seeds=2,smoke")
  config.data.data_dir = str(tmp_path / "tfds")
  config.mimo.curriculum_fraction = 0.25
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    final = [json.loads(line) for line in f if '"test"' in line][-1]
  records = attention_focus.analyse(workdir)
  assert [(r["seed"], r["layer"]) for r in records] == [
      (s, f"layer_{i}") for s in range(2) for i in range(config.model.num_layers)]
  for r in records:
    assert r["accuracy"] == pytest.approx(final["accuracy_per_seed"][r["seed"]], abs=1e-6)
    for key in ("prev", "prev_uniform", "same", "same_uniform", "match", "match_uniform",
                "with_answer"):
      assert 0 <= r[key] <= 1, (key, r)
    assert r["match_odds"] == pytest.approx(
        attention_focus.odds_ratio(r["match"], r["match_uniform"]))
    assert len(r["channel_mass_ratio"]) == 4 and min(r["channel_mass_ratio"]) > 0
  subgrid = attention_focus.analyse(workdir, subgrid=True)
  for r in subgrid:
    assert r["accuracy"] == pytest.approx(final["accuracy/subgrid_per_seed"][r["seed"]],
                                          abs=1e-6)
    # the 1 x 1 sub-grid has one channel
    assert r["channel_accuracy"] == [pytest.approx(r["accuracy"])]
    assert r["channel_prev"] == [pytest.approx(r["prev"])]
    assert r["channel_match_odds"] == [pytest.approx(r["match_odds"])]
    assert r["channel_mass_ratio"] == [0.0]  # no other key bundle
  assert [r["prev"] for r in subgrid] != [r["prev"] for r in records]
  # --split=train: last-token accuracy on the training sequences, against a direct forward
  trainer, state = attention_focus.restore_run(config, workdir)
  train = attention_focus.analyse(workdir, split="train")
  source = data_lib.load_split(config.data, "train")[0]
  tokens = np.stack([source[i]["inputs"] for i in range(len(source))])
  targets = np.stack([source[i]["targets"] for i in range(len(source))])[:, -1]
  for r in train:
    variables = {"params": jax.tree.map(lambda x: x[r["seed"]], state.params),
                 **jax.tree.map(lambda x: x[r["seed"]], state.model_state)}
    logits, rows, _ = attention_focus.read_out(trainer.model, variables, jnp.asarray(tokens))
    hits = np.asarray(logits[:, -1].argmax(-1) == targets)
    assert r["accuracy"] == pytest.approx(hits.mean(), abs=1e-6)
    # example i sits in channel (m, n) with m * N + n = i mod (M N) (grids of consecutive
    # examples, Eq. 19 layout); the 2 x 2 grid has four channels
    np.testing.assert_allclose(r["channel_accuracy"],
                               [hits[c::4].mean() for c in range(4)], atol=1e-6)
    layer_rows = rows[int(r["layer"].split("_")[1])]
    for c in range(4):
      stats = attention_focus.focus_stats(layer_rows[c::4], tokens[c::4])
      assert r["channel_prev"][c] == pytest.approx(stats["prev"] / stats["with_answer"],
                                                   rel=1e-5)


def test_subgrid_read_out_of_a_run_without_a_grid_is_rejected(tmp_path):
  config = synthetic.get_config("model=performer,task=ar,smoke")
  config.data.data_dir = str(tmp_path / "tfds")
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  with pytest.raises(ValueError, match=r"--subgrid needs a FAVOR\+S run .*'favor'"):
    attention_focus.analyse(str(tmp_path / "run"), subgrid=True)


def test_odds_ratio():
  assert attention_focus.odds_ratio(0.5, 0.5) == pytest.approx(1.0)
  # two answer positions of ten with kernel 4 against 1 elsewhere: weight 8 / 16
  assert attention_focus.odds_ratio(8 / 16, 2 / 10) == pytest.approx(4.0)
