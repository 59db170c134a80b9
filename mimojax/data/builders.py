"""tfds builders for the generated tasks, and ``load_split`` (config -> random-access source).

Builders (``tfds.core.GeneratorBasedBuilder``, written as array_record and read with
``as_data_source``, so TensorFlow is never imported). Generation is deterministic given the
config (seed included), shows tqdm progress, and is cached by tfds under
``<data_dir>/<builder>/<config>/<version>``; a file lock next to that directory lets several
processes on one machine share a ``data_dir`` (one builds, the others wait and read).

=================  ===========  =====================================================
builder            config       contents
=================  ===========  =====================================================
``assoc_recall``   ``paper``    App. F: vocab 20, 40 context tokens (inputs 42),
                                5000 train / 500 test, seed 0
                   ``tiny``     same task, 256 train / 64 test (smoke runs, tests)
``induction_head`` ``paper``    App. F: vocab 20, 30 tokens (inputs 31), 5000 / 500
                   ``tiny``     256 / 64
``listops``        ``full``     LRA: 500 < length < 2000, padded to 2000,
                                96k train / 2k validation / 2k test
                   ``L500``     100 < length < 500, padded to 500, 20k / 2k / 2k
                   ``L128``     20 < length < 128, padded to 128, 20k / 2k / 2k
                   ``tiny``     10 < length < 64, padded to 64, 512 / 64 / 64
``pathfinder_gen`` ``pf32``     our Pathfinder-32 generator (``pathfinder``), LRA's
                                "hard" settings (contour length 14), 16k / 2k / 2k
                                (about 10 ms per image per core)
                   ``tiny``     same settings, 64 / 16 / 16
``lra_pathfinder`` ``hard``     LRA release PNGs from a manual directory (``lra``),
                   ``inter...`` seeded 80/10/10 split; ``hard`` = contour length 14,
                   ``easy``     ``intermediate`` = 9, ``easy`` = the baseline
``lra_retrieval``  ``aan``      LRA release AAN TSVs from a manual directory (``lra``)
=================  ===========  =====================================================

Download-backed tasks read tfds's own prepared builders instead (``lra``): ``lra_text``
(``imdb_reviews/plain_text``) and ``lra_image`` (``cifar10``).

Splits: ``train`` / ``test`` for the synthetics (the reference evaluates on test),
``train`` / ``validation`` / ``test`` for every other task (Text: validation = test, as in
LRA). ListOps tokens, retrieval documents and pixels are stored compactly (uint8);
``load_split`` returns a view that makes int32 ids and right-pads to ``seq_len`` with id 0.
The synthetic splits (a few hundred KB) are read once into memory (``sources.in_memory``):
batches come 2.5x faster than with every example decoded on each read
(``benchmarks/input_pipeline.py``, 2 CPU cores).

``data_config`` fields read by ``load_split`` (an ``ml_collections.ConfigDict``):
  name:     "assoc_recall" | "induction_head" | "listops" | "pathfinder_gen" |
            "lra_text" | "lra_image" | "lra_retrieval" | "lra_pathfinder".
  data_dir: tfds data dir; None -> tfds default (``$TFDS_DATA_DIR`` or ~/tensorflow_datasets).
  variant:  builder config name (table above); missing or None -> the first one listed
            (lra_text / lra_image have none).
  seed:     generator seed (lra_pathfinder: split seed); missing or None -> the variant's (0).
  manual_dir: lra_retrieval / lra_pathfinder: the extracted LRA release folder (holding
            ``tsv_data/``, ``pathfinder32/``); None -> ``<data_dir>/downloads/manual``.
  Optional overrides, missing or None -> the variant's value: for the synthetics
  ``vocab_size``, ``input_seq_len``, ``num_train``, ``num_test``; for ListOps
  ``min_length``, ``max_length``, ``seq_len``, ``max_depth``, ``max_args``, ``num_train``,
  ``num_validation``, ``num_test``; for pathfinder_gen ``contour_length``, ``num_train``,
  ``num_validation``, ``num_test``. A seed or override that differs from the variant builds a
  separate cached config named ``<variant>-<field><value>...`` (e.g. ``L128-seed3``).
  View fields (not part of the cached data): ``max_length`` for lra_text (None -> 4000) and
  lra_retrieval (None -> 4000, at most 4000): bytes kept per document; ``seq_len`` for those
  two (None -> max_length, >= max_length) and for the pixel tasks (None -> 1024, >= 1024):
  the padded length.
"""

import dataclasses
import fcntl
import functools
import os

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mimojax.data import images
from mimojax.data import listops
from mimojax.data import lra
from mimojax.data import pathfinder
from mimojax.data import sources
from mimojax.data import synthetic
from mimojax.data.info import DataInfo

_VERSION = tfds.core.Version("1.0.0")
_RELEASE_NOTES = {"1.0.0": "Initial release."}


@dataclasses.dataclass(eq=False)
class SyntheticsConfig(tfds.core.BuilderConfig):
  """Associative recall / induction head sizes (paper App. F)."""
  vocab_size: int = 20
  input_seq_len: int = 40
  num_train: int = 5000
  num_test: int = 500
  seed: int = 0


@dataclasses.dataclass(eq=False)
class ListOpsConfig(tfds.core.BuilderConfig):
  """ListOps length bounds (strict), padded length, tree limits and split sizes."""
  min_length: int = 500
  max_length: int = 2000
  seq_len: int = 2000
  max_depth: int = 10
  max_args: int = 10
  num_train: int = 96_000
  num_validation: int = 2_000
  num_test: int = 2_000
  seed: int = 0


@dataclasses.dataclass(eq=False)
class PathfinderGenConfig(tfds.core.BuilderConfig):
  """Contour length (LRA settings from ``pathfinder.lra_params``), split sizes and seed."""
  contour_length: int = 14
  num_train: int = 16_000
  num_validation: int = 2_000
  num_test: int = 2_000
  seed: int = 0


class _SyntheticsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder body of the two in-context-learning synthetics."""

  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES
  TASK = ""

  def _info(self) -> tfds.core.DatasetInfo:
    length = self.builder_config.input_seq_len + (2 if self.TASK == "assoc_recall" else 1)
    tokens = tfds.features.Tensor(shape=(length,), dtype=np.int32)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "inputs": tokens, "targets": tokens,
            "weights": tfds.features.Tensor(shape=(length,), dtype=np.float32)}),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    with tqdm.tqdm(total=cfg.num_train + cfg.num_test, unit="seq",
                   desc=f"{self.name}/{cfg.name}: sampling") as bar:
      splits = synthetic.make_splits(self.TASK, cfg.num_train, cfg.num_test,
                                     cfg.input_seq_len, cfg.vocab_size, cfg.seed, bar)
    return {name: self._generate_examples(arrays) for name, arrays in splits.items()}

  def _generate_examples(self, arrays):
    for i in range(len(arrays["inputs"])):
      yield i, {key: value[i] for key, value in arrays.items()}


class AssocRecall(_SyntheticsBuilder):
  """Associative recall (App. F; safari ``assoc_recall``), see ``synthetic``."""
  name = "assoc_recall"
  TASK = "assoc_recall"
  BUILDER_CONFIGS = [
      SyntheticsConfig(name="paper", input_seq_len=40),
      SyntheticsConfig(name="tiny", input_seq_len=40, num_train=256, num_test=64),
  ]


class InductionHead(_SyntheticsBuilder):
  """Induction head (App. F; safari ``induction_head``), see ``synthetic``."""
  name = "induction_head"
  TASK = "induction_head"
  BUILDER_CONFIGS = [
      SyntheticsConfig(name="paper", input_seq_len=30),
      SyntheticsConfig(name="tiny", input_seq_len=30, num_train=256, num_test=64),
  ]


class ListOps(tfds.core.GeneratorBasedBuilder):
  """LRA ListOps re-generated with a private seeded sampler, see ``listops``."""

  name = "listops"
  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [
      ListOpsConfig(name="full"),
      ListOpsConfig(name="L500", min_length=100, max_length=500, seq_len=500,
                    num_train=20_000),
      ListOpsConfig(name="L128", min_length=20, max_length=128, seq_len=128,
                    num_train=20_000),
      ListOpsConfig(name="tiny", min_length=10, max_length=64, seq_len=64,
                    num_train=512, num_validation=64, num_test=64),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(None,), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int32)}),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "validation": cfg.num_validation, "test": cfg.num_test}
    with tqdm.tqdm(total=sum(sizes.values()), unit="tree",
                   desc=f"listops/{cfg.name}: sampling") as bar:
      examples = listops.generate(sum(sizes.values()), cfg.min_length, cfg.max_length,
                                  cfg.seed, cfg.max_depth, cfg.max_args, bar)
    generators, start = {}, 0
    for split, size in sizes.items():
      generators[split] = self._generate_examples(examples[start:start + size])
      start += size
    return generators

  def _generate_examples(self, examples):
    for i, (ids, label) in enumerate(examples):
      yield i, {"inputs": np.asarray(ids, np.uint8), "label": np.int32(label)}


class PathfinderGen(tfds.core.GeneratorBasedBuilder):
  """Pathfinder-32 from our own seeded generator (``pathfinder``): image i of the stream
  ``seed`` is train example i, then validation, then test; pixels stored as uint8[1024]."""

  name = "pathfinder_gen"
  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [
      PathfinderGenConfig(name="pf32"),
      PathfinderGenConfig(name="tiny", num_train=64, num_validation=16, num_test=16),
  ]
  PARALLEL_FROM = 5_000  # images; smaller sets are generated in-process

  def _info(self) -> tfds.core.DatasetInfo:
    size = pathfinder.Params.size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(size * size,), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int32)}),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "validation": cfg.num_validation, "test": cfg.num_test}
    total = sum(sizes.values())
    workers = min(os.cpu_count() or 1, 16) if total >= self.PARALLEL_FROM else 1
    with tqdm.tqdm(total=total, unit="image",
                   desc=f"pathfinder_gen/{cfg.name}: drawing") as bar:
      images, labels = pathfinder.generate(total, pathfinder.lra_params(cfg.contour_length),
                                           cfg.seed, progress=bar, workers=workers)
    generators, start = {}, 0
    for split, size in sizes.items():
      generators[split] = self._generate_examples(images[start:start + size],
                                                  labels[start:start + size])
      start += size
    return generators

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"inputs": image.reshape(-1), "label": np.int32(label)}


def _padded_classification(example: dict, seq_len: int) -> dict:
  """Right-pads ``inputs`` with 0 to ``seq_len``; int32 arrays (CONTRACT item 2)."""
  return {"inputs": listops.pad(example["inputs"], seq_len),
          "label": np.asarray(example["label"], np.int32)}


_BUILDERS = {"assoc_recall": AssocRecall, "induction_head": InductionHead, "listops": ListOps,
             "pathfinder_gen": PathfinderGen, "lra_retrieval": lra.LraRetrieval,
             "lra_pathfinder": lra.LraPathfinder}
_OVERRIDES = {
    AssocRecall: ("seed", "vocab_size", "input_seq_len", "num_train", "num_test"),
    InductionHead: ("seed", "vocab_size", "input_seq_len", "num_train", "num_test"),
    ListOps: ("seed", "min_length", "max_length", "seq_len", "max_depth", "max_args",
              "num_train", "num_validation", "num_test"),
    PathfinderGen: ("seed", "contour_length", "num_train", "num_validation", "num_test"),
    lra.LraRetrieval: (),
    lra.LraPathfinder: ("seed",),
}
_MANUAL = (lra.LraRetrieval, lra.LraPathfinder)
_VIEWED = ("lra_text", "lra_image", "lra_retrieval", "lra_pathfinder", "pathfinder_gen")
_PIXELS = pathfinder.Params.size ** 2
# every data.name load_split accepts
DATASETS = tuple(sorted(_BUILDERS)) + tuple(lra.TFDS_SPLITS) + images.IMAGE_DATASETS


def builder_config(data_config) -> tuple[type, tfds.core.BuilderConfig]:
  """Builder class and config named by ``data_config`` (variant + seed + overrides)."""
  name = data_config.get("name")
  if name not in _BUILDERS:
    raise ValueError(f"data.name={name!r}; allowed: {list(DATASETS)}"
                     + (f" ({name} reads tfds's own builder, no generation)"
                        if name in DATASETS else ""))
  cls = _BUILDERS[name]
  configs = {c.name: c for c in cls.BUILDER_CONFIGS}
  variant = data_config.get("variant") or cls.BUILDER_CONFIGS[0].name
  if variant not in configs:
    raise ValueError(f"data.variant={variant!r} for {name}; allowed: {list(configs)}")
  base = configs[variant]
  changes = {}
  for field in _OVERRIDES[cls]:
    value = data_config.get(field)
    if value is not None and value != getattr(base, field):
      changes[field] = int(value)
  config = base
  if changes:
    suffix = "-".join(f"{k}{v}" for k, v in changes.items())
    config = dataclasses.replace(base, name=f"{variant}-{suffix}", **changes)
  if cls is ListOps:
    listops.check_bounds(config.min_length, config.max_length, config.max_depth,
                         config.max_args)
    if config.seq_len < config.max_length - 1:
      raise ValueError(f"data.seq_len={config.seq_len}; must be >= max_length - 1 = "
                       f"{config.max_length - 1}")
  elif cls is PathfinderGen:
    pathfinder.check_params(pathfinder.lra_params(config.contour_length))
    _check_sizes(name, config.num_train, config.num_validation, config.num_test)
  elif cls not in _MANUAL:
    synthetic.check_sizes(cls.TASK, config.num_train, config.num_test, config.input_seq_len,
                          config.vocab_size)
  return cls, config


def _check_sizes(name: str, *sizes: int) -> None:
  if min(sizes) < 1:
    raise ValueError(f"data.num_train/num_validation/num_test={sizes} for {name}; "
                     "each must be >= 1")


def prepare(data_config) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder for ``data_config``: generated once, under a file lock so that
  concurrent processes sharing a ``data_dir`` wait for the first instead of racing."""
  cls, config = builder_config(data_config)
  make = functools.partial(cls, config=config, data_dir=data_config.get("data_dir"),
                           file_format="array_record")
  builder = make()
  if builder.is_prepared():
    return builder
  download_config = tfds.download.DownloadConfig(try_download_gcs=False)
  if cls in _MANUAL:
    release = lra.find_release(data_config.get("name"), data_config.get("manual_dir"),
                               data_config.get("data_dir"), cls.required(config))
    download_config = tfds.download.DownloadConfig(try_download_gcs=False,
                                                   manual_dir=release)
  lock_path = os.fspath(builder.data_dir).rstrip("/") + ".lock"
  os.makedirs(os.path.dirname(lock_path), exist_ok=True)
  with open(lock_path, "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      builder = make()
      if not builder.is_prepared():
        builder.download_and_prepare(file_format="array_record",
                                     download_config=download_config)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return builder


def load_split(data_config, split: str):
  """(random-access source, DataInfo) for one split of the task named by ``data_config``.

  Generates (or converts) and caches the dataset on first use. Examples follow CONTRACT
  item 2: lm tasks {"inputs", "targets": int32[L], "weights": float32[L]}, classification
  {"inputs": int32[L] (0 = pad), "label": int32[]}, dual (lra_retrieval) {"inputs",
  "inputs2": int32[L], "label": int32[]}.
  """
  name = data_config.get("name")
  if name in images.IMAGE_DATASETS:
    return images.load_image_split(data_config, split)
  if name in lra.TFDS_SPLITS:
    return _load_tfds_task(data_config, split)
  lengths = _lengths(data_config) if name in _VIEWED else None
  builder = prepare(data_config)
  available = list(builder.info.splits)
  if split not in available:
    raise ValueError(f"split={split!r} for {builder.name}; allowed: {available}")
  raw = builder.as_data_source(split)
  cfg = builder.builder_config
  if isinstance(builder, ListOps):
    info = DataInfo(vocab_size=listops.VOCAB_SIZE, num_classes=listops.NUM_CLASSES,
                    seq_len=cfg.seq_len, task_type="classification", num_examples=len(raw))
    return lra.MappedSource(raw, functools.partial(_padded_classification,
                                                   seq_len=cfg.seq_len)), info
  if isinstance(builder, lra.LraRetrieval):
    max_length, seq_len = lengths
    info = DataInfo(vocab_size=lra.BYTE_VOCAB_SIZE, num_classes=2, seq_len=seq_len,
                    task_type="dual", num_examples=len(raw))
    return lra.MappedSource(raw, lra.PairExample(max_length, seq_len)), info
  if isinstance(builder, (PathfinderGen, lra.LraPathfinder)):
    seq_len = lengths[1]
    info = DataInfo(vocab_size=lra.PIXEL_VOCAB_SIZE, num_classes=pathfinder.NUM_CLASSES,
                    seq_len=seq_len, task_type="classification", num_examples=len(raw))
    return lra.MappedSource(raw, lra.PixelExample(seq_len)), info
  seq_len = builder.info.features["inputs"].shape[0]
  info = DataInfo(vocab_size=cfg.vocab_size, num_classes=cfg.vocab_size, seq_len=seq_len,
                  task_type="lm", num_examples=len(raw))
  return sources.in_memory(raw), info


def _lengths(data_config) -> tuple:
  """(max_length, seq_len) of the LRA views (module doc); max_length is None for pixels."""
  name, seq_len = data_config.get("name"), data_config.get("seq_len")
  if name in ("lra_text", "lra_retrieval"):
    max_length = data_config.get("max_length")
    max_length = lra.TEXT_MAX_LENGTH if max_length is None else int(max_length)
    seq_len = max_length if seq_len is None else int(seq_len)
    lra.check_lengths(name, max_length, seq_len,
                      lra.RETRIEVAL_MAX_LENGTH if name == "lra_retrieval" else None)
    return max_length, seq_len
  seq_len = _PIXELS if seq_len is None else int(seq_len)
  if seq_len < _PIXELS:
    raise ValueError(f"data.seq_len={seq_len} for {name}; must be >= {_PIXELS} (32 x 32 "
                     "pixels)")
  return None, seq_len


def _load_tfds_task(data_config, split: str):
  """lra_text / lra_image: a view over tfds's own prepared builder (see ``lra``)."""
  name = data_config.get("name")
  if data_config.get("variant"):
    raise ValueError(f"data.variant={data_config.get('variant')!r} for {name}; it has no "
                     "variants (leave it empty)")
  max_length, seq_len = _lengths(data_config)
  raw = lra.tfds_source(name, split, data_config.get("data_dir"))
  if name == "lra_text":
    transform, vocab_size, num_classes = (lra.TextExample(max_length, seq_len),
                                          lra.BYTE_VOCAB_SIZE, 2)
  else:
    transform, vocab_size, num_classes = lra.ImageExample(seq_len), lra.PIXEL_VOCAB_SIZE, 10
  info = DataInfo(vocab_size=vocab_size, num_classes=num_classes, seq_len=seq_len,
                  task_type="classification", num_examples=len(raw))
  return lra.MappedSource(raw, transform), info
