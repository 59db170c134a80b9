"""MIMOConv inference throughput and MACs (paper Sec. 5.1, Table A2, App. E.2).

    python benchmarks/mimoconv.py                 # throughput + MACs, ~5 min on 2 CPU cores
    python benchmarks/mimoconv.py --macs-only     # Table A2 / MNIST MAC reproduction, ~10 s
    python benchmarks/mimoconv.py --xla-macs      # ... plus XLA's cost analysis per model

Throughput: every network classifies the *same* batch of images (``--batch`` 32x32x3 images
for WideResNet-28-10 and MIMOConv-28-10 at N = 1, 2, 4; ``--mnist-batch`` 20x20x1 images
for MIMOConv-10-1 at N = 1, 2, 4, 8, 16), jitted inference forward pass (BN running
statistics), compiled once before timing. Each round times every network once, in turn
(interleaved, so machine-load drift hits all alike); the reported time is the median over
``--repeats`` rounds and the speed-ups are ratios of those medians from this one run.
Parameters are drawn with numpy into the init structure (``jax.eval_shape``; compiling the
threefry initialisers of a 36M-parameter net costs ~25 s on CPU and values do not change the
work). The batch of 64 divides by every N and gives N = 4 sixteen superpositions per pass
(with 16 images, N = 4 runs 4-row convolutions and loses CPU efficiency: docs/benchmarks.md).

Prints markdown tables and writes JSON to ``benchmarks/results/mimoconv.json``
(``mimoconv_macs.json`` with ``--macs-only``).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from mimojax.analysis import macs  # noqa: E402
from mimojax.models.wide_resnet import MIMOConv  # noqa: E402
from mimojax.models.wide_resnet import WideResNet  # noqa: E402

CIFAR = (32, 32, 3)
MNIST = (20, 20, 1)


def networks(mnist: bool) -> list[tuple[str, object, tuple, str]]:
  """(name, module, image shape, Table A2 / App. E.2 key) of every benchmarked network."""
  rows = [("WideResNet-28-10", WideResNet(num_classes=100, layout="official"), CIFAR,
           "wrn-28-10")]
  for n in (1, 2, 4):
    rows.append((f"MIMOConv-28-10 N={n}",
                 MIMOConv(num_classes=100, num_channels=n, width=10, initial_width=4,
                             activation="prelu", layout="official"),
                 CIFAR, f"mimoconv-28-10 N={n}"))
  if mnist:
    for n in (1, 2, 4, 8, 16):
      rows.append((f"MIMOConv-10-1 N={n}",
                   MIMOConv(num_classes=10, num_channels=n, stage_sizes=(1, 1, 1), width=1,
                               initial_width=1, activation="prelu", layout="official"),
                   MNIST, f"mimoconv-10-1 N={n}"))
  return rows


def numpy_variables(model, x_shape, seed: int = 0):
  """Init-shaped variables with numpy values (kaiming-scale kernels, unit BN statistics)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(
      lambda x: model.init({"params": jax.random.key(0), "constants": jax.random.key(1)},
                           x, train=False),
      jax.ShapeDtypeStruct(x_shape, jnp.float32))

  def fill(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    if name.endswith(("var", "scale")):
      value = np.ones(leaf.shape)
    elif name.endswith("slope"):
      value = np.full(leaf.shape, 0.5)
    elif leaf.ndim >= 2:
      value = rng.normal(0.0, math.sqrt(2.0 / math.prod(leaf.shape[:-1])), leaf.shape)
    else:
      value = np.zeros(leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def mac_rows(mnist: bool, xla: bool) -> list[dict]:
  """MACs per image of every network in three conventions (and XLA's, if asked)."""
  rows = []
  for name, model, shape, key in networks(mnist):
    row = {"network": name, "paper_mmac": macs.PAPER_MMAC.get(key, {}).get("total")}
    for convention in macs.CONVENTIONS:
      parts = macs.macs_per_sample(model, shape, convention=convention)
      row[convention] = {k: v / 1e6 for k, v in parts.items()}
    if xla:
      row["xla_mmac"] = macs.xla_macs_per_sample(model, shape) / 1e6
    rows.append(row)
  return rows


def mac_table(rows: list[dict]) -> str:
  """Markdown: Table A2 columns (profiler convention), totals in every convention."""
  has_xla = any("xla_mmac" in r for r in rows)
  header = ["network", "first conv", "binding", "rest", "unbinding", "FCL",
            "total (paper conv.)", "total (+BN/act/bias)", "paper", "diff", "in-bounds"]
  fmt = lambda v: f"{v:.4g}" if v else "-"
  cells = []
  for r in rows:
    full, paper = r["ptflops"], r["paper_mmac"]
    best = full["total"]
    diff = "-"
    if paper:
      diff = (f"{100 * (r['paper']['total'] - paper) / paper:+.2f}% / "
              f"{100 * (best - paper) / paper:+.2f}%")
    cells.append([r["network"]] + [fmt(full[part]) for part in
                                   ("first_conv", "binding", "rest", "unbinding", "fcl")]
                 + [f"{r['paper']['total']:.4g}", f"{best:.4g}", paper if paper else "-", diff,
                    f"{r['in_bounds']['total']:.4g}"]
                 + ([f"{r['xla_mmac']:.4g}"] if has_xla else []))
  return common.markdown_table(header + (["XLA"] if has_xla else []), cells)


def time_networks(mnist: bool, batch: int, mnist_batch: int, repeats: int) -> list[dict]:
  """Median seconds per batch of every network, timed in interleaved rounds."""
  rng = np.random.default_rng(0)
  inputs = {CIFAR: jnp.asarray(rng.normal(size=(batch,) + CIFAR), jnp.float32),
            MNIST: jnp.asarray(rng.normal(size=(mnist_batch,) + MNIST), jnp.float32)}
  runs = []
  for name, model, shape, _ in networks(mnist):
    x = inputs[shape]
    variables = numpy_variables(model, (getattr(model, "num_channels", 1),) + shape)
    start = time.perf_counter()
    compiled = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False)).lower(
        variables, x).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    compiled(variables, x).block_until_ready()  # warm-up
    runs.append({"network": name, "fn": compiled, "variables": variables, "x": x,
                 "batch": x.shape[0], "compile_s": compile_s,
                 "xla_mmac": float(cost["flops"]) / 2 / x.shape[0] / 1e6, "times": []})
  for _ in range(repeats):
    for run in runs:
      start = time.perf_counter()
      run["fn"](run["variables"], run["x"]).block_until_ready()
      run["times"].append(time.perf_counter() - start)
  results = []
  for run in runs:
    median = statistics.median(run["times"])
    results.append({"network": run["network"], "batch": run["batch"],
                    "median_s": median, "images_per_s": run["batch"] / median,
                    "times_s": run["times"], "compile_s": run["compile_s"],
                    "xla_mmac_per_image": run["xla_mmac"]})
  return results


def add_ratios(results: list[dict]) -> None:
  """Speed-ups vs the N=1 model of the same family (ratio of medians, and the median of the
  per-round ratios, which cancels load drift between rounds) and vs WideResNet-28-10."""
  by_name = {r["network"]: r for r in results}
  for r in results:
    family = r["network"].split(" N=")[0]
    base = by_name.get(f"{family} N=1")
    if base is not None:
      r["speedup_vs_n1"] = r["images_per_s"] / base["images_per_s"]
      r["speedup_vs_n1_paired"] = statistics.median(
          (r["batch"] / t) / (base["batch"] / b) for b, t in zip(base["times_s"], r["times_s"]))
    if family == "MIMOConv-28-10" and "WideResNet-28-10" in by_name:
      r["speedup_vs_wrn"] = r["images_per_s"] / by_name["WideResNet-28-10"]["images_per_s"]


def throughput_table(results: list[dict]) -> str:
  ratio = lambda r, key: f"{r[key]:.2f}x" if key in r else "-"
  return common.markdown_table(
      ["network", "batch", "median s/batch", "images/s", "vs N=1", "vs N=1 (per-round median)",
       "vs WRN-28-10", "XLA MMAC/img"],
      [[r["network"], r["batch"], f"{r['median_s']:.4f}", f"{r['images_per_s']:.1f}",
        ratio(r, "speedup_vs_n1"), ratio(r, "speedup_vs_n1_paired"),
        ratio(r, "speedup_vs_wrn"), f"{r['xla_mmac_per_image']:.4g}"] for r in results])


def main(argv=None) -> None:
  parser = common.parser(__doc__)
  parser.add_argument("--batch", type=int, default=64, help="CIFAR-sized images per batch")
  parser.add_argument("--mnist-batch", type=int, default=256, help="MNIST images per batch")
  parser.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds")
  parser.add_argument("--no-mnist", action="store_true", help="skip MIMOConv-10-1")
  parser.add_argument("--macs-only", action="store_true", help="MAC table only, no timing")
  parser.add_argument("--xla-macs", action="store_true", help="add XLA's MACs to the table")
  parser.add_argument("--out", default=None, help="JSON output path (default "
                      "benchmarks/results/mimoconv.json, or mimoconv_macs.json with --macs-only)")
  args = common.parse_args(parser, None, argv=argv)
  if args.batch % 4 or args.mnist_batch % 16:
    raise ValueError(f"--batch must divide by 4 and --mnist-batch by 16, got {args.batch}, "
                     f"{args.mnist_batch}")
  mnist = not args.no_mnist
  device = jax.devices()[0]
  header = (f"jax {jax.__version__}, {device.platform} ({device.device_kind}), "
            f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
  print(header)
  rows = mac_rows(mnist, args.xla_macs)
  print("\nMMAC per image (Table A2 columns counted with BN/activation/bias like the paper's "
        "profiler; diff = paper conv. / +BN-act-bias vs the paper)\n")
  print(mac_table(rows))
  report = {"environment": header, "macs": rows}
  if not args.macs_only:
    results = time_networks(mnist, args.batch, args.mnist_batch, args.repeats)
    add_ratios(results)
    print(f"\nInference throughput (median of {args.repeats} interleaved rounds)\n")
    print(throughput_table(results))
    report.update(throughput=results, batch=args.batch, mnist_batch=args.mnist_batch,
                  repeats=args.repeats)
  common.write_result(args.out or os.path.join(
      common.RESULTS, "mimoconv_macs.json" if args.macs_only else "mimoconv.json"), report)


if __name__ == "__main__":
  main()
