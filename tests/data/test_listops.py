"""ListOps generator, tokenizer, evaluator and tfds builder."""

import random

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mimojax.data import DataInfo
from mimojax.data import listops
from mimojax.data import load_split
from mimojax.train.config import DataConfig

OPS = ["[MIN", "[MAX", "[MED", "[SM"]


def _lra_tree(rnd, depth=1, max_depth=10, max_args=10):
  """LRA's nested-pair tree, drawn with the public random API in LRA's order."""
  r = rnd.random() if depth < max_depth else 1
  if r > 0.25:
    return rnd.choice(range(10)), 1
  n = rnd.randint(2, max_args)
  children, length = [], 2
  for _ in range(n):
    child, child_len = _lra_tree(rnd, depth + 1, max_depth, max_args)
    children.append(child)
    length += child_len
  tree = (rnd.choice(OPS), children[0])
  for child in children[1:]:
    tree = (tree, child)
  return (tree, "]"), length


def _lra_string(tree):
  """LRA's parenthesised ``to_string``."""
  if isinstance(tree, (str, int)):
    return str(tree)
  return "( " + _lra_string(tree[0]) + " " + _lra_string(tree[1]) + " )"


def _recursive_value(tokens):
  """Independent recursive-descent evaluator on token strings (np.median, sum mod 10)."""
  def parse(i):
    tok = tokens[i]
    if tok not in OPS:
      return int(tok), i + 1
    args, i = [], i + 1
    while tokens[i] != "]":
      value, i = parse(i)
      args.append(value)
    rule = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(np.median(a)),
            "[SM": lambda a: int(np.sum(a) % 10)}[tok]
    return rule(args), i + 1
  value, end = parse(0)
  assert end == len(tokens)
  return value


def test_same_draws_and_tokens_as_lra_sampler():
  mine, theirs = random.Random(11), random.Random(11)
  for _ in range(300):
    ids = listops.sample_tree(mine)
    tree, length = _lra_tree(theirs)
    assert len(ids) == length
    assert ids == listops.tokenize(_lra_string(tree))
    assert mine.random() == theirs.random()  # streams stay aligned


@pytest.mark.parametrize("text,value", [
    ("[MIN 3 1 4 ]", 1), ("[MAX 3 1 4 ]", 4), ("[MED 1 2 ]", 1), ("[MED 3 8 1 9 ]", 5),
    ("[MED 9 2 5 ]", 5), ("[SM 9 9 5 ]", 3), ("[SM 5 5 ]", 0), ("7", 7),
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9), ("[SM [MED 1 2 3 4 ] [MIN 8 9 ] ]", 0),
])
def test_operator_rules(text, value):
  ids = listops.tokenize(text)
  assert listops.evaluate_listops(ids) == value
  assert _recursive_value(text.split()) == value


@pytest.fixture(scope="module")
def examples():
  return listops.generate(400, 20, 128, seed=0)


def test_labels_match_independent_evaluator(examples):
  for ids, label in examples:
    text = listops.detokenize(ids)
    assert _recursive_value(text.split()) == label == listops.evaluate_listops(ids)
  assert set(label for _, label in examples) == set(range(10))


def test_strict_length_bounds_and_dedup():
  examples = listops.generate(300, 8, 16, seed=1)
  lengths = [len(ids) for ids, _ in examples]
  assert min(lengths) == 9 and max(lengths) == 15
  assert len({ids for ids, _ in examples}) == len(examples)


def test_insertion_order_dedup_matches_independent_filter():
  rnd = random.Random(2)
  kept = []
  while len(kept) < 150:
    ids = tuple(listops.sample_tree(rnd))
    if 4 < len(ids) < 12 and ids not in kept:
      kept.append(ids)
  assert [ids for ids, _ in listops.generate(150, 4, 12, seed=2)] == kept


def test_determinism_given_seed():
  a = listops.generate(50, 10, 40, seed=3)
  assert a == listops.generate(50, 10, 40, seed=3)
  assert a != listops.generate(50, 10, 40, seed=4)


def test_tokenize_roundtrip(examples):
  for ids, _ in examples[:50]:
    text = listops.detokenize(ids)
    assert listops.tokenize(text) == list(ids)
    assert listops.detokenize(listops.pad(ids, 128)) == text
  assert listops.tokenize("( ( [MAX 2 ) 9 ) X") == listops.tokenize("[MAX 2 9 ]")
  assert listops.TOKENS[listops.PAD_ID] == "<pad>" and listops.VOCAB_SIZE == 16


def test_bad_inputs():
  with pytest.raises(ValueError, match="token"):
    listops.tokenize("[MAX 2 10 ]")
  with pytest.raises(ValueError):
    listops.evaluate_listops(listops.tokenize("[MAX 2 9"))
  with pytest.raises(ValueError):
    listops.evaluate_listops(listops.tokenize("2 ]"))
  with pytest.raises(ValueError, match="max_length"):
    listops.generate(10, 20, 21, seed=0)
  with pytest.raises(ValueError, match="min_length"):
    load_split(DataConfig(name="listops", variant="tiny", min_length=70), "train")
  with pytest.raises(ValueError, match="seq_len"):
    load_split(DataConfig(name="listops", variant="tiny", seq_len=32), "train")


def test_builder_roundtrip_through_tfds(data_dir):
  cfg = DataConfig(name="listops", variant="tiny", data_dir=data_dir, seed=7, num_train=40,
                   num_validation=8, num_test=8)
  expected = listops.generate(56, 10, 64, seed=7)
  for split, start, size in (("train", 0, 40), ("validation", 40, 8), ("test", 48, 8)):
    source, info = load_split(cfg, split)
    assert info == DataInfo(vocab_size=16, num_classes=10, seq_len=64,
                            task_type="classification", num_examples=size)
    for i in range(size):
      ex = source[i]
      assert ex["inputs"].shape == (64,) and ex["inputs"].dtype == np.int32
      assert ex["label"].dtype == np.int32 and ex["label"].shape == ()
      np.testing.assert_array_equal(ex["inputs"], listops.pad(expected[start + i][0], 64))
      assert int(ex["label"]) == expected[start + i][1]
  raw = tfds.data_source("listops/tiny-seed7-num_train40-num_validation8-num_test8",
                         split="test", data_dir=data_dir, download=False)
  assert len(raw) == 8
  assert list(raw[0]["inputs"]) == list(expected[48][0])
