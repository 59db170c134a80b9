"""MAC counts: paper Table A2 / App. E.2 reproduced from the model structure (eval_shape
tracing only), closed forms for the counting rules, and XLA's count on a tiny network."""

import math

import pytest

from mimojax.analysis import macs
from mimojax.models.datamux_vision import DataMuxCNN
from mimojax.models.datamux_vision import DataMuxMLP
from mimojax.models.phase import Phase
from mimojax.models.wide_resnet import MIMOConv
from mimojax.models.wide_resnet import WideResNet

CIFAR = (32, 32, 3)
MNIST = (20, 20, 1)


def cifar100_mimoconv(n):
  return MIMOConv(num_classes=100, num_channels=n, width=10, initial_width=4,
                     activation="prelu", layout="official")


def mnist_mimoconv(n):
  return MIMOConv(num_classes=10, num_channels=n, stage_sizes=(1, 1, 1), width=1,
                     initial_width=1, activation="prelu", layout="official")


def close(value, paper, rel):
  return abs(value / 1e6 - paper) <= rel * paper


@pytest.mark.parametrize("n", [1, 2, 4])
def test_table_a2_mimoconv_rows(n):
  paper = macs.PAPER_MMAC[f"mimoconv-28-10 N={n}"]
  count = macs.macs_per_sample(cifar100_mimoconv(n), CIFAR)
  assert close(count["total"], paper["total"], 0.01)
  # With the profiler's BN/activation/bias operations every column matches as printed.
  full = macs.macs_per_sample(cifar100_mimoconv(n), CIFAR, convention="ptflops")
  for part in macs.PARTS:
    assert close(full[part], paper[part], 0.01), part
  assert close(full["total"], paper["total"], 0.001)


@pytest.mark.parametrize("layout", ["official", "standard"])
def test_table_a2_wide_resnet_row(layout):
  paper = macs.PAPER_MMAC["wrn-28-10"]
  model = WideResNet(num_classes=100, layout=layout)
  assert close(macs.macs_per_sample(model, CIFAR)["total"], paper["total"], 0.01)
  full = macs.macs_per_sample(model, CIFAR, convention="ptflops")
  assert close(full["total"], paper["total"], 0.001)
  if layout == "official":  # stem conv 0.44 + BN/ReLU 0.05
    assert close(full["first_conv"], paper["first_conv"], 0.01)


@pytest.mark.parametrize("n", [1, 16])
def test_mnist_mimoconv_10_1_within_5_percent(n):
  paper = macs.PAPER_MMAC[f"mimoconv-10-1 N={n}"]["total"]
  for convention in ("paper", "ptflops"):
    assert close(macs.macs_per_sample(mnist_mimoconv(n), MNIST, convention=convention)["total"],
                 paper, 0.05)


def closed_form_macs(stage_sizes, width, iw, hw, c_in, classes, n_channels):
  """Per-sample MACs of an official-layout MIMOConv written out layer by layer."""
  stem = 16 * iw
  parts = {"first_conv": 9 * c_in * stem * hw * hw, "binding": hw * hw * stem * stem}
  rest, c, size = 0, stem, hw
  for s, blocks in enumerate(stage_sizes):
    f = 16 * width * 2**s
    for b in range(blocks):
      stride = 2 if (s > 0 and b == 0) else 1
      out = size // stride
      rest += 9 * c * f * out * out + 9 * f * f * out * out
      if stride != 1 or c != f:
        rest += c * f * out * out
      c, size = f, out
  parts["rest"] = rest / n_channels
  parts["unbinding"] = c * c
  parts["fcl"] = c * classes
  return parts


@pytest.mark.parametrize("n", [1, 4])
def test_traced_count_equals_closed_form(n):
  model = MIMOConv(num_classes=7, num_channels=n, stage_sizes=(2, 1, 1), width=2,
                      initial_width=2, activation="srelu", layout="official")
  counted = macs.macs_per_sample(model, (12, 12, 3))
  expected = closed_form_macs((2, 1, 1), 2, 2, 12, 3, 7, n)
  for part, value in expected.items():
    assert counted[part] == pytest.approx(value, rel=1e-12), part


def test_dynamic_modes_pay_binding_and_unbinding_per_replica():
  model = cifar100_mimoconv(4)
  fast = macs.macs_per_sample(model, CIFAR)
  slow = macs.macs_per_sample(model, CIFAR, inputs_per_pass=1)
  assert slow["rest"] == pytest.approx(4 * fast["rest"])
  assert slow["binding"] == pytest.approx(4 * fast["binding"])
  assert slow["unbinding"] == pytest.approx(4 * fast["unbinding"])
  assert slow["first_conv"] == pytest.approx(fast["first_conv"])
  # the phase's inputs per pass is the same mode as the call argument
  assert macs.macs_per_sample(model.clone(phase=Phase(inputs_per_pass=1)), CIFAR) == slow


@pytest.mark.parametrize("size, stride", [(8, 1), (7, 1), (8, 2), (9, 2)])
def test_in_bounds_taps(size, stride):
  out = (size + 2 - 3) // stride + 1
  taps = macs._in_bounds_taps(size, out, 3, stride, 1)
  brute = sum(1 for o in range(out) for t in range(3) if 0 <= o * stride + t - 1 < size)
  assert taps == brute
  if stride == 1:
    assert taps == 3 * size - 2


def test_xla_counts_in_bounds_work():
  """XLA's flops/2 for a tiny WRN is the in-bounds MACs plus the elementwise work (+-3 %),
  and below the paper's padded convention."""
  model = WideResNet(num_classes=10, width=2, stage_sizes=(1, 1, 1), layout="official")
  xla = macs.xla_macs_per_sample(model, (16, 16, 3))
  in_bounds = macs.macs_per_sample(model, (16, 16, 3), convention="in_bounds")["total"]
  extra = (macs.macs_per_sample(model, (16, 16, 3), convention="ptflops")["total"]
           - macs.macs_per_sample(model, (16, 16, 3))["total"])
  assert math.isclose(xla, in_bounds + extra, rel_tol=0.03)
  assert xla < macs.macs_per_sample(model, (16, 16, 3))["total"]


def test_bad_convention_raises():
  with pytest.raises(ValueError, match="convention"):
    macs.macs_per_sample(mnist_mimoconv(1), MNIST, convention="flops")


def datamux_cnn_by_hand(n, maps, mux="nonlinear"):
  """Per-image MACs of DataMUX's CNN written out layer by layer (20 x 20 x 1 images)."""
  k = maps
  mux_macs = {"nonlinear": 9 * 1 * 16 * 400 + 9 * 16 * k * 400, "kernel": 9 * 400,
              "ortho": 400 * 400}[mux]
  trunk = 9 * k * 10 * 18 * 18 + 16 * 10 * 16 * 6 * 6 + 9 * 16 * 120 + 120 * 84
  return {"binding": mux_macs, "rest": trunk / n, "unbinding": 84 * 84, "fcl": 84 * 10}


@pytest.mark.parametrize("n", [1, 2, 16])
@pytest.mark.parametrize("mux, maps", [("nonlinear", 8), ("nonlinear", 1), ("kernel", 1),
                                       ("ortho", 1)])
def test_datamux_cnn_count_equals_hand_computation(n, mux, maps):
  model = DataMuxCNN(num_instances=n, mux=mux, mux_maps=maps)
  counted = macs.macs_per_sample(model, MNIST)
  expected = datamux_cnn_by_hand(n, maps, mux)
  for part, value in expected.items():
    assert counted[part] == pytest.approx(value, rel=1e-12), part
  assert counted["first_conv"] == 0
  assert counted["total"] == pytest.approx(sum(expected.values()), rel=1e-12)


@pytest.mark.parametrize("n", [1, 16])
def test_datamux_cnn_nonlinear8_matches_mimonets_app_e2(n):
  """0.88 MMAC (N = 1) and 0.65 (N = 16): the per-group demux layer counted per image."""
  model = DataMuxCNN(num_instances=n, mux="nonlinear", mux_maps=8)
  paper = macs.PAPER_MMAC[f"datamux-cnn-nonlinear8 N={n}"]["total"]
  assert close(macs.datamux_paper_macs(model, MNIST), paper, 0.01)
  ours = macs.macs_per_sample(model, MNIST)["total"]
  assert ours == 879_096 if n == 1 else ours == 548_346  # per group / N: 0.55 at N = 16


def test_datamux_mlp_count():
  counted = macs.macs_per_sample(DataMuxMLP(num_instances=4, mux="low_rank"), MNIST)
  assert counted["binding"] == 400 * 400 and counted["rest"] == 400 * 100 / 4
  assert counted["unbinding"] == 100 * 20 and counted["fcl"] == 20 * 10
  hadamard = macs.macs_per_sample(DataMuxMLP(num_instances=4, mux="hadamard"), MNIST)
  assert hadamard["binding"] == 400
