"""grain input pipelines: shuffled, checkpointable train batches and padded eval batches.

Both pipelines work on any random-access source (``len`` + ``__getitem__`` returning a dict of
numpy arrays, e.g. ``load_split``'s) and slice every *global* batch of ``batch_size`` examples
into ``process_count`` contiguous pieces: process p gets rows [p * b, (p + 1) * b) with
b = batch_size // process_count, so the processes' batches concatenated in process order are
exactly the single-process batch.

Train. Epoch e visits the examples in a permutation drawn with grain's index shuffle seeded by
(h(seed) + e) mod 2**32, where h hashes the user seed (numpy ``SeedSequence``) so that nearby
seeds do not share shifted epoch orders. An optional ``augment(images, rng) -> images`` (e.g.
``images.augmentation(name)``) is applied to each example's ``inputs`` with a generator grain
derives from (seed, position in the stream), so every epoch sees fresh augmentations and
resuming or splitting over processes reproduces them. Each epoch yields
``len(source) // batch_size`` full global batches (the remainder of the epoch is dropped)
and the stream repeats forever. The
iterator's ``get_state()`` is a small JSON-serialisable dict; ``set_state`` on a fresh
iterator built with the same arguments resumes the exact batch sequence (and grain's
``DatasetIterator`` also implements Orbax's ``save``/``load`` checkpointable API).

Eval. The split in order, once, in ``ceil(len / batch_size)`` global batches; the last one is
filled up with repeats of real examples (index mod len, so padded rows are ordinary inputs
for superposition) marked ``valid = False`` and, for lm examples, with zero ``weights``.
Every batch carries ``valid: bool[b]``.
"""

import math

import grain
import numpy as np

_READ_OPTIONS = grain.ReadOptions(num_threads=4, prefetch_buffer_size=16)


def shuffle_seed(seed: int) -> int:
  """32-bit grain shuffle seed derived from the user seed (epoch e adds e)."""
  if seed < 0:
    raise ValueError(f"seed={seed}; must be >= 0")
  return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


class _AugmentInputs:
  """Example -> example with ``augment`` applied to its ``inputs`` (one image)."""

  def __init__(self, augment):
    self._augment = augment

  def __call__(self, example: dict, rng: np.random.Generator) -> dict:
    return {**example, "inputs": self._augment(example["inputs"][None], rng)[0]}


def train_batches(source, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1, augment=None) -> grain.DatasetIterator:
  """Infinite iterator of this process's slices of shuffled global batches (see module doc).

  Yields dicts of stacked arrays with leading axis ``batch_size // process_count``.
  """
  local = _local_batch_size(batch_size, process_index, process_count)
  steps = len(source) // batch_size
  if steps == 0:
    raise ValueError(f"batch_size={batch_size} > number of examples {len(source)}")
  ds = grain.MapDataset.source(source).shuffle(seed=shuffle_seed(seed))
  ds = ds[:steps * batch_size]
  if augment is not None:
    ds = ds.random_map(_AugmentInputs(augment), seed=shuffle_seed(seed + 1))
  ds = ds.batch(local, drop_remainder=True)
  ds = ds[process_index::process_count].repeat(None)
  return iter(ds.to_iter_dataset(_READ_OPTIONS))


class _MarkValid:
  """Index -> example (index mod len), with ``valid`` and, if present, ``weights`` zeroed
  beyond the end of the split."""

  def __init__(self, source):
    self._source = source

  def __call__(self, index: int) -> dict:
    n = len(self._source)
    example = dict(self._source[index % n])
    valid = index < n
    example["valid"] = np.bool_(valid)
    if "weights" in example and not valid:
      example["weights"] = np.zeros_like(example["weights"])
    return example


def eval_batches(source, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """Finite, ordered, re-iterable batches covering every example once (see module doc)."""
  local = _local_batch_size(batch_size, process_index, process_count)
  if len(source) == 0:
    raise ValueError("eval source is empty")
  total = math.ceil(len(source) / batch_size) * batch_size
  ds = grain.MapDataset.range(total).map(_MarkValid(source))
  ds = ds.batch(local, drop_remainder=True)[process_index::process_count]
  return ds.to_iter_dataset(_READ_OPTIONS)


def _local_batch_size(batch_size: int, process_index: int, process_count: int) -> int:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index}, process_count={process_count}; "
                     "need 0 <= process_index < process_count")
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(f"batch_size={batch_size}; must be a positive multiple of "
                     f"process_count={process_count}")
  return batch_size // process_count
