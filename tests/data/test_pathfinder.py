"""Pathfinder generator: determinism, geometry invariants, markers/labels, rendering, builder."""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mimojax.data import DataInfo
from mimojax.data import load_split
from mimojax.data import pathfinder
from mimojax.train.config import DataConfig

P = pathfinder.lra_params(14)


def _segment_gaps(ends, n=9):
  """(N, N) distances between N segments (N, 2, 2) by dense sampling (independent of the
  generator's own geometry)."""
  t = np.linspace(0.0, 1.0, n)[None, :, None]
  points = ends[:, :1] + t * (ends[:, 1:] - ends[:, :1])  # (N, n, 2)
  diff = points[:, None, :, None] - points[None, :, None, :]
  return np.min(np.linalg.norm(diff, axis=-1), axis=(2, 3))


@pytest.fixture(scope="module")
def scenes():
  return [pathfinder.sample_scene(np.random.default_rng((1, i)), P) for i in range(40)]


def _ends(scene):
  return [pathfinder.paddle_ends(v, d, P) for v, d in zip(scene.vertices, scene.directions)]


def test_lra_settings():
  assert (P.contour_length, P.distractor_length, P.num_distractors) == (14, 4, 5)
  easy = pathfinder.lra_params(6)
  assert (easy.distractor_length, easy.num_distractors) == (2, 10)
  assert (P.size, P.padding, P.paddle_length, P.paddle_thickness, P.margin,
          P.marker_radius, P.seed_distance, P.continuity) == (32, 1, 2, 0.5, 1, 1.5, 7, 1)


def test_snake_lengths_and_paddles(scenes):
  for scene in scenes:
    ends = _ends(scene)
    assert [len(e) for e in ends[:2]] == [14, 14]
    assert all(len(e) == 4 for e in ends[2:]) and 2 + 3 <= len(ends) <= 2 + 5
    for e in ends:
      np.testing.assert_allclose(np.linalg.norm(e[:, 1] - e[:, 0], axis=-1), 2.0, atol=1e-9)
      assert e.min() >= 0.5 and e.max() <= 30.5  # inside the padded 32 x 32 window


def test_turns_below_ninety_degrees_and_gaps(scenes):
  for scene in scenes:
    for e in _ends(scene):
      d = e[:, 1] - e[:, 0]
      cos = np.sum(d[1:] * d[:-1], -1) / 4.0
      assert np.all(cos > 0)  # continuity 1: cos^2 weight vanishes at 90 degrees
      gaps = np.linalg.norm(e[1:, 0] - e[:-1, 1], axis=-1)  # = 2 m cos(turn / 2)
      assert np.all(gaps <= 2.0 + 0.2) and np.all(gaps >= np.sqrt(2) - 0.2)  # + lattice


def test_snakes_keep_apart(scenes):
  for scene in scenes:
    ends = _ends(scene)
    snake = np.concatenate([np.full(len(e), i) for i, e in enumerate(ends)])
    index = np.concatenate([np.arange(len(e)) for e in ends])
    gaps = _segment_gaps(np.concatenate(ends))
    other = snake[:, None] != snake[None, :]
    distant = ~other & (np.abs(index[:, None] - index[None, :]) > 1)
    assert gaps[other].min() > 1.0  # no touching or crossing between snakes
    assert gaps[distant].min() > 1.0  # nor within one (neighbours are ~2 px apart)


def test_markers_follow_label(scenes):
  for scene in scenes:
    ends = _ends(scene)
    origins = [ends[0][0, 0], ends[1][0, 0]]
    terminals = [ends[0][-1, 1], ends[1][-1, 1]]
    first = [i for i in range(2) if np.allclose(scene.markers[0], origins[i])]
    last = [i for i in range(2) if np.allclose(scene.markers[1], terminals[i])]
    assert len(first) == 1 and len(last) == 1
    assert (first[0] == last[0]) == (scene.label == 1)
    seed_gap = np.linalg.norm(origins[0] - origins[1])
    assert abs(seed_gap - P.seed_distance) < 0.2  # lattice rounding only
  labels = [s.label for s in scenes]
  assert 0 < sum(labels) < len(labels)


def test_render_values(scenes):
  for scene in scenes[:10]:
    image = pathfinder.render(scene, P)
    assert image.shape == (32, 32) and image.dtype == np.uint8
    for y, x in scene.markers:
      assert image[int(round(y)), int(round(x))] >= 200
    # pixels farther than 1.5 px from every paddle and marker are exact background
    yy, xx = np.mgrid[:32, :32]
    pix = np.stack([yy, xx], -1).reshape(-1, 1, 2).astype(float)
    near = np.zeros(32 * 32, bool)
    for e in _ends(scene):
      t = np.linspace(0, 1, 9)[:, None]
      for a, b in e:
        near |= np.min(np.linalg.norm(pix - (a + t * (b - a))[None], axis=-1), axis=1) < 1.5
    for centre in scene.markers:
      near |= np.linalg.norm(pix[:, 0] - centre, axis=-1) < P.marker_radius + 0.75
    assert np.all(image.reshape(-1)[~near] == 0)
    for e in _ends(scene):
      mid = np.rint(e.mean(axis=1)).astype(int)
      assert np.all(image[mid[:, 0], mid[:, 1]] > 0)
    assert np.mean(image == 0) > 0.5


def test_deterministic_per_index():
  images, labels = pathfinder.generate(4, P, seed=3, start=5)
  for i in range(4):
    image, label = pathfinder.generate_one(3, 5 + i, P)
    np.testing.assert_array_equal(images[i], image)
    assert labels[i] == label
  other, _ = pathfinder.generate(4, P, seed=4, start=5)
  assert not np.array_equal(images, other)


def test_bad_settings():
  with pytest.raises(ValueError, match="contour_length"):
    pathfinder.lra_params(2)
  with pytest.raises(ValueError, match="size"):
    pathfinder.check_params(dataclasses.replace(P, size=4))
  with pytest.raises(ValueError, match="workers"):
    pathfinder.generate(2, P, seed=0, workers=0)
  with pytest.raises(ValueError, match="contour_length"):
    load_split(DataConfig(name="pathfinder_gen", variant="tiny", contour_length=1), "train")


def test_builder_roundtrip_through_tfds(data_dir):
  cfg = DataConfig(name="pathfinder_gen", variant="tiny", data_dir=data_dir, seed=5,
                   num_train=10, num_validation=3, num_test=3)
  images, labels = pathfinder.generate(16, P, seed=5)
  for split, start, size in (("train", 0, 10), ("validation", 10, 3), ("test", 13, 3)):
    source, info = load_split(cfg, split)
    assert info == DataInfo(vocab_size=256, num_classes=2, seq_len=1024,
                            task_type="classification", num_examples=size)
    for i in range(size):
      ex = source[i]
      assert ex["inputs"].shape == (1024,) and ex["inputs"].dtype == np.int32
      assert ex["label"].shape == () and ex["label"].dtype == np.int32
      np.testing.assert_array_equal(ex["inputs"], images[start + i].reshape(-1))
      assert int(ex["label"]) == labels[start + i]
  raw = tfds.data_source("pathfinder_gen/tiny-seed5-num_train10-num_validation3-num_test3",
                         split="test", data_dir=data_dir, download=False)
  assert len(raw) == 3 and raw[0]["inputs"].dtype == np.uint8
  source, info = load_split(dataclasses.replace(cfg, seq_len=1030), "test")
  assert info.seq_len == 1030 and np.all(source[0]["inputs"][1024:] == 0)
  with pytest.raises(ValueError, match="seq_len"):
    load_split(dataclasses.replace(cfg, seq_len=1000), "test")
