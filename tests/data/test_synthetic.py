"""Associative recall / induction head generators and their tfds builders."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mimojax.data import DataInfo
from mimojax.data import load_split
from mimojax.data import synthetic
from mimojax.train.config import DataConfig

VOCAB = 20
COPY = VOCAB - 1


def _string_vocab():
  specials = {".", "=>"}
  ordinary = sorted(str(i) for i in range(VOCAB - 2))
  full = sorted(ordinary + list(specials))
  return ordinary, full


def _reference_ar(rng, length):
  """Transcription of the safari string generator (num_keys=1, allow_dot=False;
  HazyResearch/safari: src/dataloaders/synthetics.py)."""
  ordinary, full = _string_vocab()
  keys, values = ordinary[:len(ordinary) // 2], ordinary[len(ordinary) // 2:]
  table = {(k,): rng.choice(values) for k in keys}
  seen, seq = {}, []
  for _ in range(length // 2):
    k = tuple(rng.choice(list(table)))
    seq += [k[0], table[k]]
    seen[k] = True
  k = tuple(rng.choice(list(table)))
  while k not in seen:
    k = tuple(rng.choice(list(seen)))
  seq += ["=>", k[0], table[k]]
  return [full.index(str(t)) for t in seq]


def _reference_ih(rng, length):
  ordinary, full = _string_vocab()
  probs = [0.0 if t in (".", "=>") else 1 / len(ordinary) for t in full]
  seq = list(rng.choice(full, length, replace=True, p=probs)) + ["=>"]
  rng.uniform()
  pos = sorted(rng.integers(length - 2, size=1))[0]
  answer = seq[pos + 1]
  seq[pos] = "=>"
  seq.append(answer)
  return [full.index(str(t)) for t in seq]


def test_vocabulary_is_string_sorted():
  strings = synthetic.token_strings(VOCAB)
  assert strings[0] == "." and strings[COPY] == "=>"
  assert list(strings[1:COPY]) == sorted(str(i) for i in range(18))
  keys, values = synthetic.key_value_ids(VOCAB)
  np.testing.assert_array_equal(keys, np.arange(1, 10))
  np.testing.assert_array_equal(values, np.arange(10, 19))


@pytest.mark.parametrize("task,fn,ref,length", [
    ("assoc_recall", synthetic.assoc_recall_sequence, _reference_ar, 40),
    ("induction_head", synthetic.induction_head_sequence, _reference_ih, 30),
])
def test_same_draws_as_reference_string_generator(task, fn, ref, length):
  mine, theirs = np.random.default_rng(7), np.random.default_rng(7)
  for _ in range(200):
    assert fn(mine, length, VOCAB).tolist() == ref(theirs, length), task


@pytest.fixture(scope="module")
def ar_splits():
  return synthetic.make_splits("assoc_recall", 1500, 500, 40, VOCAB, seed=0)


@pytest.fixture(scope="module")
def ih_splits():
  return synthetic.make_splits("induction_head", 1500, 500, 30, VOCAB, seed=0)


def test_ar_answer_is_value_bound_to_query(ar_splits):
  for split in ar_splits.values():
    inputs, targets = split["inputs"], split["targets"]
    assert inputs.shape[1] == 42 and inputs.dtype == np.int32
    assert inputs.min() >= 0 and inputs.max() < VOCAB
    for x, y in zip(inputs, targets):
      context = x[:40].reshape(20, 2)
      assert set(context[:, 0]) <= set(range(1, 10)) and set(context[:, 1]) <= set(range(10, 19))
      for key in set(context[:, 0]):
        assert len(set(context[context[:, 0] == key, 1])) == 1  # one value per key
      assert x[40] == COPY
      query = x[41]
      assert query in context[:, 0]
      assert y[-1] == context[context[:, 0] == query, 1][0]


def test_ih_answer_follows_earlier_trigger(ih_splits):
  for split in ih_splits.values():
    inputs, targets = split["inputs"], split["targets"]
    assert inputs.shape[1] == 31 and inputs[:, -1].tolist() == [COPY] * len(inputs)
    for x, y in zip(inputs, targets):
      triggers = np.flatnonzero(x[:30] == COPY)
      assert len(triggers) == 1 and triggers[0] < 28
      assert y[-1] == x[triggers[0] + 1]
      assert set(x[:30]) - {COPY} <= set(range(1, 19))


@pytest.mark.parametrize("name", ["ar_splits", "ih_splits"])
def test_shift_weights_and_dedup(name, request):
  splits = request.getfixturevalue(name)
  for split, last_only in (("train", False), ("test", True)):
    ex = splits[split]
    np.testing.assert_array_equal(ex["inputs"][:, 1:], ex["targets"][:, :-1])
    expected = np.zeros(ex["weights"].shape, np.float32)
    expected[:, -1] = 1.0
    if not last_only:
      expected[:] = 1.0
    np.testing.assert_array_equal(ex["weights"], expected)
    full = np.concatenate([ex["inputs"], ex["targets"][:, -1:]], axis=1)
    assert len({tuple(r) for r in full}) == len(full)


def test_label_distribution_matches_chance(ar_splits, ih_splits):
  ar = np.concatenate([s["targets"][:, -1] for s in ar_splits.values()])
  ih = np.concatenate([s["targets"][:, -1] for s in ih_splits.values()])
  ar_freq = np.bincount(ar, minlength=VOCAB) / len(ar)
  ih_freq = np.bincount(ih, minlength=VOCAB) / len(ih)
  assert set(np.flatnonzero(ar_freq)) == set(range(10, 19))
  assert set(np.flatnonzero(ih_freq)) == set(range(1, 19))
  assert abs(ar_freq.max() - 1 / 9) < 0.04  # majority baseline ~ chance 1/9
  assert abs(ih_freq.max() - 1 / 18) < 0.025  # ~ 1/18


def test_determinism_given_seed():
  a = synthetic.make_splits("induction_head", 50, 20, 30, seed=3)
  b = synthetic.make_splits("induction_head", 50, 20, 30, seed=3)
  c = synthetic.make_splits("induction_head", 50, 20, 30, seed=4)
  np.testing.assert_array_equal(a["train"]["inputs"], b["train"]["inputs"])
  np.testing.assert_array_equal(a["test"]["inputs"], b["test"]["inputs"])
  assert not np.array_equal(a["train"]["inputs"], c["train"]["inputs"])


def test_dedup_tops_up_after_duplicates():
  # vocab 8, two context pairs: 117 possible sequences, so 30 draws repeat some.
  rng = np.random.default_rng(0)
  first = {tuple(synthetic.assoc_recall_sequence(rng, 4, 8)) for _ in range(30)}
  assert len(first) < 30
  out = synthetic.make_splits("assoc_recall", 30, 5, 4, vocab_size=8, seed=0)["train"]
  full = np.concatenate([out["inputs"], out["targets"][:, -1:]], axis=1)
  rows = {tuple(r) for r in full}
  assert len(rows) == 30 and first <= rows


def test_bad_arguments():
  with pytest.raises(ValueError, match="task"):
    synthetic.make_splits("copying", 10, 10, 40)
  with pytest.raises(ValueError, match="vocab_size"):
    synthetic.token_strings(4)


@pytest.mark.parametrize("name,length", [("assoc_recall", 42), ("induction_head", 31)])
def test_builder_roundtrip_through_tfds(data_dir, name, length):
  cfg = DataConfig(name=name, data_dir=data_dir, variant="tiny", seed=5)
  source, info = load_split(cfg, "test")
  assert info == DataInfo(vocab_size=20, num_classes=20, seq_len=length, task_type="lm",
                          num_examples=64)
  expected = synthetic.make_splits(name, 256, 64, length - 2 if name == "assoc_recall"
                                   else length - 1, seed=5)["test"]
  for i in range(len(source)):  # the split is held in memory: every example, as built
    for key in ("inputs", "targets", "weights"):
      np.testing.assert_array_equal(source[i][key], expected[key][i])
      assert source[i][key].dtype == expected[key].dtype
  read = tfds.data_source(f"{name}/tiny-seed5", split="train", data_dir=data_dir,
                          download=False)
  assert len(read) == 256
  with pytest.raises(ValueError, match="split"):
    load_split(cfg, "validation")


def test_unknown_task_or_variant():
  with pytest.raises(ValueError, match="allowed"):
    load_split(DataConfig(name="copy"), "train")
  with pytest.raises(ValueError, match="input_seq_len"):
    load_split(DataConfig(name="induction_head", input_seq_len=2), "train")
  with pytest.raises(ValueError, match="variant"):
    load_split(DataConfig(name="assoc_recall", variant="huge"), "train")


def test_concurrent_processes_share_one_build(tmp_path):
  code = (
      "import sys, numpy as np\n"
      "from mimojax.data import load_split\n"
      "from mimojax.train.config import DataConfig\n"
      "cfg = DataConfig(name='induction_head', variant='tiny', data_dir=sys.argv[1])\n"
      "src, info = load_split(cfg, 'train')\n"
      "print(int(np.sum([src[i]['inputs'].sum() for i in range(len(src))])))\n")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
  outputs = [p.communicate(timeout=120)[0].splitlines()[-1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0]
  expected = synthetic.make_splits("induction_head", 256, 64, 30)["train"]["inputs"].sum()
  assert outputs == [str(expected)] * 2
