"""In-memory random-access sources."""

import numpy as np
import pytest

from mimojax.data import sources


class _Decoding:
  """A source that builds each example on read, as tfds's array_record source does."""

  def __init__(self, n):
    self.n, self.reads = n, 0

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    self.reads += 1
    return {"inputs": np.arange(3, dtype=np.int32) + i, "label": np.int32(i % 2)}


def test_in_memory_holds_every_example_read_once():
  raw = _Decoding(5)
  source = sources.in_memory(raw)
  assert raw.reads == 5 and len(source) == 5
  for i in range(5):
    example = source[i]
    np.testing.assert_array_equal(example["inputs"], [i, i + 1, i + 2])
    assert example["inputs"].dtype == np.int32 and example["label"] == i % 2
  assert raw.reads == 5
  with pytest.raises(ValueError, match="read-only"):
    source[0]["inputs"][0] = 7


def test_array_source_rows_and_errors():
  arrays = {"inputs": np.arange(10).reshape(5, 2), "label": np.arange(5)}
  rows = sources.SliceSource(sources.ArraySource(arrays), start=1, stop=4)
  assert len(rows) == 3 and rows[0]["label"] == 1 and rows[2]["label"] == 3
  with pytest.raises(IndexError, match="out of range"):
    rows[3]
  with pytest.raises(ValueError, match="one length"):
    sources.ArraySource({"inputs": np.zeros(3), "label": np.zeros(4)})
  with pytest.raises(ValueError, match="empty"):
    sources.in_memory(_Decoding(0))
