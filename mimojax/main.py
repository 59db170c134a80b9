"""Command-line entry point.

    python -m mimojax.main --config=experiments/<study>.py[:k=v,...] [--workdir=DIR]
        [--config.group.field=value ...] [--distributed]

`--workdir` defaults to runs/<study>/<timestamp>; a workdir holding checkpoints resumes.
`--distributed` (or MIMOJAX_DISTRIBUTED=1) calls jax.distributed.initialize() before any
device query: coordinator, process count and id come from the cluster environment (TPU VMs
are detected automatically).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes if it has "
                               "checkpoints); default runs/<study>/<timestamp>.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Initialise jax.distributed (multi-host).")


def default_workdir(config_path: str) -> str:
  study = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", study, stamp)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config=experiments/<study>.py is required")
  if _DISTRIBUTED.value or os.environ.get("MIMOJAX_DISTRIBUTED") == "1":
    import jax  # pylint: disable=g-import-not-at-top
    jax.distributed.initialize()
  from mimojax.train import loop  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  logging.getLogger().setLevel(logging.INFO)
  try:
    loop.train_and_evaluate(config, workdir)
  except loop.ConfigError as e:
    sys.exit(f"mimojax: invalid config: {e}")


if __name__ == "__main__":
  app.run(main)
