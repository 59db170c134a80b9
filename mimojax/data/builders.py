"""tfds builders of the tasks built here, and how ``data_config`` configures and prepares them.

A builder (``Builder``, a ``tfds.core.GeneratorBasedBuilder``) is written as array_record and
read with ``as_data_source``, so TensorFlow is never imported. Generation is deterministic
given the builder config (seed included), shows tqdm progress, and is cached by tfds under
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

Splits: ``train`` / ``test`` for the synthetics (HazyResearch/safari evaluates on test),
``train`` / ``validation`` / ``test`` for the others. ListOps tokens, retrieval documents
and pixels are stored compactly (uint8); the task table (``tasks``) reads them through views
that make int32 ids.

``builder_config(cls, data_config)``: ``data.variant`` names the config (empty -> the first
one listed); each field of the builder's ``OVERRIDES`` that ``data_config`` sets (not None)
to another value than the variant's replaces it, in a separate cached config named
``<variant>-<field><value>...`` (e.g. ``L128-seed3``).
"""

import dataclasses
import fcntl
import functools
import os

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mimojax.data import listops
from mimojax.data import pathfinder
from mimojax.data import synthetic


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


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A task's tfds builder: which ``data_config`` fields override its configs, the checks of
  a config, and where the files it converts are."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  OVERRIDES: tuple[str, ...] = ()

  @classmethod
  def check(cls, config: tfds.core.BuilderConfig) -> None:
    """One-line ValueError naming the field of a config it cannot build."""
    del config

  @classmethod
  def manual_dir(cls, config: tfds.core.BuilderConfig, data_config) -> str | None:
    """The folder holding the files it converts; None: it generates its data."""
    del config, data_config
    return None

  def labelled_info(self, **inputs: tfds.features.Tensor) -> tfds.core.DatasetInfo:
    """Info of examples ``{**inputs, "label": int32[]}``, kept in generation order."""
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            **inputs, "label": tfds.features.Tensor(shape=(), dtype=np.int32)}),
        disable_shuffling=True)


def check_split_sizes(task: str, config: tfds.core.BuilderConfig) -> None:
  """ValueError unless every ``num_*`` split size of ``config`` is >= 1."""
  sizes = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
           if f.name.startswith("num_")}
  if min(sizes.values()) < 1:
    raise ValueError(f"data.{'/'.join(sizes)}={tuple(sizes.values())} for {task}; each must "
                     "be >= 1")


class _SyntheticsBuilder(Builder, skip_registration=True):
  """Shared builder body of the two in-context-learning synthetics."""

  TASK = ""
  OVERRIDES = ("seed", "vocab_size", "input_seq_len", "num_train", "num_test")

  @classmethod
  def check(cls, config: SyntheticsConfig) -> None:
    synthetic.check_sizes(cls.TASK, config.num_train, config.num_test, config.input_seq_len,
                          config.vocab_size)

  @classmethod
  def sequence_length(cls, config: SyntheticsConfig) -> int:
    """Length of the inputs (and targets): the sequence minus its last token."""
    return config.input_seq_len + (2 if cls.TASK == "assoc_recall" else 1)

  def _info(self) -> tfds.core.DatasetInfo:
    length = self.sequence_length(self.builder_config)
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


class ListOps(Builder):
  """LRA ListOps re-generated with a private seeded sampler, see ``listops``."""

  name = "listops"
  OVERRIDES = ("seed", "min_length", "max_length", "seq_len", "max_depth", "max_args",
               "num_train", "num_validation", "num_test")
  BUILDER_CONFIGS = [
      ListOpsConfig(name="full"),
      ListOpsConfig(name="L500", min_length=100, max_length=500, seq_len=500,
                    num_train=20_000),
      ListOpsConfig(name="L128", min_length=20, max_length=128, seq_len=128,
                    num_train=20_000),
      ListOpsConfig(name="tiny", min_length=10, max_length=64, seq_len=64,
                    num_train=512, num_validation=64, num_test=64),
  ]

  @classmethod
  def check(cls, config: ListOpsConfig) -> None:
    listops.check_bounds(config.min_length, config.max_length, config.max_depth,
                         config.max_args)
    if config.seq_len < config.max_length - 1:
      raise ValueError(f"data.seq_len={config.seq_len}; must be >= max_length - 1 = "
                       f"{config.max_length - 1}")
    check_split_sizes(cls.name, config)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.labelled_info(inputs=tfds.features.Tensor(shape=(None,), dtype=np.uint8))

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


class PathfinderGen(Builder):
  """Pathfinder-32 from our own seeded generator (``pathfinder``): image i of the stream
  ``seed`` is train example i, then validation, then test; pixels stored as uint8[1024]."""

  name = "pathfinder_gen"
  OVERRIDES = ("seed", "contour_length", "num_train", "num_validation", "num_test")
  BUILDER_CONFIGS = [
      PathfinderGenConfig(name="pf32"),
      PathfinderGenConfig(name="tiny", num_train=64, num_validation=16, num_test=16),
  ]
  PARALLEL_FROM = 5_000  # images; smaller sets are generated in-process

  @classmethod
  def check(cls, config: PathfinderGenConfig) -> None:
    pathfinder.check_params(pathfinder.lra_params(config.contour_length))
    check_split_sizes(cls.name, config)

  def _info(self) -> tfds.core.DatasetInfo:
    size = pathfinder.Params.size
    return self.labelled_info(inputs=tfds.features.Tensor(shape=(size * size,), dtype=np.uint8))

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




def builder_config(cls: type[Builder], data_config) -> tfds.core.BuilderConfig:
  """The config of builder ``cls`` that ``data_config`` names (variant + overrides), checked."""
  configs = {c.name: c for c in cls.BUILDER_CONFIGS}
  variant = data_config.variant or cls.BUILDER_CONFIGS[0].name
  if variant not in configs:
    raise ValueError(f"data.variant={variant!r} for {cls.name}; allowed: {list(configs)}")
  base = configs[variant]
  changes = {}
  for field in cls.OVERRIDES:
    value = getattr(data_config, field)
    if value is not None and value != getattr(base, field):
      changes[field] = value
  config = base
  if changes:
    suffix = "-".join(f"{k}{v}" for k, v in changes.items())
    config = dataclasses.replace(base, name=f"{variant}-{suffix}", **changes)
  cls.check(config)
  return config


def prepare(cls: type[Builder], data_config) -> Builder:
  """The prepared builder ``cls`` for ``data_config``: built once, under a file lock so that
  concurrent processes sharing a ``data_dir`` wait for the first instead of racing."""
  config = builder_config(cls, data_config)
  make = functools.partial(cls, config=config, data_dir=data_config.data_dir,
                           file_format="array_record")
  builder = make()
  if builder.is_prepared():
    return builder
  download_config = tfds.download.DownloadConfig(
      try_download_gcs=False, manual_dir=cls.manual_dir(config, data_config))
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
