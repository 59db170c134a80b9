"""The predictor: a real input's output never depends on the filler of its group nor on how
its groups are packed into calls; tenants never share a superposition; compiled once per
mode."""

import numpy as np
import pytest

from mimojax import data as data_lib
from mimojax.inference import Predictor, restore
from mimojax.inference import predictor as predictor_lib

TOL = dict(rtol=1e-4, atol=1e-5)


def sample_inputs(workdir, count):
  config = restore.load(workdir).config
  source = data_lib.load_split(config.data, "test")[0]
  return np.stack([np.asarray(source[i]["inputs"]) for i in range(count)])


@pytest.fixture(scope="module")
def conv(mimoconv_run):
  return Predictor.load(mimoconv_run, batch_size=8), sample_inputs(mimoconv_run, 24)


@pytest.mark.parametrize("mode", ["inputs_per_pass=4", "inputs_per_pass=2"])
def test_conv_filler_does_not_change_real_outputs(conv, mode):
  predictor, x = conv
  valid = np.array([True] * 5 + [False] * 3)  # the second group: one input, three fillers
  zeros = np.concatenate([x[:5], np.zeros_like(x[:3])])
  noise = np.concatenate([x[:5], np.random.default_rng(0).normal(size=x[:3].shape)])
  noise = noise.astype(x.dtype)
  a, b = (predictor.forward(batch, valid, mode) for batch in (zeros, noise))
  np.testing.assert_allclose(a[valid], b[valid], **TOL)
  # without the mask the filler is superposed with the real input and changes it
  c, d = (predictor.forward(batch, np.ones(8, bool), mode) for batch in (zeros, noise))
  assert not np.allclose(c[4], d[4], **TOL)


def test_conv_outputs_do_not_depend_on_the_submitted_batch(conv, mimoconv_run):
  predictor, x = conv
  wide = Predictor.load(mimoconv_run, batch_size=32)
  for mode in predictor.modes:
    whole = predictor.predict(x[:13], mode=mode)
    assert whole.shape == (13, 10)
    np.testing.assert_allclose(wide.predict(x[:13], mode=mode), whole, **TOL)
    parts = np.concatenate([predictor.predict(x[:8], mode=mode),
                            predictor.predict(x[8:13], mode=mode)])
    np.testing.assert_allclose(parts, whole, **TOL)
  assert set(predictor._compiled) == set(predictor.modes)  # pylint: disable=protected-access


def test_tenants_never_share_a_superposition(conv):
  predictor, x = conv
  tenants = np.array(list("abacbbcaaabcbac") + ["d"])
  groups = predictor_lib.plan(len(tenants), 4, tenants)
  real = groups[groups != predictor_lib.FILLER]
  assert sorted(real) == list(range(len(tenants)))
  for group in groups:
    assert len(set(tenants[group[group != predictor_lib.FILLER]])) == 1
  out = predictor.predict(x[:16], tenants=tenants)
  for name in "abcd":
    mine = tenants == name
    np.testing.assert_allclose(out[mine], predictor.predict(x[:16][mine]), **TOL)


def test_plan_cuts_consecutive_groups_and_fills_the_last():
  np.testing.assert_array_equal(predictor_lib.plan(5, 2), [[0, 1], [2, 3], [4, -1]])
  assert predictor_lib.plan(0, 4).shape == (0, 4)
  with pytest.raises(ValueError, match="one label per input"):
    predictor_lib.plan(3, 2, tenants=["a", "b"])


def test_mimoformer_filler_does_not_change_real_outputs(mimoformer_run):
  predictor = Predictor.load(mimoformer_run, batch_size=8)
  x = sample_inputs(mimoformer_run, 5)
  valid = np.array([True] * 5 + [False] * 3)
  rng = np.random.default_rng(0)
  filler = rng.integers(1, int(x.max()) + 1, size=(3,) + x.shape[1:]).astype(x.dtype)
  outputs = [predictor.forward(np.concatenate([x, f]), valid, "grid=2x2")
             for f in (np.zeros_like(filler), filler)]
  np.testing.assert_allclose(outputs[0][valid], outputs[1][valid], **TOL)
  sub = predictor.predict(x, mode="subgrid=1x1")
  assert sub.shape == (5, predictor.model.num_classes)


def test_load_errors_are_one_line(mimoconv_run, tmp_path):
  with pytest.raises(ValueError, match="has no checkpoints"):
    Predictor.load(str(tmp_path))
  with pytest.raises(ValueError, match=r"seed=1 is out of range"):
    Predictor.load(mimoconv_run, seed=1)
  with pytest.raises(ValueError, match="batch_size=6 must be a positive multiple of the 4"):
    Predictor.load(mimoconv_run, batch_size=6)
