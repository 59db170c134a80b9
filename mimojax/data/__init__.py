"""Data for mimojax: tfds builders, grain sources and pipelines (never imports jax).

``TASKS`` (``tasks``) maps every ``data.name`` to a ``Task(load, info)``: how a split loads
as a random-access source and what its ``DataInfo`` is. The generated tasks
``assoc_recall``, ``induction_head``, ``listops`` and ``pathfinder_gen`` are tfds builders
here (``builders``, ``synthetic``, ``listops``, ``pathfinder``); the Long Range Arena tasks
with outside data are ``lra_text``, ``lra_image``, ``lra_retrieval`` and ``lra_pathfinder``
(``lra``); the image datasets are ``cifar10``, ``cifar100``, ``mnist``, ``svhn_cropped``,
``mnist_5k`` and ``digits`` (``images``); the text tasks read with a Hugging Face tokenizer
are ``glue_sst2``, ``glue_mnli``, ``glue_qnli``, ``glue_qqp`` and the corpus ``wiki40b_en``
(``text``). The sources grain reads are in ``sources``.

Public API:
  ``load_split(data_config, split) -> (source, DataInfo)``: one split of the task named by
  ``data_config`` (a ``DataConfig``; fields in ``tasks``), built and cached on first use.
  ``train_batches(source, batch_size, seed, process_index=0, process_count=1,
  augment=None)``: infinite, shuffled, checkpointable (``get_state``/``set_state``) grain
  iterator of this process's slice of each global batch, with optional augmentation.
  ``train_augmentation(data_config)``: the task's training augmentation ``fn(images, rng)``
  (image datasets with ``data.augment``), else None.
  ``eval_batches(source, batch_size, process_index=0, process_count=1)``: finite, ordered,
  padded batches with a ``valid`` mask.
  ``DATASETS``: every ``data.name``; ``TASKS``; ``DataInfo``.
"""

from mimojax.data import images
from mimojax.data.info import DataInfo
from mimojax.data.pipeline import eval_batches
from mimojax.data.pipeline import train_batches
from mimojax.data.tasks import DATASETS
from mimojax.data.tasks import TASKS
from mimojax.data.tasks import load_split


def train_augmentation(data_config):
  """``images.augmentation(data.name)`` for image datasets when ``data.augment`` is true, else
  None."""
  if data_config.name in images.IMAGE_DATASETS and data_config.augment:
    return images.augmentation(data_config.name, data_config.normalise)
  return None


__all__ = ["DATASETS", "DataInfo", "TASKS", "eval_batches", "load_split",
           "train_augmentation", "train_batches"]
