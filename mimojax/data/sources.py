"""Random-access sources: what grain pipelines read (``len`` + ``[i]`` -> an example dict).

``ArraySource`` holds arrays in memory, ``MappedSource`` transforms each example of another
source on read, ``SliceSource`` is a contiguous range of another source's rows;
``in_memory`` reads a source once into an ``ArraySource``, and ``tfds_split`` opens a split of
a tfds dataset prepared as array_record.
"""

import os

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import constants as tfds_constants


def _check_index(index: int, length: int) -> None:
  if not 0 <= index < length:
    raise IndexError(f"index {index} out of range for {length} examples")


class ArraySource:
  """Arrays that share their leading (example) axis; item i is ``{name: arrays[name][i]}``."""

  def __init__(self, arrays: dict):
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"arrays must have one length; got {lengths}")
    self._arrays = arrays
    self._length = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> dict:
    _check_index(index, len(self))
    return {name: a[index] for name, a in self._arrays.items()}


class MappedSource:
  """``source[i] = transform(raw[i])``."""

  def __init__(self, raw, transform):
    self._raw = raw
    self._transform = transform

  def __len__(self) -> int:
    return len(self._raw)

  def __getitem__(self, index: int) -> dict:
    return self._transform(self._raw[index])

  def __repr__(self) -> str:
    return f"MappedSource({self._raw!r}, {self._transform!r})"


class SliceSource:
  """Rows ``start:stop`` of ``source``: item i is ``source[start + i]``."""

  def __init__(self, source, start: int = 0, stop: int | None = None):
    self._source = source
    self._start = start
    self._stop = len(source) if stop is None else stop

  def __len__(self) -> int:
    return self._stop - self._start

  def __getitem__(self, index: int) -> dict:
    _check_index(index, len(self))
    return self._source[self._start + index]

  def __repr__(self) -> str:
    return f"SliceSource({self._source!r}, rows {self._start}:{self._stop})"


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


def tfds_split(task: str, name: str, split: str, data_dir, hint: str = ""):
  """The array_record source of split ``split`` (a tfds split string) of tfds's prepared
  dataset ``name``, read for ``task``; a one-line FileNotFoundError saying how to prepare it
  (and ``hint``) when it is missing."""
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as err:  # tfds raises several types for "not prepared here"
    root = os.fspath(data_dir or tfds_constants.get_default_data_dir())
    folder = os.path.join(root, name.split("/")[0])
    said = str(err).splitlines()[0] if str(err) else ""
    raise FileNotFoundError(
        f"{task}: tfds dataset {name} is not prepared as array_record under {root}; on a "
        f"machine with internet and TensorFlow (tfds encodes with it; reading needs neither) "
        f"run `tfds build {name} --data_dir={root} --file_format=array_record` (in Python: "
        f"tfds.builder({name!r}, file_format='array_record').download_and_prepare()) and copy "
        f"{folder}/ here, or point data.data_dir at a directory that holds it.{hint} "
        f"(tfds said: {type(err).__name__}: {said})") from err
