"""grain pipelines: determinism, exact resume, per-process slicing, eval padding."""

import itertools
import json

import numpy as np
import pytest

from mimojax.data import eval_batches
from mimojax.data import load_split
from mimojax.data import train_augmentation
from mimojax.data import train_batches
from mimojax.train.config import DataConfig

N = 50


def _source(n=N, lm=True):
  """In-memory random-access source; inputs[0] holds the example index."""
  out = []
  for i in range(n):
    ex = {"inputs": np.full((6,), i, np.int32)}
    if lm:
      ex["targets"] = np.full((6,), i + 1, np.int32)
      ex["weights"] = np.ones((6,), np.float32)
    else:
      ex["label"] = np.int32(i % 10)
    out.append(ex)
  return out


def _ids(batch):
  return batch["inputs"][:, 0].tolist()


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_deterministic_epochs_of_distinct_examples():
  a = _take(train_batches(_source(), 8, seed=3), 13)
  b = _take(train_batches(_source(), 8, seed=3), 13)
  c = _take(train_batches(_source(), 8, seed=4), 13)
  assert [_ids(x) for x in a] == [_ids(x) for x in b]
  assert [_ids(x) for x in a] != [_ids(x) for x in c]
  assert a[0]["inputs"].shape == (8, 6) and a[0]["weights"].dtype == np.float32
  steps = N // 8  # 6 full batches per epoch, 2 examples dropped
  epochs = [sum((_ids(x) for x in a[e * steps:(e + 1) * steps]), []) for e in (0, 1)]
  for ids in epochs:
    assert len(set(ids)) == steps * 8 and set(ids) <= set(range(N))
  assert epochs[0] != epochs[1]  # reshuffled each epoch


@pytest.mark.parametrize("stop", [2, 6, 9])
def test_resume_from_json_state_reproduces_sequence(stop):
  full = _take(train_batches(_source(), 8, seed=0), 16)
  it = train_batches(_source(), 8, seed=0)
  _take(it, stop)
  state = json.loads(json.dumps(it.get_state()))
  resumed = train_batches(_source(), 8, seed=0)
  resumed.set_state(state)
  for want, got in zip(full[stop:], _take(resumed, 16 - stop)):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


@pytest.mark.parametrize("count", [2, 4])
def test_process_slices_concatenate_to_global_batch(count):
  single = _take(train_batches(_source(), 8, seed=5), 14)
  parts = [_take(train_batches(_source(), 8, seed=5, process_index=p, process_count=count), 14)
           for p in range(count)]
  for step, want in enumerate(single):
    got = np.concatenate([parts[p][step]["inputs"] for p in range(count)])
    assert parts[0][step]["inputs"].shape[0] == 8 // count
    np.testing.assert_array_equal(got, want["inputs"])


@pytest.mark.parametrize("lm", [True, False])
def test_eval_pads_last_batch_and_covers_each_example_once(lm):
  batches = list(eval_batches(_source(lm=lm), 16))
  assert len(batches) == 4 and all(b["inputs"].shape == (16, 6) for b in batches)
  ids = sum((_ids(b) for b in batches), [])
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.dtype == np.bool_ and valid.sum() == N
  assert [i for i, v in zip(ids, valid) if v] == list(range(N))
  if lm:
    weights = np.concatenate([b["weights"] for b in batches])
    np.testing.assert_array_equal(weights.sum(axis=1), np.where(valid, 6.0, 0.0))
  assert list(eval_batches(_source(lm=lm), 16))[0].keys() == batches[0].keys()


def test_eval_process_slices_concatenate():
  single = list(eval_batches(_source(), 16))
  parts = [list(eval_batches(_source(), 16, process_index=p, process_count=4)) for p in range(4)]
  assert all(len(p) == len(single) for p in parts)
  for step, want in enumerate(single):
    for key in ("inputs", "valid", "weights"):
      got = np.concatenate([parts[p][step][key] for p in range(4)])
      np.testing.assert_array_equal(got, want[key])


def test_bad_sizes():
  with pytest.raises(ValueError, match="process_count"):
    train_batches(_source(), 6, seed=0, process_count=4)
  with pytest.raises(ValueError, match="process_index"):
    eval_batches(_source(), 8, process_index=2, process_count=2)
  with pytest.raises(ValueError, match="batch_size"):
    train_batches(_source(4), 8, seed=0)


def test_with_tfds_source(data_dir):
  cfg = DataConfig(name="listops", variant="tiny", data_dir=data_dir, num_train=24,
                   num_validation=4, num_test=10)
  source, info = load_split(cfg, "train")
  it = train_batches(source, 8, seed=1)
  batches = _take(it, 4)
  state = it.get_state()
  assert batches[0]["inputs"].shape == (8, info.seq_len)
  assert batches[0]["label"].dtype == np.int32
  first_epoch = np.concatenate([b["inputs"] for b in batches[:3]])
  assert len({row.tobytes() for row in first_epoch}) == 24
  more = _take(it, 2)
  resumed = train_batches(source, 8, seed=1)
  resumed.set_state(state)
  for want, got in zip(more, itertools.islice(resumed, 2)):
    np.testing.assert_array_equal(want["inputs"], got["inputs"])
  test, _ = load_split(cfg, "test")
  batches = list(eval_batches(test, 4))
  assert len(batches) == 3 and sum(int(b["valid"].sum()) for b in batches) == 10


def _image_source(n=24):
  """Images whose pixel [0, 0, 0] holds the index (the rest zero): flips/crops move it."""
  out = []
  for i in range(n):
    image = np.zeros((4, 4, 1), np.float32)
    image[0, 0, 0] = i + 1
    out.append({"inputs": image, "label": np.int32(i % 3)})
  return out


def _shift_augment(images, rng):
  """A stand-in augmentation: a random circular shift per image (keeps the pixel sum)."""
  shifts = rng.integers(0, 4, len(images))
  return np.stack([np.roll(x, s, axis=1) for x, s in zip(images, shifts)])


def test_augmentation_is_fresh_per_epoch_resumable_and_process_split():
  source = _image_source()
  batches = _take(train_batches(source, 8, seed=1, augment=_shift_augment), 9)
  plain = _take(train_batches(source, 8, seed=1), 9)
  for aug, ref in zip(batches, plain):  # same examples in the same order, only moved
    np.testing.assert_array_equal(aug["label"], ref["label"])
    np.testing.assert_allclose(aug["inputs"].sum((1, 2, 3)), ref["inputs"].sum((1, 2, 3)))
  # epoch 0 and epoch 1 hold the same 24 images but (almost surely) different shifts
  first = {int(x.sum()): x for b in batches[:3] for x in b["inputs"]}
  second = {int(x.sum()): x for b in batches[3:6] for x in b["inputs"]}
  assert first.keys() == second.keys()
  assert any(not np.array_equal(first[k], second[k]) for k in first)

  it = train_batches(source, 8, seed=1, augment=_shift_augment)
  _take(it, 4)
  resumed = train_batches(source, 8, seed=1, augment=_shift_augment)
  resumed.set_state(json.loads(json.dumps(it.get_state())))
  for a, b in zip(_take(resumed, 5), batches[4:]):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])

  parts = [_take(train_batches(source, 8, seed=1, process_index=p, process_count=2,
                               augment=_shift_augment), 9) for p in range(2)]
  for k, whole in enumerate(batches):
    np.testing.assert_array_equal(
        np.concatenate([parts[0][k]["inputs"], parts[1][k]["inputs"]]), whole["inputs"])


def test_load_split_serves_image_datasets_with_their_augmentation():
  config = DataConfig(name="digits")
  source, info = load_split(config, "train")
  assert (info.num_classes, info.image_shape, info.task_type) == (10, (20, 20, 1),
                                                                 "classification")
  assert source[0]["inputs"].shape == (20, 20, 1)
  assert train_augmentation(config) is not None
  assert train_augmentation(DataConfig(name="digits", augment=False)) is None
  assert train_augmentation(DataConfig(name="listops")) is None
  with pytest.raises(ValueError, match="mnist_5k"):
    load_split(DataConfig(name="nope"), "train")
