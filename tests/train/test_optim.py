"""Learning-rate schedules against torch's closed forms (OneCycleLR, as the official code uses
it: IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/train_superposition.py``,
``MIMOFormer/code/run_tasks.py``)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mimojax.configs import base
from mimojax.train import optim


def torch_one_cycle(step, total, peak, pct, anneal, div=25.0, final_div=1e4):
  """OneCycleLR written out from torch's documented definition."""
  start, end = peak / div, peak / div / final_div
  up_end, down_end = pct * total - 1, total - 1
  f = (lambda a, b, t: b + (a - b) / 2 * (math.cos(math.pi * t) + 1)) if anneal == "cos" \
      else (lambda a, b, t: (b - a) * t + a)
  if step <= up_end:
    return f(start, peak, step / up_end)
  return f(peak, end, (step - up_end) / (down_end - up_end))


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_matches_torch(anneal):
  total, peak, pct = 1000, 0.2, 0.3
  sched = optim.one_cycle(total, peak, pct, anneal)
  for s in [0, 1, 150, 299, 300, 650, 999]:
    assert float(sched(s)) == pytest.approx(torch_one_cycle(s, total, peak, pct, anneal),
                                            rel=1e-5, abs=1e-9)
  assert float(sched(0)) == pytest.approx(peak / 25)
  assert float(sched(pct * total - 1)) == pytest.approx(peak)
  assert float(sched(total - 1)) == pytest.approx(peak / 25 / 1e4, rel=1e-3)


def test_one_cycle_momentum_is_inverse():
  mom = optim.one_cycle(100, 0.2, 0.3, "cos", low=0.85, high=0.95)
  assert float(mom(0)) == pytest.approx(0.95)
  assert float(mom(29)) == pytest.approx(0.85)
  assert float(mom(99)) == pytest.approx(0.95)


def test_warmup_schedules():
  opt = base.base_config().opt
  opt.learning_rate, opt.warmup_fraction, opt.schedule = 1.0, 0.1, "warmup_linear"
  lr = optim.learning_rate_schedule(opt, 100)
  assert [float(lr(s)) for s in (0, 5, 10, 55, 100)] == pytest.approx([0, 0.5, 1, 0.5, 0])
  opt.schedule, opt.init_lr, opt.min_lr = "warmup_cosine", 1e-6, 0.05
  lr = optim.learning_rate_schedule(opt, 100)

  def timm_cosine(t, warmup_t=10, t_initial=100):
    """timm CosineLRScheduler(t_in_epochs=False, warmup_prefix=False), written out."""
    if t < warmup_t:
      return 1e-6 + t * (1.0 - 1e-6) / warmup_t
    if t >= t_initial:
      return 0.05
    return 0.05 + 0.5 * (1.0 - 0.05) * (1 + math.cos(math.pi * t / t_initial))

  for s in (0, 5, 9, 10, 11, 55, 99, 100, 120):
    assert float(lr(s)) == pytest.approx(timm_cosine(s), rel=1e-4, abs=1e-8), s
  assert float(lr(10)) < 0.98  # the cosine has already started: no step at the peak


def test_weight_decay_skips_biases_and_scales():
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
            "norm": {"scale": jnp.ones(2)}, "act": {"slope": jnp.ones(2)}}
  mask = optim.weight_decay_mask(params)
  assert mask == {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False},
                  "act": {"slope": False}}
  opt = base.base_config().opt
  opt.weight_decay, opt.learning_rate = 0.5, 0.1
  tx = optim.make_optimizer(opt, 10)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  # decoupled AdamW decay: -lr * wd * w on kernels only
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.05)
  np.testing.assert_allclose(updates["dense"]["bias"], 0.0)


def test_parse_arg_types_and_errors():
  out = base.parse_arg("seeds=3,smoke,model=x", seeds=1, smoke=False, model="m")
  assert out.seeds == 3 and out.smoke is True and out.model == "x"
  with pytest.raises(ValueError, match="allowed"):
    base.parse_arg("sed=3", seeds=1)
  with pytest.raises(ValueError, match="seeds"):
    base.parse_arg("seeds=three", seeds=1)
