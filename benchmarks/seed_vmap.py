"""What a vmapped seed costs: one program of K seeds vs K single-seed programs, side by side.

    python benchmarks/seed_vmap.py [--model=mimoformer] [--task=ar] [--kernel=relu]
        [--seeds=2,5] [--rounds=5] [--steps=20] [--out=benchmarks/results/seed_vmap.json]

`seeds.num = K` trains K models in one `jit(vmap(train_step))` program (mimojax.train.loop).
For the Table 3 model of experiments/synthetic.py (`model=...,task=...,seeds=K`), this times
the compiled train step of seeds = 1 and of every K in `--seeds` on the same batches, in
interleaved rounds of `--steps` steps after a warm-up, and reports per program the median
steps/s, seed-steps/s (steps/s x K) and, as the median over rounds of the per-round ratio,
how many seeds' steps the vmapped program runs in the time the single-seed program runs one
step each of K seeds one after another (`vmap_speedup` > 1: vmapping pays). It also times the
input pipeline (`--steps` batches from the training iterator, placed on the mesh), which a
vmapped run pays once per step for all K seeds and K single-seed runs pay K times;
`end_to_end_speedup` adds it to both sides.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks.train_step import run_steps, single_step_batches  # noqa: E402
from experiments import synthetic  # noqa: E402
from mimojax.train import loop  # noqa: E402


def make_trainer(model, task, kernel, seeds, steps, data_dir):
  config = synthetic.get_config(f"model={model},task={task},seeds={seeds}")
  if kernel is not None:
    config.model.kernel = kernel
  config.data.data_dir = data_dir
  config.mesh.data = 1
  trainer = loop.Trainer(config, "/tmp")
  iterator = trainer.train_iterator()
  batches = single_step_batches(trainer, iterator, steps)
  return {"trainer": trainer, "state": trainer.init_state(), "batches": batches, "times": [],
          "iterator": iterator}


def time_batches(r, steps):
  start = time.perf_counter()
  batches = single_step_batches(r["trainer"], r["iterator"], steps)
  jax.block_until_ready(batches)
  return time.perf_counter() - start


def main():
  parser = common.parser(__doc__)
  parser.add_argument("--model", default="mimoformer",
                      choices=("transformer", "performer", "mimoformer", "mimoformer_dpfp"))
  parser.add_argument("--task", default="ar", choices=("ar", "ih"))
  parser.add_argument("--kernel", default=None, choices=("relu", "exp"),
                      help="model.kernel (default: the experiment's)")
  parser.add_argument("--seeds", default="2,5", help="comma-separated K > 1")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20)
  args = common.parse_args(parser, "seed_vmap.json", data_dir=True)
  counts = [int(k) for k in args.seeds.split(",")]
  if any(k < 2 for k in counts):
    raise SystemExit(f"--seeds must list integers >= 2, got {args.seeds!r}")

  runs = {k: make_trainer(args.model, args.task, args.kernel, k, args.steps, args.data_dir)
          for k in [1] + counts}
  data = []  # the input pipeline, timed at the start of every round
  common.interleaved_rounds(runs.values(), args.rounds, run_steps,
                            before=lambda: data.append(time_batches(runs[1], args.steps)))

  single, data = np.asarray(runs[1]["times"]), np.asarray(data)
  rows = []
  for k, r in runs.items():
    times = np.asarray(r["times"])
    rows.append({"seeds": k, "steps_per_s": float(np.median(args.steps / times)),
                 "seed_steps_per_s": float(np.median(k * args.steps / times)),
                 "vmap_speedup": float(np.median(k * single / times)),
                 "end_to_end_speedup": float(np.median(k * (single + data) / (times + data)))})
  cfg = runs[1]["trainer"].config
  shape = {"model": args.model, "task": args.task, "kernel": cfg.model.kernel,
           "batch": cfg.train.batch_size, "layers": cfg.model.num_layers,
           "embed": cfg.model.embed_dim, "seq_len": runs[1]["trainer"].info.seq_len}
  data_ms = float(np.median(data / args.steps) * 1e3)
  print(f"\nTrain steps of K vmapped seeds vs one seed ({shape}), median of {args.rounds} "
        f"interleaved rounds of {args.steps} steps; input pipeline {data_ms:.1f} ms/batch\n")
  print(common.markdown_table(
      ["seeds K", "steps/s", "seed-steps/s", "vmap speed-up (steps)", "with input pipeline"],
      [[row["seeds"], f"{row['steps_per_s']:.2f}", f"{row['seed_steps_per_s']:.2f}",
        f"{row['vmap_speedup']:.2f}x", f"{row['end_to_end_speedup']:.2f}x"] for row in rows]))
  common.write_result(args.out, {"shape": shape, "rounds": args.rounds, "steps": args.steps,
                                 "data_ms_per_batch": data_ms, "rows": rows})


if __name__ == "__main__":
  main()
