"""Forward-time benchmark of softmax attention, FAVOR+ and FAVOR+S (Sec. 4.1, Eq. 19).

    python benchmarks/attention.py [--quick] [--out FILE.json]

Every call processes the same 16 sequences (H = 4 heads, D = 64, R = 256 ReLU random
features, a padding mask with every token real): softmax attention and FAVOR+ see them as 16
separate sequences; FAVOR+S sees them as 16 / (M N) groups on an M x N grid, with the att.
normalisation (per channel, Eq. 67) or the att.+MLP one (superposed output, Eq. 68). Each
variant is jitted and warmed up, then the variants of one sequence length are timed in
interleaved rounds (the order rotates every round); the median wall time and the median
process CPU time (all threads; steadier than wall time on a shared machine) are kept.
Speed-ups and FLOP ratios are FAVOR+'s per-sequence cost over the variant's; "per-round" is
the median over rounds of the same-round ratio, which cancels drift in machine load.
Softmax at long L keeps its score tensor under ``SOFTMAX_ELEMENTS`` by running fewer
sequences per call (reported per sequence like the rest). FLOPs come from XLA's cost analysis
of the compiled program. Prints a markdown table and writes JSON (default
``benchmarks/results/attention.json``).
"""

import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from mimojax.ops import attention  # noqa: E402

HEADS, DIM, FEATURES, SEQUENCES = 4, 64, 256, 16
SOFTMAX_ELEMENTS = 2**28  # largest (sequences x H x L x L) score tensor softmax may build
FULL = {"lengths": (256, 1024, 4096), "rounds": {256: 21, 1024: 15, 4096: 5}}
QUICK = {"lengths": (256, 1024), "rounds": {256: 5, 1024: 3}}


def flops(fn, args):
  """XLA cost-analysis FLOPs of the jitted ``fn(*args)`` (None when unavailable)."""
  analysis = fn.lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  value = (analysis or {}).get("flops")
  return None if value is None else float(value)


def variants(length, rng):
  """name -> (jitted fn, args, sequences per call) for one sequence length."""
  q_rng, k_rng, v_rng, p_rng, key_rng = jax.random.split(rng, 5)
  shape = (SEQUENCES, length, HEADS, DIM)
  q, k, v = (jax.random.normal(r, shape) for r in (q_rng, k_rng, v_rng))
  mask = jnp.ones(shape[:2], bool)
  projection = attention.gaussian_orthogonal_matrix(p_rng, FEATURES, DIM)
  kernel_fn = functools.partial(attention.relu_kernel, projection=projection)
  out = {}
  soft_seqs = max(1, min(SEQUENCES, SOFTMAX_ELEMENTS // (HEADS * length * length)))
  out["softmax"] = (jax.jit(attention.softmax_attention),
                    (q[:soft_seqs], k[:soft_seqs], v[:soft_seqs], mask[:soft_seqs]), soft_seqs)
  out["favor"] = (jax.jit(lambda q, k, v, mask: attention.favor_attention(
      q, k, v, kernel_fn, mask=mask)), (q, k, v, mask), SEQUENCES)
  for grid in (2, 4):
    keys = jnp.where(jax.random.bernoulli(key_rng, 0.5, (grid, grid, DIM)), 1.0, -1.0)
    to_grid = lambda x: x.reshape((SEQUENCES // grid**2, grid, grid) + x.shape[1:])
    for superposed in (False, True):
      fn = functools.partial(attention.favor_s_attention, keys=keys, kernel_fn=kernel_fn,
                             superposed_output=superposed)
      name = f"favor_s {grid}x{grid} {'att+mlp' if superposed else 'att'}"
      out[name] = (jax.jit(lambda q, k, v, mask, fn=fn: fn(q, k, v, mask=mask)),
                   tuple(to_grid(x) for x in (q, k, v, mask)), SEQUENCES)
  return out


def time_length(length, rounds, rng):
  """Median wall time per call of every variant at one length, timed in interleaved rounds."""
  cases = variants(length, rng)
  for fn, args, _ in cases.values():  # compile and warm up
    for _ in range(2):
      jax.block_until_ready(fn(*args))
  wall = {name: [] for name in cases}
  cpu = {name: [] for name in cases}
  names = list(cases)
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      fn, args, _ = cases[name]
      start, start_cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn(*args))
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  rows = []
  for name, (fn, args, seqs) in cases.items():
    median = statistics.median(wall[name])
    rows.append({"variant": name, "length": length, "sequences_per_call": seqs,
                 "rounds": rounds, "median_call_s": median, "per_sequence_ms": 1e3 * median / seqs,
                 "cpu_per_sequence_ms": 1e3 * statistics.median(cpu[name]) / seqs,
                 "gflops_per_sequence": _per_seq(flops(fn, args), seqs)})
  favor = next(row for row in rows if row["variant"] == "favor")
  for row in rows:
    row["speedup_vs_favor"] = favor["per_sequence_ms"] / row["per_sequence_ms"]
    seqs = row["sequences_per_call"]
    row["speedup_per_round_median"] = statistics.median(  # cancels drift in machine load
        (f / SEQUENCES) / (t / seqs) for f, t in zip(wall["favor"], wall[row["variant"]]))
    row["cpu_speedup_vs_favor"] = favor["cpu_per_sequence_ms"] / row["cpu_per_sequence_ms"]
    row["flops_ratio_vs_favor"] = (
        None if not (row["gflops_per_sequence"] and favor["gflops_per_sequence"])
        else favor["gflops_per_sequence"] / row["gflops_per_sequence"])
  return rows


def _per_seq(total, seqs):
  return None if total is None else total / seqs / 1e9


def markdown(rows):
  """The results as a markdown table."""
  fmt = lambda x, spec: "n/a" if x is None else format(x, spec)
  return common.markdown_table(
      ["L", "variant", "seqs/call", "wall ms / seq", "speed-up vs FAVOR+", "per-round",
       "CPU ms / seq", "CPU speed-up", "GFLOP / seq", "FLOP ratio"],
      [[row["length"], row["variant"], row["sequences_per_call"],
        f"{row['per_sequence_ms']:.2f}", f"{row['speedup_vs_favor']:.2f}x",
        f"{row['speedup_per_round_median']:.2f}x", f"{row['cpu_per_sequence_ms']:.2f}",
        f"{row['cpu_speedup_vs_favor']:.2f}x", fmt(row["gflops_per_sequence"], ".3f"),
        fmt(row["flops_ratio_vs_favor"], ".2f")] for row in rows])


def main():
  parser = common.parser(__doc__)
  parser.add_argument("--quick", action="store_true", help="L in {256, 1024}, few rounds")
  args = common.parse_args(parser, "attention.json")
  setting = QUICK if args.quick else FULL
  info = common.machine_info()
  load_before = os.getloadavg()
  rows = []
  for i, length in enumerate(setting["lengths"]):
    rows += time_length(length, setting["rounds"][length], jax.random.key(i))
  load_after = os.getloadavg()
  print(f"{info['cpu']}, {info['cpu_count']} cores, jax {info['jax']} ({info['backend']}); "
        f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
  print(markdown(rows))
  common.write_result(args.out, {
      "load_average_before": load_before, "load_average_after": load_after,
      "quick": args.quick, "heads": HEADS, "head_dim": DIM, "num_features": FEATURES,
      "sequences_per_call": SEQUENCES, "rows": rows})


if __name__ == "__main__":
  main()
