"""Long Range Arena Text, Image, Retrieval and Pathfinder data (MIMONets Table 2, App. F).

Four tasks with real data that has to come from outside; each is read exactly as the LRA
input pipelines read it (google-research/long-range-arena) and as the MIMOFormer code's
converters store it (token id 0 = padding; ids are the model's inputs, nothing normalised):

* Text (``lra_text``): tfds ``imdb_reviews/plain_text``, 25k train / 25k test; the test
  split is also the validation split (IMDb has none; LRA and MIMOFormer do the same).
  A review's UTF-8 bytes become ids byte + 1 (LRA's ``ByteTextEncoder``: 0 = pad, vocab
  257), truncated to ``max_length`` (LRA 1000; MIMOFormer/Skyformer 4000, the default) and
  right-padded with 0 to ``seq_len`` (default ``max_length``; the MIMOFormer pickles pad
  4000 to 4096). 2 classes.
* Image (``lra_image``): tfds ``cifar10``, train[:90%] / train[90%:] / test = 45k / 5k /
  10k; ``rgb_to_gray`` (TF's ``rgb_to_grayscale``) gives pixel ids 0-255 (vocab 256),
  flattened row-major to 1024 tokens. 10 classes.
* Retrieval (``lra_retrieval``, dual encoder): the LRA release TSVs
  ``tsv_data/new_aan_pairs.{train,eval,test}.tsv`` (label, id1, id2, text1, text2; no
  header, tab-separated, no quoting), 147,086 / 18,090 / 17,437 pairs. Each document is
  byte-tokenised like Text and cut to ``RETRIEVAL_MAX_LENGTH`` = 4000 bytes (LRA) when the
  tfds builder is prepared; examples are {"inputs", "inputs2": int32[seq_len], "label"}.
  2 classes.
* Pathfinder (``lra_pathfinder``): the LRA release PNGs
  ``pathfinder32/<difficulty>/{metadata/*.npy, imgs/}``; each metadata line is
  "<subdir> <file> <index> <label> ...". ``hard`` = ``curv_contour_length_14`` (the
  benchmark's), ``intermediate`` = ``curv_contour_length_9``, ``easy`` = ``curv_baseline``.
  Empty (0-byte) PNGs are skipped as LRA does; the rest are shuffled with a seeded
  permutation (MIMOFormer's converter used an unseeded shuffle) and split 80/10/10
  (160k / 20k / 20k for 200k images). Pixel ids 0-255, 1024 tokens, 2 classes. Decoding
  needs Pillow. ``pathfinder.py`` generates the same task offline.

The MIMOFormer code masks id 0 as padding, which for Image and Pathfinder also masks black
pixels (most of a Pathfinder image); these ids reproduce that when the model masks id 0.

Text and Image read tfds's own builders (``TEXT_TFDS``, ``IMAGE_TFDS``) with
``sources.tfds_split`` (array_record; preparing them needs internet and TensorFlow, reading
them does not). Retrieval and Pathfinder are tfds builders here that convert the release
files from a manual directory once. Missing data raises ``FileNotFoundError`` with a
one-line message saying what to put where.
"""

import dataclasses
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import constants as tfds_constants

from mimojax.data import builders
from mimojax.data import listops

BYTE_VOCAB_SIZE = 257
PIXEL_VOCAB_SIZE = 256
TEXT_MAX_LENGTH = 4000
RETRIEVAL_MAX_LENGTH = 4000
IMAGE_SIZE = 32
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
RETRIEVAL_FILES = {"train": "new_aan_pairs.train.tsv", "validation": "new_aan_pairs.eval.tsv",
                   "test": "new_aan_pairs.test.tsv"}
PATHFINDER_FOLDERS = {"hard": "curv_contour_length_14", "intermediate": "curv_contour_length_9",
                      "easy": "curv_baseline"}
# (tfds dataset, its split string for each of our splits) of Text and Image
TEXT_TFDS = ("imdb_reviews/plain_text", {"train": "train", "validation": "test", "test": "test"})
IMAGE_TFDS = ("cifar10", {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"})
# where the release archive's folders may sit below data.manual_dir (the archive nests
# lra_release/lra_release/)
_RELEASE_ROOTS = ("", "lra_release", os.path.join("lra_release", "lra_release"))


def byte_ids(text, max_length: int) -> np.ndarray:
  """int32 ids byte + 1 of the first ``max_length`` bytes of ``text`` (str: UTF-8)."""
  data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  return np.frombuffer(data[:max_length], np.uint8).astype(np.int32) + 1


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
  """uint8 (..., H, W) luma of uint8 (..., H, W, 3) RGB, computed as TF's
  ``rgb_to_grayscale`` does: x / 255 in float32, weights (.2989, .5870, .1140), times 255.5,
  truncated."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.shape[-1:] != (3,):
    raise ValueError(f"image dtype={image.dtype}, shape={image.shape}; need uint8 (..., 3)")
  scaled = image.astype(np.float32) * np.float32(1 / 255)
  gray = scaled @ np.asarray(GRAY_WEIGHTS, np.float32)
  return (gray * np.float32(255.5)).astype(np.uint8)


def check_lengths(task: str, max_length: int, seq_len: int, limit: int | None = None) -> None:
  """One-line ValueError unless 1 <= max_length (<= limit) <= seq_len."""
  if max_length < 1 or (limit is not None and max_length > limit):
    bound = f"1..{limit}" if limit is not None else ">= 1"
    raise ValueError(f"data.max_length={max_length} for {task}; allowed: {bound}")
  if seq_len < max_length:
    raise ValueError(f"data.seq_len={seq_len} for {task}; must be >= max_length={max_length}")


@dataclasses.dataclass(frozen=True)
class TextExample:
  """tfds imdb example {"text", "label"} -> {"inputs": int32[seq_len], "label": int32}."""
  max_length: int
  seq_len: int

  def __call__(self, example: dict) -> dict:
    return {"inputs": listops.pad(byte_ids(example["text"], self.max_length), self.seq_len),
            "label": np.asarray(example["label"], np.int32)}


@dataclasses.dataclass(frozen=True)
class ImageExample:
  """tfds cifar10 example {"image", "label"} -> gray ids {"inputs": int32[seq_len],
  "label": int32}."""
  seq_len: int

  def __call__(self, example: dict) -> dict:
    gray = rgb_to_gray(example["image"]).reshape(-1)
    return {"inputs": listops.pad(gray, self.seq_len),
            "label": np.asarray(example["label"], np.int32)}


@dataclasses.dataclass(frozen=True)
class PairExample:
  """Stored retrieval example (raw document bytes as uint8) -> {"inputs", "inputs2":
  int32[seq_len] byte ids, "label": int32}."""
  max_length: int
  seq_len: int

  def __call__(self, example: dict) -> dict:
    def ids(raw):
      return listops.pad(np.asarray(raw[:self.max_length], np.int32) + 1, self.seq_len)
    return {"inputs": ids(example["inputs"]), "inputs2": ids(example["inputs2"]),
            "label": np.asarray(example["label"], np.int32)}


@dataclasses.dataclass(frozen=True)
class PaddedExample:
  """Stored uint8 ids (ListOps tokens, pixels) -> {"inputs": int32[seq_len] right-padded with
  0, "label": int32}."""
  seq_len: int

  def __call__(self, example: dict) -> dict:
    return {"inputs": listops.pad(np.asarray(example["inputs"]).reshape(-1), self.seq_len),
            "label": np.asarray(example["label"], np.int32)}


def default_manual_dir(data_dir) -> str:
  """tfds's default manual directory, <data_dir>/downloads/manual."""
  root = os.fspath(data_dir or tfds_constants.get_default_data_dir())
  return os.path.join(root, "downloads", "manual")


def find_release(task: str, manual_dir, data_dir, required: str) -> str:
  """The LRA release folder (the one holding ``tsv_data/`` and ``pathfinder32/``) at or below
  ``manual_dir`` (None: tfds's default) that contains ``required``; FileNotFoundError saying
  what to download and where to put it otherwise."""
  manual_dir = os.fspath(manual_dir or default_manual_dir(data_dir))
  for sub in _RELEASE_ROOTS:
    root = os.path.join(manual_dir, sub)
    if os.path.exists(os.path.join(root, required)):
      return root
  raise FileNotFoundError(
      f"{task}: {required} not found under {manual_dir} (data.manual_dir; None means "
      f"<data_dir>/downloads/manual) nor its lra_release/ or lra_release/lra_release/; "
      f"download {RELEASE_URL} (7.7 GB), extract it (`tar xzf lra_release.gz`) and set "
      f"data.manual_dir to the extracted folder that holds {required.split(os.sep)[0]}/")


def read_aan_tsv(path: str):
  """Yields (label, id1, id2, text1, text2) per row of an AAN pairs TSV (label an int, the
  rest bytes); ValueError naming the file and line for a malformed row."""
  with open(path, "rb") as f:
    for number, line in enumerate(f, start=1):
      line = line.rstrip(b"\r\n")
      if not line:
        continue
      fields = line.split(b"\t")
      try:
        if len(fields) != 5:
          raise ValueError(f"{len(fields)} tab-separated fields")
        label = float(fields[0])
        if label not in (0.0, 1.0):
          raise ValueError(f"label {label}")
      except ValueError as err:
        raise ValueError(f"{path}:{number}: {err}; need 5 fields label (0/1), id1, id2, "
                         "text1, text2") from None
      yield (int(label),) + tuple(fields[1:])


def read_pathfinder_metadata(directory: str) -> list[tuple[str, int]]:
  """(image path relative to ``directory``, label) for every line of every
  ``metadata/*.npy`` file (text lines "<subdir> <file> <index> <label> ..."; a binary .npy
  of such rows is read too), files in numeric-then-name order."""
  meta = os.path.join(directory, "metadata")
  names = sorted((n for n in os.listdir(meta) if n.endswith(".npy")),
                 key=lambda n: (int(n[:-4]) if n[:-4].isdigit() else float("inf"), n))
  entries = []
  for name in names:
    path = os.path.join(meta, name)
    with open(path, "rb") as f:
      data = f.read()
    if data.startswith(b"\x93NUMPY"):
      rows = [[str(v) for v in row] for row in np.load(io.BytesIO(data), allow_pickle=False)]
    else:
      rows = [line.split() for line in data.decode("utf-8").splitlines() if line.strip()]
    for row in rows:
      if len(row) < 4 or row[3] not in ("0", "1"):
        raise ValueError(f"{path}: row {row!r}; need '<subdir> <file> <index> <label 0/1> ...'")
      entries.append((os.path.join(row[0], row[1]), int(row[3])))
  return entries


def decode_png(path: str) -> np.ndarray:
  """uint8 (H, W) grayscale pixels of a PNG (Pillow; an RGB file is converted with Pillow's
  luma weights)."""
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError("lra_pathfinder decodes the release PNGs with Pillow: "
                      "pip install pillow") from err
  with Image.open(path) as image:
    return np.asarray(image if image.mode == "L" else image.convert("L"), np.uint8)


def split_indices(num_examples: int, seed: int) -> dict:
  """Seeded permutation of range(num_examples) cut 80/10/10 (MIMOFormer's pathfinder
  converter: boundaries int(0.8 n), int(0.9 n))."""
  order = np.random.default_rng(seed).permutation(num_examples)
  a, b = int(num_examples * 0.8), int(num_examples * 0.9)
  return {"train": order[:a], "validation": order[a:b], "test": order[b:]}


_MANUAL_HELP = (f"Download {RELEASE_URL} (7.7 GB), extract it (`tar xzf lra_release.gz`) and "
                "pass the extracted folder that holds tsv_data/ and pathfinder32/ as "
                "data.manual_dir (default: <data_dir>/downloads/manual).")


class _ReleaseBuilder(builders.Builder, skip_registration=True):
  """A builder that converts files of the LRA release found in ``data.manual_dir``. Each
  subclass names, in ``required(config)``, the release file or folder whose presence
  identifies the release folder."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_HELP

  @classmethod
  def manual_dir(cls, config, data_config) -> str:
    return find_release(cls.name, data_config.manual_dir, data_config.data_dir,
                        cls.required(config))


class LraRetrieval(_ReleaseBuilder):
  """LRA Retrieval (AAN document pairs) from the release TSVs; documents stored as their
  first ``RETRIEVAL_MAX_LENGTH`` bytes (uint8), see the module doc."""

  name = "lra_retrieval"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="aan")]

  @classmethod
  def required(cls, config) -> str:
    del config
    return os.path.join("tsv_data", RETRIEVAL_FILES["train"])

  def _info(self) -> tfds.core.DatasetInfo:
    document = tfds.features.Tensor(shape=(None,), dtype=np.uint8)
    return self.labelled_info(inputs=document, inputs2=document)

  def _split_generators(self, dl_manager):
    folder = os.path.join(os.fspath(dl_manager.manual_dir), "tsv_data")
    return {split: self._generate_examples(os.path.join(folder, file))
            for split, file in RETRIEVAL_FILES.items()}

  def _generate_examples(self, path):
    if not os.path.exists(path):
      raise FileNotFoundError(f"lra_retrieval: {path} is missing; {_MANUAL_HELP}")
    for i, (label, _, _, text1, text2) in enumerate(read_aan_tsv(path)):
      yield i, {"inputs": np.frombuffer(text1[:RETRIEVAL_MAX_LENGTH], np.uint8),
                "inputs2": np.frombuffer(text2[:RETRIEVAL_MAX_LENGTH], np.uint8),
                "label": np.int32(label)}


@dataclasses.dataclass(eq=False)
class PathfinderReleaseConfig(tfds.core.BuilderConfig):
  """Release difficulty folder and the seed of the 80/10/10 split."""
  folder: str = PATHFINDER_FOLDERS["hard"]
  seed: int = 0


class LraPathfinder(_ReleaseBuilder):
  """LRA Pathfinder-32 from the release PNGs (module doc); images stored as uint8[1024]."""

  name = "lra_pathfinder"
  OVERRIDES = ("seed",)
  BUILDER_CONFIGS = [PathfinderReleaseConfig(name=name, folder=folder)
                     for name, folder in PATHFINDER_FOLDERS.items()]

  @classmethod
  def required(cls, config: PathfinderReleaseConfig) -> str:
    return os.path.join("pathfinder32", config.folder, "metadata")

  def _info(self) -> tfds.core.DatasetInfo:
    pixels = tfds.features.Tensor(shape=(IMAGE_SIZE * IMAGE_SIZE,), dtype=np.uint8)
    return self.labelled_info(inputs=pixels)

  def _split_generators(self, dl_manager):
    directory = os.path.join(os.fspath(dl_manager.manual_dir), "pathfinder32",
                             self.builder_config.folder)
    entries = [(os.path.join(directory, rel), label)
               for rel, label in read_pathfinder_metadata(directory)]
    entries = [(path, label) for path, label in entries if os.path.getsize(path) > 0]
    return {split: self._generate_examples([entries[i] for i in indices])
            for split, indices in split_indices(len(entries), self.builder_config.seed).items()}

  def _generate_examples(self, entries):
    for i, (path, label) in enumerate(entries):
      pixels = decode_png(path)
      if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{path}: image shape {pixels.shape}; need "
                         f"({IMAGE_SIZE}, {IMAGE_SIZE})")
      yield i, {"inputs": pixels.reshape(-1), "label": np.int32(label)}
