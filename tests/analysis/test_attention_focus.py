"""The attention read-out of trained LMs: rows against independent formulas and against the
model's own attention outputs, the statistics, and a smoke run whose read-out accuracy equals
the run's own evaluation."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import synthetic
from mimojax import data as data_lib
from mimojax.analysis import attention_focus
from mimojax.models.phase import Phase
from mimojax.models.transformer import Transformer
from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import attention_op
from mimojax.nn.attention import normalisers_op
from mimojax.ops import attention as attention_ops
from mimojax.ops import binding
from mimojax.train import config as config_lib
from mimojax.train import loop

B, L, H, D = 4, 10, 2, 4  # L > D: rows come from several blocks of one-hot values


def _causal_normalised(scores):
  scores = jnp.where(jnp.tril(jnp.ones((L, L), bool)), scores, 0.0)
  return scores / scores.sum(-1, keepdims=True)


def test_softmax_rows_are_the_softmax_weights():
  q, k = jax.random.normal(jax.random.key(0), (2, B, L, H, D))
  attend = attention_op(AttentionSpec(num_heads=H, head_dim=D, causal=True))
  rows = attention_focus.attention_rows(q, k, attend)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(D)
  expected = _causal_normalised(jnp.exp(scores - scores.max(-1, keepdims=True)))
  np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m, n, subgrid", [(1, 1, False), (2, 2, False), (2, 2, True)])
def test_favor_rows_are_each_channels_own_kernel_weights(m, n, subgrid):
  """Row of channel (m, n): phi(q~_n) . phi(k~_m) over j <= i, normalised (Eq. 19, 67); with
  ``subgrid``, on the M/2 x N/2 sub-grid of the same keys (App. F.1)."""
  q, k = jax.random.normal(jax.random.key(1), (2, B, L, H, D))
  projection = attention_ops.gaussian_orthogonal_matrix(jax.random.key(2), 16, D)
  keys = binding.rademacher_keys(jax.random.key(3), (m, n, D))
  if m * n == 1:  # plain FAVOR+: no binding
    keys = jnp.ones_like(keys)
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s" if m * n > 1 else "favor",
                       causal=True, m=m, n=n, subgrid=subgrid)
  rows = attention_focus.attention_rows(q, k, attention_op(spec, projection, keys), *spec.grid)
  if subgrid:
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


def _hand_mass_ratios(q, k, keys, kernel):
  """sum_{m' != m} B^(m',n) / B^(m,n) per example and query position (mean over heads), with
  the causal normalisers built from the bundles by hand (Eq. 62, 67). ``kernel(q~, k~)``:
  ``(L, H, D)`` bundles -> ``(H, Lq, Lk)`` kernel values."""
  m, n = keys.shape[:2]
  batch = q.shape[0]
  grid = lambda x: np.asarray(x).reshape(batch // (m * n), m, n, L, H, D)
  qg, kg = grid(q), grid(k)
  causal = np.tril(np.ones((L, L)))
  expected = np.zeros((batch, L))
  for g in range(batch // (m * n)):
    q_bundles = [sum(qg[g, i, j] * keys[i, j] for i in range(m)) for j in range(n)]
    k_bundles = [sum(kg[g, i, j] * keys[i, j] for j in range(n)) for i in range(m)]
    # mass[i, j]: (H, L) normaliser B^(i,j) of every query position
    mass = np.array([[np.einsum("hqk,qk->hq", kernel(q_bundles[j], k_bundles[i]), causal)
                      for j in range(n)] for i in range(m)])
    for i in range(m):
      for j in range(n):
        expected[(g * m + i) * n + j] = ((mass[:, j].sum(0) - mass[i, j]) / mass[i, j]).mean(0)
  return expected


def _relu_features_kernel(projection, m, n):
  """phi(s q~) . phi(s k~) with s = (sqrt(D) M N)^(-1/2), the module's scaling (as the
  official code, IBM/multiple-input-multiple-output-nets:
  ``MIMOFormer/code/attention_mimoformer.py``)."""
  s = (np.sqrt(D) * m * n) ** -0.5
  phi = lambda x: np.asarray(attention_ops.relu_kernel(x * s, projection))
  return lambda qb, kb: np.einsum("qhr,khr->hqk", phi(qb), phi(kb))


def _exact_kernel(qb, kb):
  """exp(q~ . k~ / sqrt(D)) (Eq. 20), in float64."""
  return np.exp(np.einsum("qhd,khd->hqk", qb, kb).astype(np.float64) / np.sqrt(D))


@pytest.mark.parametrize("m, n", [(2, 2), (3, 2)])
def test_mass_ratios_against_the_bundle_normalisers(m, n):
  """sum_{m' != m} B^(m',n) / B^(m,n) (Eq. 67's normaliser) per example and query position,
  mean over heads, against the normalisers built from the bundles by hand."""
  batch = 2 * m * n
  q, k = jax.random.normal(jax.random.key(4), (2, batch, L, H, D))
  projection = attention_ops.gaussian_orthogonal_matrix(jax.random.key(5), 16, D)
  keys = binding.rademacher_keys(jax.random.key(6), (m, n, D))
  spec = AttentionSpec(num_heads=H, head_dim=D, attention="favor_s", causal=True, m=m, n=n)
  ratios = attention_focus.mass_ratios(normalisers_op(spec, projection, keys)(q, k))
  expected = _hand_mass_ratios(q, k, np.asarray(keys), _relu_features_kernel(projection, m, n))
  np.testing.assert_allclose(ratios, expected, rtol=1e-4)


def _lm(attention, m=1, n=1, phase=Phase(), kernel="relu"):
  spec = AttentionSpec(num_heads=H, head_dim=D, attention=attention, kernel=kernel,
                       num_features=16, causal=True, m=m, n=n)
  return Transformer(spec=spec, vocab_size=7, num_classes=7, head="lm", num_layers=2,
                     embed_dim=8, mlp_dim=16, max_len=L, phase=phase)


def _init(model, tokens, gain=4.0):
  """Random variables with every parameter times ``gain`` (rows far from uniform)."""
  rngs = {"params": jax.random.key(7), "constants": jax.random.key(8)}
  variables = model.init(rngs, tokens, train=False)
  return {**variables, "params": jax.tree.map(lambda w: gain * w, variables["params"])}


@pytest.mark.parametrize("attention", ["softmax", "favor"])
def test_read_out_rows_reproduce_each_layers_own_attention_output(attention):
  """Without superposition a layer's attention output is its rows times its values: the rows
  that read_out finds, applied to the values of the model's own forward pass, give the input
  of the layer's output projection W_o."""
  tokens = jax.random.randint(jax.random.key(9), (B, L), 0, 7)
  model = _lm(attention)
  variables = _init(model, tokens)
  logits, rows, ratios = attention_focus.read_out(model, variables, tokens)
  is_attention = lambda module, method: method == "__call__" and module.name in ("value", "out")
  expected, captured = model.apply(variables, tokens, train=False,
                                   capture_intermediates=is_attention, mutable=["intermediates"])
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  for i, layer_rows in enumerate(rows):
    layer = captured["intermediates"]["encoder"][f"layer_{i}"]["attention"]
    v = layer["value"]["__call__"][0].reshape(B, L, H, D)
    out = layer["out"]["__call__"][0]  # W_o's output; its input is the attention output
    w = variables["params"]["encoder"][f"layer_{i}"]["attention"]["out"]
    attended = jnp.einsum("bhqk,bkhd->bqhd", layer_rows, v).reshape(B, L, H * D)
    np.testing.assert_allclose(attended @ w["kernel"] + w["bias"], out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ratios[i], 0.0)


@pytest.mark.parametrize("phase", [Phase(), Phase(subgrid=True), Phase(exact_kernel=True)],
                         ids=["grid", "subgrid", "exact_kernel"])
def test_read_out_of_a_favor_s_model_reads_its_sown_normalisers(phase):
  """FAVOR+S on a 2 x 2 grid: every layer's mass ratios are those of its own q, k and
  constants (hand-built), with the ReLU features or, in an exact-kernel phase, the exact exp
  kernel; its rows sum to one; on the App. F.1 sub-grid (1 x 1) there is no other key
  bundle."""
  tokens = jax.random.randint(jax.random.key(10), (B, L), 0, 7)
  model = _lm("favor_s", 2, 2, phase, kernel="exp" if phase.exact_kernel else "relu")
  # the exact kernel's own-bundle mass would underflow against the others' at gain 4
  variables = _init(model, tokens, gain=1.0 if phase.exact_kernel else 4.0)
  _, rows, ratios = attention_focus.read_out(model, variables, tokens)
  _, sown = model.apply(variables, tokens, train=False, mutable=["intermediates"])
  for i in range(2):
    np.testing.assert_allclose(rows[i].sum(-1), 1.0, rtol=1e-5)
    if phase.subgrid:
      np.testing.assert_array_equal(ratios[i], 0.0)
      continue
    layer = sown["intermediates"]["encoder"][f"layer_{i}"]["attention"]
    constants = variables["constants"]["encoder"][f"layer_{i}"]["attention"]
    kernel = (_exact_kernel if phase.exact_kernel
              else _relu_features_kernel(constants["projection"], 2, 2))
    expected = _hand_mass_ratios(layer["q"][0], layer["k"][0],
                                 np.asarray(constants["binding_keys"]), kernel)
    np.testing.assert_allclose(ratios[i], expected, rtol=1e-4)


def test_read_out_rejects_the_att_mlp_variant():
  tokens = jnp.zeros((B, L), jnp.int32)
  model = _lm("favor_s", 2, 2).clone(variant="att_mlp")
  with pytest.raises(ValueError, match="att. variant"):
    attention_focus.read_out(model, _init(model, tokens), tokens)


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
  trainer, state = attention_focus.restore_run(config_lib.from_dict(config), workdir)
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
