"""LRA Text / Image (tfds, mocked), Retrieval / Pathfinder release (fixture files) loaders, and a
smoke training of every LRA task through the loop."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from experiments import favor_s_lra
from mimojax.data import DataInfo
from mimojax.data import eval_batches
from mimojax.data import load_split
from mimojax.data import lra
from mimojax.data import train_batches
from mimojax.train import loop
from mimojax.train.config import DataConfig


# ------------------------------------------------------------------ transformations


def test_byte_ids_are_bytes_plus_one():
  # tfds ByteTextEncoder's own test vectors: ids = UTF-8 bytes + 1 (0 is padding)
  assert lra.byte_ids("\u4f60\u597d ", 100).tolist() == [
      i + 1 for i in [228, 189, 160, 229, 165, 189, 32]]
  assert lra.byte_ids("hello ", 100).tolist() == [i + 1 for i in [104, 101, 108, 108, 111, 32]]
  text = "caf\u00e9 <br /> \u2603"
  expected = [b + 1 for b in text.encode("utf-8")]
  assert lra.byte_ids(text, 100).tolist() == expected == lra.byte_ids(text.encode(), 100).tolist()
  assert bytes(int(i) - 1 for i in lra.byte_ids(text, 100)).decode("utf-8") == text
  assert lra.byte_ids(text, 4).tolist() == expected[:4]  # truncation counts bytes
  example = lra.TextExample(max_length=5, seq_len=8)({"text": b"hello world", "label": 1})
  assert example["inputs"].tolist() == [105, 102, 109, 109, 112, 0, 0, 0]
  assert example["inputs"].dtype == np.int32 and example["label"].dtype == np.int32


def test_gray_matches_tensorflow_formula():
  pixels = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                     [1, 2, 3], [10, 200, 30]], np.uint8)
  # trunc(255.5 * (w . x) / 255): 76.37, 149.98, 29.13, 1.82, 124.05 truncated
  assert lra.rgb_to_gray(pixels).tolist() == [255, 0, 76, 149, 29, 1, 124]
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
  exact = 255.5 * (image.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])) / 255
  gray = lra.rgb_to_gray(image)
  clear = np.abs(exact - np.rint(exact)) > 1e-3  # away from float32 rounding ties
  np.testing.assert_array_equal(gray[clear], np.floor(exact[clear]).astype(np.uint8))
  example = lra.ImageExample(seq_len=1024)({"image": image[:32, :32], "label": 7})
  np.testing.assert_array_equal(example["inputs"], gray[:32, :32].reshape(-1))
  with pytest.raises(ValueError, match="uint8"):
    lra.rgb_to_gray(image.astype(np.float32))


def test_pair_and_pixel_views():
  view = lra.PairExample(max_length=3, seq_len=5)
  ex = view({"inputs": np.frombuffer(b"abcdef", np.uint8), "inputs2": np.zeros(0, np.uint8),
             "label": np.int32(1)})
  assert ex["inputs"].tolist() == [98, 99, 100, 0, 0] and ex["inputs2"].tolist() == [0] * 5
  pixels = lra.PaddedExample(seq_len=1026)({"inputs": np.arange(1024) % 256, "label": 0})
  assert pixels["inputs"].tolist() == list(np.arange(1024) % 256) + [0, 0]


# ------------------------------------------------------------------ tfds-backed tasks


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_text_under_mock_data(split):
  with tfds.testing.mock_data(num_examples=5):
    source, info = load_split(DataConfig(name="lra_text", max_length=12, seq_len=16), split)
    raw = tfds.data_source("imdb_reviews/plain_text", split="test")
    assert info == DataInfo(vocab_size=257, num_classes=2, seq_len=16,
                            task_type="classification", num_examples=5)
    for i in range(5):
      ex, text = source[i], raw[i]["text"]
      data = text.encode("utf-8") if isinstance(text, str) else text
      expected = [b + 1 for b in data[:12]] + [0] * (16 - min(len(data), 12))
      assert ex["inputs"].tolist() == expected and ex["inputs"].dtype == np.int32
      assert ex["label"].shape == () and ex["label"].dtype == np.int32
      assert int(ex["label"]) == int(raw[i]["label"]) and 0 <= int(ex["label"]) < 2
    _, default = load_split(DataConfig(name="lra_text"), split)
    assert default.seq_len == 4000


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_image_under_mock_data(split):
  with tfds.testing.mock_data(num_examples=4):
    source, info = load_split(DataConfig(name="lra_image"), split)
    raw = tfds.data_source("cifar10", split="train")
    assert info == DataInfo(vocab_size=256, num_classes=10, seq_len=1024,
                            task_type="classification", num_examples=4)
    for i in range(4):
      ex, image = source[i], raw[i]["image"]
      assert ex["inputs"].shape == (1024,) and ex["inputs"].dtype == np.int32
      assert 0 <= ex["inputs"].min() and ex["inputs"].max() <= 255
      np.testing.assert_array_equal(ex["inputs"], lra.rgb_to_gray(image).reshape(-1))
      assert int(ex["label"]) == int(raw[i]["label"]) and ex["label"].dtype == np.int32
    batch = next(iter(eval_batches(source, 4)))
    assert batch["inputs"].shape == (4, 1024) and batch["valid"].all()


def test_tfds_split_mapping():
  assert lra.IMAGE_TFDS[1] == {
      "train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
  assert lra.TEXT_TFDS[1]["validation"] == "test"  # LRA: IMDb test = val


def test_missing_tfds_data_says_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    load_split(DataConfig(name="lra_text", data_dir=str(tmp_path)), "train")
  message = str(err.value)
  assert "\n" not in message
  assert f"tfds build imdb_reviews/plain_text --data_dir={tmp_path}" in message
  assert "--file_format=array_record" in message
  with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
    load_split(DataConfig(name="lra_image", data_dir=str(tmp_path)), "test")


def test_bad_text_and_image_configs():
  with pytest.raises(ValueError, match="split"):
    load_split(DataConfig(name="lra_text"), "dev")
  with pytest.raises(ValueError, match="variant"):
    load_split(DataConfig(name="lra_image", variant="rgb"), "train")
  with pytest.raises(ValueError, match="seq_len"):
    load_split(DataConfig(name="lra_text", max_length=100, seq_len=50), "train")
  with pytest.raises(ValueError, match="seq_len"):
    load_split(DataConfig(name="lra_image", seq_len=512), "train")


# ------------------------------------------------------------------ LRA release files

ROWS = {
    "train": [("1", "p1", "p2", "hello world", "caf\u00e9"), ("0", "p3", "p4", "x" * 4100, "yz"),
              ("1.0", "p5", "p6", "a \"quoted\" text", "b")],
    "eval": [("0", "p7", "p8", "pq", "rs")],
    "test": [("1", "p9", "p10", "ab", "cd"), ("0", "p11", "p12", "ef", "")],
}


def _write_tsvs(root):
  os.makedirs(os.path.join(root, "tsv_data"))
  for split, rows in ROWS.items():
    with open(os.path.join(root, "tsv_data", f"new_aan_pairs.{split}.tsv"), "w",
              encoding="utf-8") as f:
      f.writelines("\t".join(row) + "\n" for row in rows)


def test_retrieval_from_manual_dir(tmp_path):
  release = tmp_path / "manual" / "lra_release" / "lra_release"  # as the archive nests it
  _write_tsvs(str(release))
  cfg = DataConfig(name="lra_retrieval", data_dir=str(tmp_path / "data"),
                   manual_dir=str(tmp_path / "manual"), seq_len=4096)
  for split, rows in (("train", ROWS["train"]), ("validation", ROWS["eval"]),
                      ("test", ROWS["test"])):
    source, info = load_split(cfg, split)
    assert info == DataInfo(vocab_size=257, num_classes=2, seq_len=4096, task_type="dual",
                            num_examples=len(rows))
    for ex, (label, _, _, text1, text2) in zip((source[i] for i in range(len(rows))), rows):
      for key, text in (("inputs", text1), ("inputs2", text2)):
        data = text.encode("utf-8")[:4000]
        assert ex[key].dtype == np.int32 and ex[key].shape == (4096,)
        assert ex[key].tolist() == [b + 1 for b in data] + [0] * (4096 - len(data))
      assert int(ex["label"]) == int(float(label)) and ex["label"].dtype == np.int32
  cfg = dataclasses.replace(cfg, max_length=3, seq_len=None)
  source, info = load_split(cfg, "train")
  assert info.seq_len == 3 and source[0]["inputs"].tolist() == [105, 102, 109]
  batch = next(train_batches(source, 2, seed=0))
  assert set(batch) == {"inputs", "inputs2", "label"} and batch["inputs2"].shape == (2, 3)
  with pytest.raises(ValueError, match="max_length"):
    load_split(dataclasses.replace(cfg, max_length=4001), "train")


def test_missing_manual_dir_says_what_to_do(tmp_path):
  for name, folder in (("lra_retrieval", "tsv_data/"), ("lra_pathfinder", "pathfinder32/")):
    with pytest.raises(FileNotFoundError) as err:
      load_split(DataConfig(name=name, data_dir=str(tmp_path)), "train")
    message = str(err.value)
    assert "\n" not in message and lra.RELEASE_URL in message and folder in message
    assert os.path.join(str(tmp_path), "downloads", "manual") in message


def test_malformed_tsv_row(tmp_path):
  path = tmp_path / "bad.tsv"
  path.write_text("1\ta\tb\tx\ty\n0\ta\tb\tonly four\n")
  with pytest.raises(ValueError, match="bad.tsv:2"):
    list(lra.read_aan_tsv(str(path)))


def _write_pathfinder(root, num=20):
  """Release-style folder: metadata/0.npy text lines + imgs/0/sample_i.png; image i has
  pixel [0, 0] = i and label i % 2 (index 3); one extra empty PNG that must be skipped."""
  base = os.path.join(root, "pathfinder32", "curv_contour_length_14")
  os.makedirs(os.path.join(base, "metadata"))
  os.makedirs(os.path.join(base, "imgs", "0"))
  lines, images = [], {}
  for i in range(num):
    pixels = np.random.default_rng(i).integers(0, 256, size=(32, 32), dtype=np.uint8)
    pixels[0, 0] = i
    Image.fromarray(pixels).save(os.path.join(base, "imgs", "0", f"sample_{i}.png"))
    lines.append(f"imgs/0 sample_{i}.png {i} {i % 2} 1.0 14 4 2 0.5 1 1")
    images[i] = pixels
  open(os.path.join(base, "imgs", "0", f"sample_{num}.png"), "wb").close()
  lines.append(f"imgs/0 sample_{num}.png {num} 1 1.0 14 4 2 0.5 1 1")
  with open(os.path.join(base, "metadata", "0.npy"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return images


def test_pathfinder_release_from_manual_dir(tmp_path):
  images = _write_pathfinder(str(tmp_path / "release"))
  cfg = DataConfig(name="lra_pathfinder", data_dir=str(tmp_path / "data"),
                   manual_dir=str(tmp_path / "release"), seed=3)
  seen = {}
  for split, size in (("train", 16), ("validation", 2), ("test", 2)):
    source, info = load_split(cfg, split)
    assert info == DataInfo(vocab_size=256, num_classes=2, seq_len=1024,
                            task_type="classification", num_examples=size)
    for i in range(size):
      ex = source[i]
      index = int(ex["inputs"][0])
      np.testing.assert_array_equal(ex["inputs"], images[index].reshape(-1))
      assert ex["inputs"].dtype == np.int32 and int(ex["label"]) == index % 2
      seen.setdefault(split, []).append(index)
  assert sorted(sum(seen.values(), [])) == list(range(20))  # each once, empty PNG skipped
  expected = lra.split_indices(20, 3)
  assert {k: sorted(v) for k, v in seen.items()} == {k: sorted(v.tolist())
                                                      for k, v in expected.items()}
  other = lra.split_indices(20, 4)
  assert sorted(other["train"].tolist()) != sorted(seen["train"])


# ------------------------------------------------------------------ every task through training


def _train_smoke(task, tmp_path, **data):
  """`favor_s_lra.py:task=<task>,smoke` trained and evaluated by the loop main runs."""
  config = favor_s_lra.get_config(f"task={task},smoke")
  config.data.data_dir = str(tmp_path / "data")
  config.data.update(data)
  state = loop.train_and_evaluate(config, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  evals = [r for r in rows if r["split"] in ("validation", "test")]
  assert {r["step"] for r in evals} == {4, 8} and int(np.asarray(state.step)[0]) == 8
  assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["text", "image"])
def test_tfds_tasks_train_under_mock_data(task, tmp_path):
  with tfds.testing.mock_data(num_examples=32):
    _train_smoke(task, tmp_path)


@pytest.mark.slow
def test_retrieval_trains_from_manual_dir(tmp_path):
  rng = np.random.default_rng(0)
  words = ["graph", "neural", "parsing", "attention", "corpus", "kernel"]
  doc = lambda: " ".join(rng.choice(words, 12))
  root = tmp_path / "manual"
  os.makedirs(root / "tsv_data")
  for split, count in (("train", 32), ("eval", 8), ("test", 8)):
    with open(root / "tsv_data" / f"new_aan_pairs.{split}.tsv", "w", encoding="utf-8") as f:
      f.writelines(f"{i % 2}\tp{i}\tq{i}\t{doc()}\t{doc()}\n" for i in range(count))
  _train_smoke("retrieval", tmp_path, manual_dir=str(root))


@pytest.mark.slow
def test_pathfinder_trains_from_release_files_and_from_our_generator(tmp_path):
  _write_pathfinder(str(tmp_path / "release"), num=40)
  _train_smoke("pathfinder", tmp_path / "release_run", manual_dir=str(tmp_path / "release"))
  _train_smoke("pathfinder", tmp_path / "generated", name="pathfinder_gen", variant="tiny")
