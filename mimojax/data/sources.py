"""Random-access sources held in memory (what grain pipelines read: ``len`` + ``[i]``)."""

import numpy as np


class ArraySource:
  """Rows ``start:stop`` of arrays that share their leading (example) axis; item i is
  ``{name: arrays[name][start + i]}``."""

  def __init__(self, arrays: dict, start: int = 0, stop: int | None = None):
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"arrays must have one length; got {lengths}")
    self._arrays = arrays
    self._start = start
    self._stop = next(iter(lengths.values())) if stop is None else stop

  def __len__(self) -> int:
    return self._stop - self._start

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} examples")
    i = self._start + index
    return {name: a[i] for name, a in self._arrays.items()}


def in_memory(source) -> ArraySource:
  """Every example of ``source`` read once and stacked into read-only arrays.

  For small splits read many times (the synthetic tasks: 5000 sequences, 400 epochs),
  where a tfds array_record source would decode every example again on each read.
  """
  examples = [source[i] for i in range(len(source))]
  if not examples:
    raise ValueError("source is empty")
  arrays = {name: np.stack([np.asarray(e[name]) for e in examples]) for name in examples[0]}
  for a in arrays.values():
    a.setflags(write=False)
  return ArraySource(arrays)
