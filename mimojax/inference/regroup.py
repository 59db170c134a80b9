"""Accuracy of a multiplexing model as RevMUX reports it: the test set regrouped into
multiplexed groups several times, the mean accuracy over the regroupings (xuyige/RevMUX:
``evaluation.py`` ``evaluation_test``: 10 reshuffles, seed 4141, eval batch 32), beside the
single-input accuracy of the frozen backbone.

    python -m mimojax.inference.regroup WORKDIR [SPLIT]   # writes WORKDIR/regrouped.json

``regrouped_accuracy`` works with any ``predict(batch) -> logits`` whose batch rows are
grouped in order (row ``g*N + i`` is instance i of group g, as every mimojax multiplexing
model groups them); ``evaluate_workdir`` restores a RevMUX workdir and runs both accuracies.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

from mimojax import data as data_lib
from mimojax.train import backbones

SHUFFLES = 10  # official evaluation_test(10, ...)
SEED = 4141  # official evaluation.py
BATCH_SIZE = 32  # official eval batch


def regrouped_accuracy(predict, source, batch_size: int = BATCH_SIZE,
                       num_shuffles: int = SHUFFLES, seed: int = SEED) -> dict:
  """Mean accuracy over ``num_shuffles`` random orders of ``source`` (examples with a
  ``label``), each cut into batches of ``batch_size`` in that order, so that every order
  forms other multiplexed groups. A last partial batch is filled with examples drawn from
  the rest of the split, whose predictions are not counted (the official code fills it with
  zero inputs). Returns ``{"accuracy", "accuracy_std", "accuracy_per_shuffle"}``."""
  rng = np.random.default_rng(seed)
  count = len(source)
  examples = [source[i] for i in range(count)]
  arrays = {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}
  per_shuffle = []
  for _ in range(num_shuffles):
    order = rng.permutation(count)
    fill = (-count) % batch_size
    order = np.concatenate([order, rng.choice(count, fill, replace=count < fill)])
    correct = 0
    for start in range(0, len(order), batch_size):
      index = order[start:start + batch_size]
      logits = np.asarray(predict({k: v[index] for k, v in arrays.items()}))
      hits = np.argmax(logits, -1) == arrays["label"][index]
      real = start + np.arange(len(index)) < count
      correct += int(np.sum(hits & real))
    per_shuffle.append(correct / count)
  return {"accuracy": float(np.mean(per_shuffle)), "accuracy_std": float(np.std(per_shuffle)),
          "accuracy_per_shuffle": per_shuffle}


def evaluate_workdir(workdir: str, split: str = "test", num_shuffles: int = SHUFFLES,
                     seed: int = SEED, batch_size: int = BATCH_SIZE) -> dict:
  """``regrouped_accuracy`` of the RevMUX run in ``workdir`` (latest checkpoint) on
  ``split``, and its frozen backbone's single-input accuracy (``single_accuracy``)."""
  config, state = backbones.restore_latest(workdir)
  if config.model.name != "revmux":
    raise ValueError(f"{workdir} holds a {config.model.name!r} run; allowed: a revmux run")
  source, info = data_lib.load_split(config.data, split)
  model = backbones.build_model(config, info)
  variables = {"params": state["params"], **state["model_state"]}
  apply = jax.jit(lambda v, ids, single: model.apply(v, ids, train=False, single=single),
                  static_argnums=2)
  out = {"split": split, "n": config.mimo.n, "variant": config.model.revmux_variant,
         **regrouped_accuracy(lambda b: apply(variables, b["inputs"], False), source,
                              batch_size, num_shuffles, seed)}
  out["single_accuracy"] = regrouped_accuracy(lambda b: apply(variables, b["inputs"], True),
                                              source, batch_size, 1, seed)["accuracy"]
  return out


def main(argv) -> None:
  if len(argv) not in (2, 3):
    raise SystemExit("usage: python -m mimojax.inference.regroup WORKDIR [SPLIT]")
  result = evaluate_workdir(argv[1], *argv[2:])
  with open(os.path.join(argv[1], "regrouped.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps({k: v for k, v in result.items() if k != "accuracy_per_shuffle"}))


if __name__ == "__main__":
  main(sys.argv)
