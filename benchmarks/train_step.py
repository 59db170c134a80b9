"""Training steps per second: Performer vs MIMOFormer (att. and att.+MLP, M = N = 2 and 4).

    python benchmarks/train_step.py [--study=lra|synthetic] [--rounds=7] [--steps=20]
        [--out=benchmarks/results/train_step.json]

Every variant trains the same model shape on the same batches (one compiled, jitted
`train_step` each, single seed); variants are timed in interleaved rounds of `--steps`
steps after a warm-up, and the table reports the median steps/s and the median over
rounds of each variant's speed-up over Performer. `--study=lra` is the CPU ListOps model of
experiments/favor_s_lra.py (L = 128, E = 128, 4 heads); `--study=synthetic` the Table 3
model (L = 42, E = 32, 1 head).
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from experiments import favor_s_lra, synthetic  # noqa: E402
from mimojax.train import loop, mesh as mesh_lib  # noqa: E402

VARIANTS = [  # name, model, n, variant
    ("performer", "performer", 2, "att"),  # n is ignored for Performer
    ("mimo N=2 att", "mimoformer", 2, "att"),
    ("mimo N=2 att+MLP", "mimoformer", 2, "att_mlp"),
    ("mimo N=4 att", "mimoformer", 4, "att"),
    ("mimo N=4 att+MLP", "mimoformer", 4, "att_mlp"),
]


def make_config(study: str, model: str, n: int, variant: str, data_dir):
  if study == "lra":
    arg = f"model={model},n={n},variant={variant},shape=cpu"
    config = favor_s_lra.get_config(arg)
  else:
    config = synthetic.get_config(f"model={model},task=ar")
    if model == "mimoformer":
      config.mimo.m = config.mimo.n = n
      config.mimo.variant = variant
      config.eval.batch_size = n * n  # unused here; must be a multiple of the M x N group
  config.data.data_dir = data_dir
  config.mesh.data = 1
  return config


def single_step_batches(trainer, iterator, count):
  """`count` global batches from `iterator`, each as a stack of one (a call trains one step)."""
  return [mesh_lib.global_batch({k: v[None] for k, v in b.items()}, trainer.mesh,
                                step_axis=True)
          for b, _ in zip(iterator, range(count))]


def run_steps(r):
  """Runs ``r["batches"]`` through the trainer's main compiled step from ``r["state"]``;
  seconds."""
  state, trainer = r["state"], r["trainer"]
  train_step = trainer.train_step_for(trainer.schedule.base)
  start = time.perf_counter()
  for batch in r["batches"]:
    state, metrics = train_step(state, batch, trainer.train_keys)
  jax.block_until_ready((state, metrics))
  r["state"] = state
  return time.perf_counter() - start


def main():
  parser = common.parser(__doc__)
  parser.add_argument("--study", choices=("lra", "synthetic"), default="lra")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=20)
  args = common.parse_args(parser, "train_step.json", data_dir=True)

  runs = {}
  for name, model, n, variant in VARIANTS:
    trainer = loop.Trainer(make_config(args.study, model, n, variant, args.data_dir), "/tmp")
    state = trainer.init_state()
    batches = single_step_batches(trainer, trainer.train_iterator(), args.steps)
    runs[name] = {"trainer": trainer, "state": state, "batches": batches, "times": []}

  common.interleaved_rounds(runs.values(), args.rounds, run_steps)

  base = np.asarray(runs["performer"]["times"])
  rows = []
  for name, r in runs.items():
    times = np.asarray(r["times"])
    rows.append({"variant": name, "steps_per_s": float(np.median(args.steps / times)),
                 "speedup_vs_performer": float(np.median(base / times))})
  cfg = runs["performer"]["trainer"].config
  shape = {"study": args.study, "batch": cfg.train.batch_size, "layers": cfg.model.num_layers,
           "heads": cfg.model.num_heads, "head_dim": cfg.model.head_dim,
           "embed": cfg.model.embed_dim, "mlp": cfg.model.mlp_dim,
           "seq_len": runs["performer"]["trainer"].info.seq_len}
  print(f"\nTraining steps/s ({shape}), median of {args.rounds} interleaved rounds of "
        f"{args.steps} steps\n")
  print(common.markdown_table(
      ["variant", "steps/s", "speed-up vs Performer"],
      [[row["variant"], f"{row['steps_per_s']:.2f}", f"{row['speedup_vs_performer']:.2f}x"]
       for row in rows]))
  common.write_result(args.out, {"shape": shape, "rounds": args.rounds, "steps": args.steps,
                                 "rows": rows})


if __name__ == "__main__":
  main()
