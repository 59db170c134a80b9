"""Data for mimojax: tfds builders and grain pipelines (never imports jax).

Tasks (``data.name``): the generated ``assoc_recall``, ``induction_head``, ``listops`` and
``pathfinder_gen`` (``builders``, ``synthetic``, ``listops``, ``pathfinder``), and the Long
Range Arena tasks with outside data ``lra_text`` (tfds imdb_reviews), ``lra_image`` (tfds
cifar10), ``lra_retrieval`` and ``lra_pathfinder`` (LRA release files from a manual
directory), see ``lra``; and the image datasets of ``images`` (tfds ``cifar10``,
``cifar100``, ``mnist``, ``svhn_cropped``; offline ``mnist_5k`` and ``digits``).

Public API (CONTRACT item 3):
  ``load_split(data_config, split) -> (source, DataInfo)``; the ``data_config`` fields are
  documented in ``mimojax.data.builders``.
  ``train_batches(source, batch_size, seed, process_index=0, process_count=1,
  augment=None)``: infinite, shuffled, checkpointable (``get_state``/``set_state``) grain
  iterator of this process's slice of each global batch, with optional augmentation.
  ``train_augmentation(data_config)``: the task's training augmentation ``fn(images, rng)``
  (image datasets with ``data.augment``), else None.
  ``eval_batches(source, batch_size, process_index=0, process_count=1)``: finite, ordered,
  padded batches with a ``valid`` mask.
"""

from mimojax.data import images
from mimojax.data.builders import DATASETS
from mimojax.data.builders import load_split
from mimojax.data.info import DataInfo
from mimojax.data.pipeline import eval_batches
from mimojax.data.pipeline import train_batches


def train_augmentation(data_config):
  """``images.augmentation(data.name)`` for image datasets when ``data.augment`` is true
  (missing -> true), else None."""
  name = data_config.get("name")
  if name in images.IMAGE_DATASETS and data_config.get("augment", True):
    return images.augmentation(name)
  return None


__all__ = ["DATASETS", "DataInfo", "load_split", "train_augmentation", "train_batches",
           "eval_batches"]
