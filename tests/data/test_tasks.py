"""The task table: one entry per data.name, and the checks every task shares."""

import pytest

from mimojax.data import DATASETS
from mimojax.data import TASKS
from mimojax.data import images
from mimojax.data import load_split
from mimojax.train.config import DataConfig


def test_every_dataset_is_one_task():
  assert DATASETS == tuple(TASKS) and len(set(DATASETS)) == len(DATASETS)
  assert set(images.IMAGE_DATASETS) <= set(DATASETS)
  assert {"assoc_recall", "induction_head", "listops", "pathfinder_gen", "lra_text",
          "lra_image", "lra_retrieval", "lra_pathfinder"} <= set(DATASETS)


@pytest.mark.parametrize("name", ["digits", "lra_text"])
def test_tasks_without_variants_reject_one(name):
  with pytest.raises(ValueError, match=f"data.variant='tiny' for {name}"):
    load_split(DataConfig(name=name, variant="tiny"), "train")


@pytest.mark.parametrize("name", ["listops", "pathfinder_gen"])
def test_split_sizes_must_be_positive(name):
  with pytest.raises(ValueError, match=f"num_validation/num_test=.* for {name}; each must"):
    load_split(DataConfig(name=name, variant="tiny", num_test=0), "train")
