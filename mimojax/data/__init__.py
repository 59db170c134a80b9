"""Data for mimojax: tfds builders and grain pipelines (never imports jax).

Tasks (``data.name``): the generated ``assoc_recall``, ``induction_head``, ``listops`` and
``pathfinder_gen`` (``builders``, ``synthetic``, ``listops``, ``pathfinder``), and the Long
Range Arena tasks with outside data ``lra_text`` (tfds imdb_reviews), ``lra_image`` (tfds
cifar10), ``lra_retrieval`` and ``lra_pathfinder`` (LRA release files from a manual
directory), see ``lra``.

Public API (CONTRACT item 3):
  ``load_split(data_config, split) -> (source, DataInfo)``; the ``data_config`` fields are
  documented in ``mimojax.data.builders``.
  ``train_batches(source, batch_size, seed, process_index=0, process_count=1)``: infinite,
  shuffled, checkpointable (``get_state``/``set_state``) grain iterator of this process's
  slice of each global batch.
  ``eval_batches(source, batch_size, process_index=0, process_count=1)``: finite, ordered,
  padded batches with a ``valid`` mask.
"""

from mimojax.data.builders import DataInfo
from mimojax.data.builders import load_split
from mimojax.data.pipeline import eval_batches
from mimojax.data.pipeline import train_batches

__all__ = ["DataInfo", "load_split", "train_batches", "eval_batches"]
