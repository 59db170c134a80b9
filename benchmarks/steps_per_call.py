"""Training steps per second of the loop against `train.steps_per_call`.

    python benchmarks/steps_per_call.py [--model=mimoformer] [--task=ar] [--seeds=5]
        [--calls=1,4,12,52,156] [--steps=312] [--rounds=3]
        [--out=benchmarks/results/steps_per_call.json]

Each variant is a Trainer of the paper Table 3 config (experiments/synthetic.py) with
`train.steps_per_call = K`, so one compiled call scans K batches. A round trains `--steps`
steps through `Trainer.train_chunk`, the input pipeline included, as `train_and_evaluate`
does (no evaluations or checkpoints). The variants run in interleaved rounds after a
warm-up round that compiles them; the table gives the median steps/s and the median over
rounds of each variant's speed-up over K = 1. `--steps` must be a multiple of every K.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from experiments import synthetic  # noqa: E402
from mimojax.train import loop  # noqa: E402


def make_run(args, steps_per_call):
  config = synthetic.get_config(f"model={args.model},task={args.task},seeds={args.seeds}")
  config.data.data_dir = args.data_dir
  config.mesh.data = 1
  config.train.steps_per_call = steps_per_call
  trainer = loop.Trainer(config, "/tmp")
  return {"trainer": trainer, "state": trainer.init_state(),
          "iterator": trainer.train_iterator(), "next_step": 0, "times": []}


def run_round(r, steps):
  """Trains `steps` steps of run `r` as the loop does; returns the seconds taken."""
  trainer, state, i = r["trainer"], r["state"], r["next_step"]
  start = time.perf_counter()
  while i < r["next_step"] + steps:
    state, _, count = trainer.train_chunk(state, r["iterator"], i)
    i += count
  jax.block_until_ready(state)
  r["state"], r["next_step"] = state, i
  return time.perf_counter() - start


def main():
  parser = common.parser(__doc__)
  parser.add_argument("--model", default="mimoformer", choices=list(synthetic.MODELS))
  parser.add_argument("--task", default="ar", choices=list(synthetic.TASKS))
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--calls", default="1,4,12,52,156",
                      help="comma-separated train.steps_per_call values")
  parser.add_argument("--steps", type=int, default=312)
  parser.add_argument("--rounds", type=int, default=3)
  args = common.parse_args(parser, "steps_per_call.json", data_dir=True)
  calls = [int(k) for k in args.calls.split(",")]
  bad = [k for k in calls if k < 1 or args.steps % k]
  if bad:
    parser.error(f"--calls values {bad} must be positive divisors of --steps={args.steps}")

  runs = {k: make_run(args, k) for k in calls}
  # the warm-up compiles every chunk length the rounds use
  common.interleaved_rounds(runs.values(), args.rounds, lambda r: run_round(r, args.steps))

  base = np.asarray(runs[calls[0]]["times"])
  rows = []
  for k, r in runs.items():
    times = np.asarray(r["times"])
    rows.append({"steps_per_call": k, "steps_per_s": float(np.median(args.steps / times)),
                 "speedup_vs_first": float(np.median(base / times))})
  setup = {"model": args.model, "task": args.task, "seeds": args.seeds,
           "steps_per_round": args.steps, "rounds": args.rounds}
  print(f"\nTraining steps/s through the loop ({setup}; device {jax.devices()[0]})\n")
  print(common.markdown_table(
      ["steps per call", "steps/s", f"speed-up vs {calls[0]} per call"],
      [[row["steps_per_call"], f"{row['steps_per_s']:.1f}", f"{row['speedup_vs_first']:.2f}x"]
       for row in rows]))
  common.write_result(args.out, {"setup": setup, "rows": rows})


if __name__ == "__main__":
  main()
