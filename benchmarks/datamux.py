"""DataMUX MNIST CNN inference throughput and MACs vs N (App. A.10-A.11; MIMONets App. E.2).

    python benchmarks/datamux.py                  # CNN+Nonlinear(8x), N = 1..16, ~1 min on 2 CPUs
    python benchmarks/datamux.py --maps 1 --mimoconv   # CNN+Nonlinear(1x), plus MIMOConv-10-1

Every network classifies the *same* ``--batch`` 20x20x1 images (divisible by every N): the
jitted inference forward pass, compiled once before timing. Rounds time every network once,
in turn (interleaved, so machine-load drift hits all alike); the reported time is the median
over ``--repeats`` rounds and the speed-ups are ratios of those medians from this one run.
MACs per image are counted from the model (``analysis.macs``, paper convention) next to
MIMONets' figure, which counts the demux layer per image (``macs.datamux_paper_macs``).
With ``--mimoconv`` MIMOConv-10-1 at the same N runs in the same rounds.

Prints markdown tables and writes JSON to ``benchmarks/results/datamux.json``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks.mimoconv import numpy_variables  # noqa: E402
from mimojax.analysis import macs  # noqa: E402
from mimojax.models.datamux_vision import CNN_MUXES  # noqa: E402
from mimojax.models.datamux_vision import DataMuxCNN  # noqa: E402
from mimojax.models.wide_resnet import MIMOConv  # noqa: E402

MNIST = (20, 20, 1)
NS = (1, 2, 4, 8, 16)


def networks(maps: int, mux: str, mimoconv: bool) -> list[tuple[str, str, int, object]]:
  """(name, family, N, module) of every benchmarked network."""
  label = f"DataMUX CNN+{mux}" + (f"({maps}x)" if mux == "nonlinear" else "")
  rows = [(f"{label} N={n}", label, n,
           DataMuxCNN(num_instances=n, mux=mux, mux_maps=maps if mux == "nonlinear" else 1))
          for n in NS]
  if mimoconv:
    rows += [(f"MIMOConv-10-1 N={n}", "MIMOConv-10-1", n,
              MIMOConv(num_classes=10, num_channels=n, stage_sizes=(1, 1, 1), width=1,
                       initial_width=1, activation="prelu", layout="official")) for n in NS]
  return rows


def time_networks(rows, batch: int, repeats: int) -> list[dict]:
  """Median seconds per batch of every network, timed in interleaved rounds."""
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch,) + MNIST), jnp.float32)
  runs = []
  for name, family, n, model in rows:
    variables = numpy_variables(model, (n,) + MNIST)
    start = time.perf_counter()
    compiled = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False)).lower(
        variables, x).compile()
    runs.append({"network": name, "family": family, "n": n, "fn": compiled,
                 "variables": variables, "compile_s": time.perf_counter() - start,
                 "times": [], "mmac": macs.macs_per_sample(model, MNIST)["total"] / 1e6,
                 "paper_count_mmac": (macs.datamux_paper_macs(model, MNIST) / 1e6
                                      if isinstance(model, DataMuxCNN) else None)})

  def run(r):
    start = time.perf_counter()
    r["fn"](r["variables"], x).block_until_ready()
    return time.perf_counter() - start

  common.interleaved_rounds(runs, repeats, run)
  by_family = {(r["family"], r["n"]): r for r in runs}
  results = []
  for r in runs:
    base = by_family[(r["family"], 1)]
    median = statistics.median(r["times"])
    results.append({
        "network": r["network"], "n": r["n"], "batch": batch, "median_s": median,
        "images_per_s": batch / median, "times_s": r["times"], "compile_s": r["compile_s"],
        "speedup_vs_n1": statistics.median(base["times"]) / median,
        "speedup_vs_n1_paired": statistics.median(
            b / t for b, t in zip(base["times"], r["times"])),
        "mmac_per_image": r["mmac"], "paper_count_mmac_per_image": r["paper_count_mmac"]})
  return results


def table(results: list[dict]) -> str:
  paper = {1: 0.88, 16: 0.65}
  fmt = lambda v: "-" if v is None else f"{v:.4g}"
  return common.markdown_table(
      ["network", "batch", "median s/batch", "images/s", "vs N=1", "vs N=1 (per-round median)",
       "MMAC/img", "MMAC/img (demux per image)", "MIMONets"],
      [[r["network"], r["batch"], f"{r['median_s']:.5f}", f"{r['images_per_s']:.0f}",
        f"{r['speedup_vs_n1']:.2f}x", f"{r['speedup_vs_n1_paired']:.2f}x",
        fmt(r["mmac_per_image"]), fmt(r["paper_count_mmac_per_image"]),
        fmt(paper.get(r["n"]) if r["network"].startswith("DataMUX CNN+nonlinear(8x)")
            else None)] for r in results])


def main(argv=None) -> None:
  parser = common.parser(__doc__)
  parser.add_argument("--batch", type=int, default=512, help="images per batch (N | batch)")
  parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
  parser.add_argument("--mux", default="nonlinear", choices=CNN_MUXES)
  parser.add_argument("--maps", type=int, default=8, choices=(1, 4, 8),
                      help="nonlinear mux: feature maps per instance")
  parser.add_argument("--mimoconv", action="store_true", help="also time MIMOConv-10-1")
  args = common.parse_args(parser, "datamux.json", argv=argv)
  if args.batch % max(NS):
    raise ValueError(f"--batch={args.batch} must be divisible by {max(NS)}")
  device = jax.devices()[0]
  print(f"jax {jax.__version__}, {device.platform} ({device.device_kind}), "
        f"{os.cpu_count()} CPUs")
  results = time_networks(networks(args.maps, args.mux, args.mimoconv), args.batch,
                          args.repeats)
  print(f"\nInference throughput (median of {args.repeats} interleaved rounds)\n")
  print(table(results))
  common.write_result(args.out, {"batch": args.batch, "repeats": args.repeats,
                                 "mux": args.mux, "maps": args.maps, "results": results})


if __name__ == "__main__":
  main()
