"""The kernel-contrast probe: FAVOR+S's ReLU-feature contrast is the arc-cosine ceiling."""

import pytest

from mimojax.analysis import kernel_contrast


@pytest.mark.parametrize("m, n", [(2, 2), (4, 4)])
def test_relu_contrast_matches_arccos_limit_at_any_width(m, n):
  limit = kernel_contrast.arccos_ratio(m, n)
  ratios = [kernel_contrast.contrast(d, m, n, "relu", trials=1000) for d in (32, 128)]
  assert ratios == pytest.approx([limit, limit], rel=0.05)


def test_plain_favor_contrast_is_not_capped():
  assert kernel_contrast.arccos_ratio(1, 1) == float("inf")
  assert kernel_contrast.contrast(32, 1, 1, "relu", trials=1000) > 100  # eps bounds it
  assert kernel_contrast.arccos_ratio(2, 2) == pytest.approx(5.59, abs=0.01)  # closed form
  # J(0) / J(acos(-1/8)) = pi / (sin + (pi - theta) cos) at theta = 97.18 degrees
  assert kernel_contrast.arccos_ratio(1, 1, -1 / 8) == pytest.approx(3.87, abs=0.01)
