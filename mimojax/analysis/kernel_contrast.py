"""How much can one channel's query prefer a matching key in FAVOR+S? A kernel-contrast probe.

    python -m mimojax.analysis.kernel_contrast [--dims=32,64,128] [--trials=4000]
        [--out=benchmarks/results/kernel_contrast.json]

Channel (0, 0) of an M x N grid (1 x 1, 2 x 2, 4 x 4) gets a unit query q and a unit key
that is either q (aligned) or -q (anti-aligned); every other channel gets independent
random unit vectors. Queries are bound and bundled over M, keys over N (Eq. 11-12,
``ops.binding`` keys), and the feature-map kernel ``phi(q~) . phi(k~)`` of the two bundles
is averaged over trials. The table reports mean kernel (aligned) / mean kernel
(anti-aligned): the largest preference a channel can express for one key over another
through the feature map. For ReLU features (``ops.relu_kernel``, R = 256) and for DPFP
(``ops.dpfp_kernel``) the kernel is positively homogeneous, so scaling q and k cannot
change the ratio; bundling adds the other channels' norms to |q~| and |k~|, and the
channel's cosine enters only as about cos / sqrt(MN). With R -> infinity and eps -> 0 the
ReLU ratio is J(theta+) / J(theta-), where J(theta) = sin(theta) + (pi - theta) cos(theta)
is the arc-cosine kernel and cos(theta+-) = +-1 / sqrt(MN) (``arccos_ratio``).
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

from mimojax.analysis import output
from mimojax.nn.attention import feature_map
from mimojax.ops import attention
from mimojax.ops import binding

FEATURES = 256
GRIDS = ((1, 1), (2, 2), (4, 4))


def arccos_ratio(m: int, n: int, other_cos: float = -1.0) -> float:
  """Closed-form ReLU-kernel ratio (R, 1/eps -> inf) on an M x N grid: a channel's key aligned
  with its query over a key at cosine ``other_cos`` (-1: anti-aligned; -1/8: nine keys on a
  simplex), both diluted by bundling to ``cos / sqrt(MN)``."""
  if m * n == 1 and other_cos == -1.0:
    return math.inf  # J(pi) = 0: only eps bounds plain FAVOR+'s ratio
  j = lambda theta: math.sin(theta) + (math.pi - theta) * math.cos(theta)
  c = 1 / math.sqrt(m * n)
  return j(math.acos(c)) / j(math.acos(other_cos * c))


def contrast(dim: int, m: int, n: int, kernel: str, trials: int, seed: int = 0) -> float:
  """Mean kernel of channel (0, 0) with its key aligned, over the mean with it anti-aligned."""
  rng = jax.random.key(seed)
  keys = binding.rademacher_keys(jax.random.fold_in(rng, 0), (m, n, dim))
  unit = lambda r: (lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True))(
      jax.random.normal(r, (trials, m, n, dim)))
  q, k = unit(jax.random.fold_in(rng, 1)), unit(jax.random.fold_in(rng, 2))
  projection = (attention.gaussian_orthogonal_matrix(jax.random.fold_in(rng, 3), FEATURES, dim)
                if kernel == "relu" else None)
  phi = feature_map(kernel, projection)
  phi_q = phi(binding.superpose(binding.map_bind(q[:, :, 0], keys[:, 0]), axis=1))  # n = 0
  means = []
  for sign in (1.0, -1.0):
    k_sign = k[:, 0].at[:, 0].set(sign * q[:, 0, 0])  # key bundle m = 0, channel n = 0 set
    phi_k = phi(binding.superpose(binding.map_bind(k_sign, keys[0]), axis=1))
    means.append(jnp.mean(jnp.sum(phi_q * phi_k, axis=-1)))
  return float(means[0] / means[1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dims", default="32,64,128")
  parser.add_argument("--trials", type=int, default=4000)
  parser.add_argument("--out", default="benchmarks/results/kernel_contrast.json")
  args = parser.parse_args()
  dims = []
  for d in args.dims.split(","):
    if not d.isdigit() or int(d) < 1:
      raise SystemExit(f"--dims entries must be positive ints, got {d!r}")
    dims.append(int(d))
  finite = lambda x: x if math.isfinite(x) else None  # DPFP 1x1: phi(q) . phi(-q) = 0
  results = [{"grid": f"{m}x{n}", "dim": d, "kernel": kernel,
              "ratio": finite(contrast(d, m, n, kernel, args.trials)),
              "arccos_limit": arccos_ratio(m, n) if kernel == "relu" and m * n > 1 else None}
             for kernel in ("relu", "dpfp") for m, n in GRIDS for d in dims]
  print("| kernel | grid M x N | D | aligned / anti-aligned kernel | arc-cosine limit |")
  print("|---|---|---|---|---|")
  for r in results:
    limit = "" if r["arccos_limit"] is None else f"{r['arccos_limit']:.2f}"
    ratio = "inf" if r["ratio"] is None else f"{r['ratio']:.2f}"
    print(f"| {r['kernel']} | {r['grid']} | {r['dim']} | {ratio} | {limit} |")
  simplex = {f"{m}x{n}": arccos_ratio(m, n, -1 / 8) for m, n in GRIDS}
  print("arc-cosine limit against the nearest of nine simplex keys (cos = -1/8): "
        + ", ".join(f"{g} {r:.2f}" for g, r in simplex.items()))
  output.write_json(args.out, {
      "results": results, "arccos_limit_vs_simplex_key": simplex,
      "command": f"python -m mimojax.analysis.kernel_contrast --dims={args.dims} "
                 f"--trials={args.trials}",
      **output.environment()})


if __name__ == "__main__":
  main()
