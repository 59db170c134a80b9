"""Tests for mimojax.inference.regroup: every example is counted once per regrouping, the
groups change between regroupings, and filler rows of a last partial batch are not counted."""

import numpy as np

from mimojax.data import sources
from mimojax.inference import regroup


def _source(count=10):
  return sources.ArraySource({"inputs": np.arange(count)[:, None].astype(np.int32),
                              "label": (np.arange(count) % 3).astype(np.int32)})


def test_a_perfect_predictor_scores_one_and_every_example_is_seen():
  seen = []

  def predict(batch):
    seen.append(batch["inputs"][:, 0].copy())
    return np.eye(3)[batch["label"]]
  result = regroup.regrouped_accuracy(predict, _source(10), batch_size=4, num_shuffles=3)
  assert result["accuracy"] == 1.0 and result["accuracy_per_shuffle"] == [1.0] * 3
  assert all(len(b) == 4 for b in seen) and len(seen) == 3 * 3
  for k in range(3):  # each regrouping covers the split; 2 filler rows in its last batch
    assert set(np.concatenate(seen[3 * k:3 * k + 3])[:10]) == set(range(10))


def test_groups_depend_on_the_regrouping():
  first_groups = []

  def predict(batch):
    first_groups.append(tuple(batch["inputs"][:2, 0]))
    return np.zeros((len(batch["inputs"]), 3))
  regroup.regrouped_accuracy(predict, _source(16), batch_size=8, num_shuffles=4, seed=4141)
  assert len(set(first_groups[::2])) > 1


def test_filler_rows_do_not_count():
  def predict(batch):  # right only on examples 0 and 1
    right = np.eye(3)[batch["label"]]
    wrong = np.eye(3)[(batch["label"] + 1) % 3]
    return np.where((batch["inputs"][:, :1] < 2), right, wrong)
  result = regroup.regrouped_accuracy(predict, _source(5), batch_size=4, num_shuffles=5)
  assert result["accuracy"] == 2 / 5
