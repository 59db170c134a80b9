"""DataMUX inference throughput vs N: the MNIST CNN with its MACs (App. A.10-A.11; MIMONets
App. E.2) and the DataMUX Transformer (Sec. 3) beside the plain Transformer.

    python benchmarks/datamux.py                  # CNN+Nonlinear(8x), N = 1..16, ~1 min on 2 CPUs
    python benchmarks/datamux.py --maps 1 --mimoconv   # CNN+Nonlinear(1x), plus MIMOConv-10-1
    python benchmarks/datamux.py --transformer    # DataMUX Transformer vs the plain one, ~1 min

``--transformer`` times the ListOps CPU model (``experiments/favor_s_lra.py:model=datamux``:
2 post-LN layers, E = 64, 4 heads of 16, FFN 128, index demux) at N = 1..16 and the plain
softmax Transformer classifier of the same sizes (what a user would run one sequence per
row) on the same ``--batch`` sequences of ``--length`` token ids.

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
from mimojax.models.datamux import DataMux  # noqa: E402
from mimojax.models.datamux_vision import CNN_MUXES  # noqa: E402
from mimojax.models.datamux_vision import DataMuxCNN  # noqa: E402
from mimojax.models.transformer import Transformer  # noqa: E402
from mimojax.models.wide_resnet import MIMOConv  # noqa: E402
from mimojax.nn.attention import AttentionSpec  # noqa: E402

MNIST = (20, 20, 1)
NS = (1, 2, 4, 8, 16)
VOCAB = 16  # ListOps ids


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


def transformers(length: int) -> list[tuple[str, str, int, object]]:
  """(name, family, N, module): the DataMUX Transformer of the ListOps CPU study at each N
  and the plain Transformer classifier of the same sizes."""
  spec = AttentionSpec(num_heads=4, head_dim=16, attention="softmax")
  sizes = dict(vocab_size=VOCAB, num_classes=10, num_layers=2, embed_dim=64, mlp_dim=128)
  rows = [("Transformer", "Transformer", 1,
           Transformer(spec=spec, head="classifier", max_len=length, classifier_dim=128,
                       **sizes))]
  rows += [(f"DataMUX Transformer N={n}", "DataMUX Transformer", n,
            DataMux(spec=spec, head="classifier", n=n, max_len=length + n + 1,
                    norm_position="post", activation="gelu_exact", **sizes)) for n in NS]
  return rows


def time_networks(rows, batch: int, repeats: int, length: int | None = None) -> list[dict]:
  """Median seconds per batch of every network, timed in interleaved rounds: MNIST images,
  or with ``length`` token-id sequences."""
  rng = np.random.default_rng(0)
  if length is None:
    x = jnp.asarray(rng.uniform(size=(batch,) + MNIST), jnp.float32)
  else:
    x = jnp.asarray(rng.integers(1, VOCAB, (batch, length)), jnp.int32)
  runs = []
  for name, family, n, model in rows:
    if length is None:
      variables = numpy_variables(model, (n,) + MNIST)
    else:
      variables = jax.jit(lambda x0, model=model: model.init(
          {"params": jax.random.key(0), "constants": jax.random.key(1)}, x0, train=False))(
              x[:n])
    start = time.perf_counter()
    compiled = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False)).lower(
        variables, x).compile()
    runs.append({"network": name, "family": family, "n": n, "fn": compiled,
                 "variables": variables, "compile_s": time.perf_counter() - start,
                 "times": [],
                 "mmac": (macs.macs_per_sample(model, MNIST)["total"] / 1e6
                          if length is None else None),
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
    base = runs[0] if length is not None else by_family[(r["family"], 1)]
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
      ["network", "batch", "median s/batch", "inputs/s", "vs N=1", "vs N=1 (per-round median)",
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
  parser.add_argument("--transformer", action="store_true",
                      help="time the DataMUX Transformer against the plain one instead")
  parser.add_argument("--length", type=int, default=128, help="--transformer: tokens per input")
  args = common.parse_args(parser, "datamux.json", argv=argv)
  if args.transformer and args.out == os.path.join(common.RESULTS, "datamux.json"):
    args.out = os.path.join(common.RESULTS, "datamux_transformer.json")
  if args.batch % max(NS):
    raise ValueError(f"--batch={args.batch} must be divisible by {max(NS)}")
  device = jax.devices()[0]
  print(f"jax {jax.__version__}, {device.platform} ({device.device_kind}), "
        f"{os.cpu_count()} CPUs")
  if args.transformer:
    results = time_networks(transformers(args.length), args.batch, args.repeats, args.length)
  else:
    results = time_networks(networks(args.maps, args.mux, args.mimoconv), args.batch,
                            args.repeats)
  print(f"\nInference throughput (median of {args.repeats} interleaved rounds; ratios against "
        f"{results[0]['network']})\n")
  print(table(results))
  common.write_result(args.out, {"batch": args.batch, "repeats": args.repeats,
                                 "mux": args.mux, "maps": args.maps,
                                 "length": args.length if args.transformer else None,
                                 "results": results})


if __name__ == "__main__":
  main()
