"""Evaluate a trained run at every inputs-per-pass mode its model declares.

    python -m mimojax.evaluate --workdir=DIR [--split=test] [--step=S]
        [--modes=inputs_per_pass=4,inputs_per_pass=1] [--batch_size=B] [--rounds=5]

Restores the run's config and checkpoint (default: the newest step), evaluates each mode of
``mimojax.inference.modes`` (dynamic MIMOConv: every divisor of N; MIMOFormer: its grid and
the sub-grid a curriculum trained; DataMUX: its N; others: one input per pass) on the whole
split with the run's own evaluation, and measures examples per second after compilation
(median over ``--rounds``). Prints one table (mean +- sd and per seed for a vmapped run) and
writes the same as JSON to ``<workdir>/evaluation/<split>-step<step>.json``.

Errors. A bad flag, a workdir without checkpoints, an unknown step or mode stop with one line
on stderr, ``mimojax: invalid ...``, and exit status 1.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a run with checkpoints.")
_SPLIT = flags.DEFINE_enum("split", None, ["train", "validation", "test"],
                           "Split to evaluate; default: the run's last evaluated split.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: the newest.")
_MODES = flags.DEFINE_list("modes", [], "Mode names to evaluate; default: every mode.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None,
                                   "Evaluation batch size; default: the run's.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timing rounds per mode (median).")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"mimojax: invalid flags: unexpected arguments {argv[1:]}")
  if not _WORKDIR.value:
    sys.exit("mimojax: invalid flags: --workdir=DIR (a run with checkpoints) is required")
  absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns about optional metadata
  logging.getLogger("mimojax").setLevel(logging.WARNING)
  from mimojax.inference import evaluate, restore  # pylint: disable=g-import-not-at-top
  from mimojax.train import loop  # pylint: disable=g-import-not-at-top
  try:
    run = restore.load(_WORKDIR.value, _STEP.value)
    result = evaluate.evaluate(run, _SPLIT.value, _MODES.value, _BATCH_SIZE.value,
                               _ROUNDS.value)
  except loop.Error as e:
    sys.exit(f"mimojax: {e.prefix or 'invalid: '}{e}")
  except ValueError as e:
    sys.exit(f"mimojax: invalid flags: {e}")
  print(f"{run.workdir}: step {run.step}, split {result['split']}, batch "
        f"{result['batch_size']}, {result['seeds']} seed(s)")
  print(evaluate.table(result))
  print(f"wrote {evaluate.write(result)}")


def parse_flags(argv):
  """absl flag parsing with a bad flag reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    sys.exit(f"mimojax: invalid flags: {lines[0] if lines else e}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
