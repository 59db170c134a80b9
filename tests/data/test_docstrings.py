"""Tests for mimojax.data.docstrings, the offline stdlib_docs task."""

import collections

import pytest

from mimojax.data import docstrings


@pytest.fixture(scope="module")
def sentences():
  return docstrings.sentences()


def test_sentences_are_labelled_once_and_every_area_is_present(sentences):
  texts = [s for s, _ in sentences]
  assert len(texts) == len(set(texts)) > 1000
  counts = collections.Counter(label for _, label in sentences)
  assert set(counts) == set(range(docstrings.NUM_CLASSES))
  assert min(counts.values()) > 30
  assert all(len(s.split()) >= 4 and len(s) <= 300 for s in texts)


def test_known_sentences_carry_their_area(sentences):
  area = dict(sentences)
  names = list(docstrings.AREAS)
  assert names[area["Return the cosine of x (measured in radians)."]] == "math"
  socket_docs = [s for s, label in sentences if names[label] == "network" and "socket" in s]
  assert socket_docs


def test_splits_are_disjoint_and_fixed(sentences):
  buckets = {split: {s for s, _ in sentences if low <= docstrings.bucket(s) < high}
             for split, (low, high) in docstrings.SPLITS.items()}
  assert not buckets["train"] & buckets["test"] and not buckets["validation"] & buckets["test"]
  assert sum(len(b) for b in buckets.values()) == len(sentences)
  assert 0.15 < len(buckets["test"]) / len(sentences) < 0.25
  assert docstrings.bucket("Return the cosine of x (measured in radians).") == docstrings.bucket(
      "Return the cosine of x (measured in radians).")


def test_summary_rules():
  assert docstrings.summary("Short one.") is None
  assert docstrings.summary("f(x) -> y\n\nReturn y.") is None
  assert docstrings.summary("  Return the   value\n  of x.\n\n  More.") == "Return the value of x."
  assert docstrings.summary(None) is None


def test_tokenized_split(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.post_processor = tokenizers.processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
  path = str(tmp_path / "tokenizer.json")
  tok.save(path)

  class Config:
    name, tokenizer, seq_len = "stdlib_docs", path, 12
  source = docstrings.load_split(Config, "validation")
  example = source[0]
  assert example["inputs"].shape == example["token_types"].shape == (12,)
  assert example["inputs"][0] == 2 and 3 in example["inputs"]
  assert 0 <= int(example["label"]) < docstrings.NUM_CLASSES
  with pytest.raises(ValueError, match="split 'dev' of stdlib_docs"):
    docstrings.load_split(Config, "dev")
