"""The task table: each ``data.name``, how its splits load and what they hold.

``TASKS[name] = Task(load, info)``:
  ``load(data_config, split) -> source``: one split as a random-access source (``len`` and
  ``[i]``, what grain reads), built and cached on first use;
  ``info(data_config, source) -> DataInfo``: vocabulary, classes, padded length, task type and
  size of that split.
``load_split(data_config, split)`` returns both.

==================  ==============  =========================================================
name                task type       data
==================  ==============  =========================================================
``assoc_recall``    lm              generated (``builders``, ``synthetic``), held in memory
``induction_head``  lm              generated (``builders``, ``synthetic``), held in memory
``listops``         classification  generated (``builders``, ``listops``); 16 ids, 10 classes
``pathfinder_gen``  classification  generated (``builders``, ``pathfinder``); 2 classes
``lra_pathfinder``  classification  LRA release PNGs (``lra``); pixel ids, 2 classes
``lra_retrieval``   dual            LRA release TSVs (``lra``); byte ids, 2 classes
``lra_text``        classification  tfds ``imdb_reviews/plain_text`` (``lra``); byte ids
``lra_image``       classification  tfds ``cifar10`` in gray (``lra``); pixel ids, 10 classes
image datasets      classification  ``images``: tfds ``cifar10``, ``cifar100``, ``mnist``,
                                    ``svhn_cropped``; offline ``mnist_5k``, ``digits``
``glue_sst2``       classification  tfds ``glue/sst2`` (``text``); tokenizer ids, 2 classes
``glue_mnli``       classification  tfds ``glue/mnli``, sentence pairs; 3 classes
``glue_qnli``       classification  tfds ``glue/qnli``, sentence pairs; 2 classes
``glue_qqp``        classification  tfds ``glue/qqp``, sentence pairs; 2 classes
``wiki40b_en``      lm              tfds ``wiki40b/en`` (``text``) tokenized and cut into
                                    blocks; the corpus of DataMUX's retrieval warm-up
==================  ==============  =========================================================

The synthetic splits (a few hundred KB) are read once into memory (``sources.in_memory``):
batches come 2.5x faster than with every example decoded on each read
(``benchmarks/input_pipeline.py``, 2 CPU cores).

Examples (dicts of numpy arrays):
  lm: ``{"inputs", "targets": int32[L], "weights": float32[L]}`` (targets = inputs shifted
  by one; the synthetics' train splits weight every position, their test splits only the
  last, the answer; wiki40b_en weights every position);
  classification: ``{"inputs": int32[L] (token ids, 0 = padding), "label": int32[]}``; the
  image datasets' ``inputs`` are normalised ``float32[H, W, C]`` (``ImageDataInfo``); GLUE
  adds ``"token_types": int32[L]`` (0 = first sentence, 1 = second), as does
  ``stdlib_docs``, the offline sentence task built from Python's own docstrings
  (``docstrings``; tokenized by ``data.tokenizer``, ``seq_len`` None -> 32);
  dual: ``{"inputs", "inputs2": int32[L], "label": int32[]}``.

Splits: ``train`` / ``test`` for the synthetics and the image datasets (``validation`` too
with ``data.validation_size > 0``), ``train`` / ``validation`` / ``test`` for the others
(Text: validation = test, as in LRA; GLUE: test = validation, as GLUE's test labels are
hidden; ``glue_mnli`` also ``validation_mismatched``).

``data_config`` fields (``None``: the variant's or task's value):
  ``name``; ``data_dir``: tfds data dir (None: ``$TFDS_DATA_DIR`` or ~/tensorflow_datasets);
  ``variant``: builder config (``builders``; empty: the first; tasks without builders accept
  only empty); ``seed``: generator seed (lra_pathfinder: split seed); ``manual_dir``: the
  extracted LRA release folder (None: ``<data_dir>/downloads/manual``); the generated tasks'
  overrides ``vocab_size``, ``input_seq_len`` (synthetics), ``min_length``, ``max_length``,
  ``seq_len``, ``max_depth``, ``max_args`` (ListOps), ``contour_length`` (pathfinder_gen),
  ``num_train``, ``num_validation``, ``num_test``. Fields of the views, not of the cached
  data: ``max_length`` for lra_text and lra_retrieval (None -> 4000; retrieval at most 4000)
  is the bytes kept per document and ``seq_len`` (None -> max_length, >= max_length) the
  padded length; ``seq_len`` of the pixel tasks (None -> 1024, >= 1024). ``validation_size``
  and ``augment``: the image datasets (``images``). ``tokenizer``: the ``tokenizer.json`` of
  the GLUE tasks and wiki40b_en (``text``; required), whose ``seq_len`` (None -> 128) is the
  padded length (GLUE) or block length (wiki40b_en); wiki40b_en keeps the first
  ``num_train`` / ``num_validation`` / ``num_test`` blocks of a split (None: all).
"""

import dataclasses
import functools
from collections.abc import Callable

from mimojax.data import builders
from mimojax.data import docstrings
from mimojax.data import images
from mimojax.data import listops
from mimojax.data import lra
from mimojax.data import pathfinder
from mimojax.data import sources
from mimojax.data import text
from mimojax.data.info import DataInfo

_PIXELS = lra.IMAGE_SIZE * lra.IMAGE_SIZE


@dataclasses.dataclass(frozen=True)
class Task:
  """How a task's split loads (``load(data_config, split) -> source``) and what it is
  (``info(data_config, source) -> DataInfo``)."""
  load: Callable
  info: Callable


def _check_split(task: str, split: str, allowed) -> None:
  if split not in allowed:
    raise ValueError(f"split={split!r} for {task}; allowed: {list(allowed)}")


def _check_no_variant(data_config) -> None:
  if data_config.variant:
    raise ValueError(f"data.variant={data_config.variant!r} for {data_config.name}; it has no "
                     "variants (leave it empty)")


# ------------------------------------------------------------------ views: stored -> example


def _padded_listops(data_config) -> lra.PaddedExample:
  return lra.PaddedExample(builders.builder_config(builders.ListOps, data_config).seq_len)


def _byte_lengths(data_config, limit: int | None) -> tuple[int, int]:
  """(max_length, seq_len) of a byte-id view (module doc)."""
  max_length = lra.TEXT_MAX_LENGTH if data_config.max_length is None else data_config.max_length
  seq_len = max_length if data_config.seq_len is None else data_config.seq_len
  lra.check_lengths(data_config.name, max_length, seq_len, limit)
  return max_length, seq_len


def _text(data_config) -> lra.TextExample:
  return lra.TextExample(*_byte_lengths(data_config, None))


def _pair(data_config) -> lra.PairExample:
  return lra.PairExample(*_byte_lengths(data_config, lra.RETRIEVAL_MAX_LENGTH))


def _pixel_seq_len(data_config) -> int:
  seq_len = _PIXELS if data_config.seq_len is None else data_config.seq_len
  if seq_len < _PIXELS:
    raise ValueError(f"data.seq_len={seq_len} for {data_config.name}; must be >= {_PIXELS} "
                     "(32 x 32 pixels)")
  return seq_len


def _padded_pixels(data_config) -> lra.PaddedExample:
  return lra.PaddedExample(_pixel_seq_len(data_config))


def _gray_image(data_config) -> lra.ImageExample:
  return lra.ImageExample(_pixel_seq_len(data_config))


# ------------------------------------------------------------------ load


def _built_split(builder: type[builders.Builder], data_config, split: str):
  """The stored split of the prepared ``builder``."""
  prepared = builders.prepare(builder, data_config)
  _check_split(prepared.name, split, list(prepared.info.splits))
  return prepared.as_data_source(split)


def _load_in_memory(data_config, split: str, *, builder):
  return sources.in_memory(_built_split(builder, data_config, split))


def _load_built(data_config, split: str, *, builder, view):
  transform = view(data_config)  # checks the view's fields before building
  return sources.MappedSource(_built_split(builder, data_config, split), transform)


def _load_tfds(data_config, split: str, *, dataset, view):
  """A view of tfds's own prepared ``dataset`` = (name, {split: tfds split string})."""
  _check_no_variant(data_config)
  transform = view(data_config)
  name, splits = dataset
  _check_split(data_config.name, split, splits)
  raw = sources.tfds_split(data_config.name, name, splits[split], data_config.data_dir)
  return sources.MappedSource(raw, transform)


def _load_corpus(data_config, split: str, *, dataset):
  """The LM blocks of tfds's prepared text corpus ``dataset`` = (name, {split: tfds split
  string}), the first ``data.num_<split>`` of them (None: all)."""
  _check_no_variant(data_config)
  text.load_tokenizer(data_config.name, data_config.tokenizer)  # checked before the data
  name, splits = dataset
  _check_split(data_config.name, split, splits)
  raw = sources.tfds_split(data_config.name, name, splits[split], data_config.data_dir,
                           text.CORPUS_HINT)
  num_blocks = getattr(data_config, f"num_{split}")
  return text.corpus_blocks(data_config.name, raw, data_config, split, num_blocks)


def _load_image(data_config, split: str):
  _check_no_variant(data_config)
  return images.load_source(data_config, split)


# ------------------------------------------------------------------ info


def _synthetic_info(data_config, source, *, builder) -> DataInfo:
  config = builders.builder_config(builder, data_config)
  return DataInfo(vocab_size=config.vocab_size, num_classes=config.vocab_size,
                  seq_len=builder.sequence_length(config), task_type="lm",
                  num_examples=len(source))


def _ids_info(data_config, source, *, vocab_size, num_classes, view,
              task_type="classification") -> DataInfo:
  """Info of a task whose examples are token ids, padded to ``view(data_config).seq_len``."""
  return DataInfo(vocab_size=vocab_size, num_classes=num_classes,
                  seq_len=view(data_config).seq_len, task_type=task_type,
                  num_examples=len(source))


def _tokenized_info(data_config, source, *, num_classes: int | None,
                    task_type: str) -> DataInfo:
  """Info of a task tokenized by ``data.tokenizer`` (``text``); ``num_classes`` None: one
  class per token id (lm)."""
  vocab_size = text.vocab_size(data_config.name, data_config.tokenizer)
  return DataInfo(vocab_size=vocab_size, num_classes=num_classes or vocab_size,
                  seq_len=text.seq_len(data_config), task_type=task_type,
                  num_examples=len(source))


def _docstrings_info(data_config, source) -> DataInfo:
  """Info of the offline ``stdlib_docs`` task (``docstrings``)."""
  return DataInfo(vocab_size=text.vocab_size("stdlib_docs", data_config.tokenizer),
                  num_classes=docstrings.NUM_CLASSES, seq_len=docstrings.seq_len(data_config),
                  task_type="classification", num_examples=len(source))


def _built_lm(builder) -> Task:
  """An lm task of ``builder``, held in memory."""
  return Task(functools.partial(_load_in_memory, builder=builder),
              functools.partial(_synthetic_info, builder=builder))


def _built(builder, view, **info) -> Task:
  """A task of ``builder`` read through ``view``; ``info``: ``_ids_info``'s facts."""
  return Task(functools.partial(_load_built, builder=builder, view=view),
              functools.partial(_ids_info, view=view, **info))


def _from_tfds(dataset, view, **info) -> Task:
  """A view of tfds's own prepared ``dataset``; ``info``: ``_ids_info``'s facts."""
  return Task(functools.partial(_load_tfds, dataset=dataset, view=view),
              functools.partial(_ids_info, view=view, **info))


def _glue(task: str) -> Task:
  """A GLUE task (``text.GLUE[task]``) read through the tokenizer."""
  glue = text.GLUE[task]
  return Task(functools.partial(_load_tfds, dataset=(glue.dataset, glue.splits),
                                view=text.glue_view(task)),
              functools.partial(_tokenized_info, num_classes=glue.num_classes,
                                task_type="classification"))


TASKS = {
    "assoc_recall": _built_lm(builders.AssocRecall),
    "induction_head": _built_lm(builders.InductionHead),
    "listops": _built(builders.ListOps, _padded_listops, vocab_size=listops.VOCAB_SIZE,
                      num_classes=listops.NUM_CLASSES),
    "pathfinder_gen": _built(builders.PathfinderGen, _padded_pixels,
                             vocab_size=lra.PIXEL_VOCAB_SIZE, num_classes=pathfinder.NUM_CLASSES),
    "lra_pathfinder": _built(lra.LraPathfinder, _padded_pixels, vocab_size=lra.PIXEL_VOCAB_SIZE,
                             num_classes=pathfinder.NUM_CLASSES),
    "lra_retrieval": _built(lra.LraRetrieval, _pair, vocab_size=lra.BYTE_VOCAB_SIZE,
                            num_classes=2, task_type="dual"),
    "lra_text": _from_tfds(lra.TEXT_TFDS, _text, vocab_size=lra.BYTE_VOCAB_SIZE, num_classes=2),
    "lra_image": _from_tfds(lra.IMAGE_TFDS, _gray_image, vocab_size=lra.PIXEL_VOCAB_SIZE,
                            num_classes=10),
    **{name: Task(_load_image, images.split_info) for name in images.IMAGE_DATASETS},
    **{name: _glue(name) for name in text.GLUE},
    "wiki40b_en": Task(functools.partial(_load_corpus, dataset=text.CORPUS),
                       functools.partial(_tokenized_info, num_classes=None, task_type="lm")),
    "stdlib_docs": Task(docstrings.load_split, _docstrings_info),
}
# every data.name load_split accepts
DATASETS = tuple(TASKS)


def load_split(data_config, split: str):
  """(random-access source, DataInfo) of split ``split`` of the task ``data_config.name``."""
  if data_config.name not in TASKS:
    raise ValueError(f"data.name={data_config.name!r}; allowed: {list(DATASETS)}")
  task = TASKS[data_config.name]
  source = task.load(data_config, split)
  return source, task.info(data_config, source)
