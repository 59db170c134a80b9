"""Input pipeline of the synthetic tasks: batches read from the tfds source vs from memory.

    python benchmarks/input_pipeline.py [--task=ar] [--rounds=7] [--batches=200]
        [--out=benchmarks/results/input_pipeline.json]

`data.load_split` holds the synthetic splits in memory (`data.sources.in_memory`). This times
the training iterator of experiments/synthetic.py (`data.train_batches`, batch 32, grain
with its read threads) over the same train split read two ways: straight from tfds's
array_record source, which decodes every example on each read, and from the in-memory
copy. Interleaved rounds of `--batches` batches after a warm-up; it reports the median
ms per batch of each and their ratio (median over rounds of the per-round ratio).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from experiments import synthetic  # noqa: E402
from mimojax import data as data_lib  # noqa: E402
from mimojax.data import builders  # noqa: E402
from mimojax.train import config as config_lib  # noqa: E402


def time_batches(iterator, count):
  start = time.perf_counter()
  for _ in range(count):
    next(iterator)
  return time.perf_counter() - start


def main():
  parser = common.parser(__doc__)
  parser.add_argument("--task", default="ar", choices=("ar", "ih"))
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--batches", type=int, default=200)
  args = common.parse_args(parser, "input_pipeline.json", data_dir=True)

  config = synthetic.get_config(f"task={args.task}")
  config.data.data_dir = args.data_dir
  config.train.num_epochs = -1
  config.train.num_steps = 1
  data = config_lib.from_dict(config).data
  builder = builders.AssocRecall if args.task == "ar" else builders.InductionHead
  sources = {"tfds array_record": builders.prepare(builder, data).as_data_source("train"),
             "in memory": data_lib.load_split(data, "train")[0]}
  iterators = {name: data_lib.train_batches(source, config.train.batch_size, 0)
               for name, source in sources.items()}
  for iterator in iterators.values():  # warm-up: start the read threads, fill the buffer
    time_batches(iterator, 20)
  times = {name: [] for name in iterators}
  for _ in range(args.rounds):
    for name, iterator in iterators.items():
      times[name].append(time_batches(iterator, args.batches))

  slow, fast = np.asarray(times["tfds array_record"]), np.asarray(times["in memory"])
  rows = [{"source": name, "ms_per_batch": float(np.median(t) / args.batches * 1e3)}
          for name, t in times.items()]
  speedup = float(np.median(slow / fast))
  print(f"\nTraining batches of {config.train.batch_size} ({config.data.name}, train split), "
        f"median of {args.rounds} interleaved rounds of {args.batches}\n")
  print(common.markdown_table(["source", "ms/batch"],
                              [[row["source"], f"{row['ms_per_batch']:.2f}"] for row in rows]))
  print(f"\nin memory is {speedup:.1f}x faster")
  common.write_result(args.out, {"task": config.data.name, "batch": config.train.batch_size,
                                 "rounds": args.rounds, "batches": args.batches, "rows": rows,
                                 "speedup": speedup})


if __name__ == "__main__":
  main()
