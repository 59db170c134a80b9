"""Associative recall and induction head: seeded numpy generators (paper App. F, Table 3).

A re-implementation of the in-context-learning synthetics that MIMONets evaluates MIMOFormer on
(App. F: associative recall over 40 characters, induction head over 30, a 20-character
dictionary, 5000 train / 500 test sequences). It makes the same random draws, in the same
order, as the H3/safari generator the paper used (HazyResearch/safari:
``src/dataloaders/synthetics.py``), so the distribution (and, for a fixed numpy version, the
sequences themselves) match.

Vocabulary. ``vocab_size - 2`` ordinary tokens, the strings "0", "1", ..., plus two specials,
the no-op "." and the copy prefix "=>". The full vocabulary is sorted as strings, which puts
"." first and "=>" last, so ids are: 0 = ".", 1 .. vocab_size - 2 = the ordinary tokens in
string order ("0", "1", "10", "11", ...), vocab_size - 1 = "=>".

Associative recall (AR). A fresh key -> value map for every sequence: keys are the first half
of the ordinary tokens (ids 1..9 for vocab 20), values the second half (ids 10..18), each key
mapped to a value drawn with replacement. The context is ``input_seq_len // 2`` pairs (random
key, its value), then "=>" and a query key that occurs in the context; the answer is its
value. Chance = 1 / (number of values) = 1/9.

Induction head (IH). ``input_seq_len`` uniform ordinary tokens with one position p < L - 2
overwritten by "=>", then "=>" and the token that followed the first "=>". Chance = 1/18.

Language-model examples. A sequence s of L + 3 (AR) or L + 2 (IH) tokens becomes inputs
s[:-1], targets s[1:]; train examples weight every position (next-token loss everywhere),
test examples only the last one (the answer), as in safari's generator.
"""

import numpy as np

TASKS = ("assoc_recall", "induction_head")
NOOP_ID = 0


def copy_prefix_id(vocab_size: int) -> int:
  """Id of the copy prefix "=>": the last id of the string-sorted vocabulary."""
  return vocab_size - 1


def token_strings(vocab_size: int) -> tuple[str, ...]:
  """The vocabulary as strings, index = token id (string sort of ordinary tokens + specials)."""
  _check_vocab_size(vocab_size)
  ordinary = [str(i) for i in range(vocab_size - 2)]
  return tuple(sorted(ordinary + [".", "=>"]))


def key_value_ids(vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
  """AR keys (first half of the ordinary ids) and values (second half)."""
  _check_vocab_size(vocab_size)
  ordinary = np.arange(1, vocab_size - 1)
  half = len(ordinary) // 2
  return ordinary[:half], ordinary[half:]


def assoc_recall_sequence(rng: np.random.Generator, input_seq_len: int = 40,
                          vocab_size: int = 20) -> np.ndarray:
  """One AR token sequence of ``input_seq_len + 3`` ids (num_keys = 1, no "." queries).

  Draw order: one value per key (the map), then a key per context pair, then a query key,
  redrawn among the present keys (in order of first appearance) until it is present.
  """
  keys, values = key_value_ids(vocab_size)
  kv_map = {int(k): int(rng.choice(values)) for k in keys}
  present = {}
  seq = []
  for _ in range(input_seq_len // 2):
    k = int(rng.choice(keys))
    seq += [k, kv_map[k]]
    present[k] = True
  query = int(rng.choice(keys))
  while query not in present:
    query = int(rng.choice(np.array(list(present))))
  seq += [copy_prefix_id(vocab_size), query, kv_map[query]]
  return np.asarray(seq, dtype=np.int32)


def induction_head_sequence(rng: np.random.Generator, input_seq_len: int = 30,
                            vocab_size: int = 20) -> np.ndarray:
  """One IH token sequence of ``input_seq_len + 2`` ids (induction_len = 1, one trigger).

  Draw order: ``input_seq_len`` uniforms mapped through the cdf of the ordinary tokens (the
  safari generator's ``choice(..., p=...)``), one unused uniform, then the trigger position.
  """
  _check_vocab_size(vocab_size)
  p = np.array([0.0] + [1.0 / (vocab_size - 2)] * (vocab_size - 2) + [0.0])
  cdf = p.cumsum()
  cdf /= cdf[-1]
  ids = cdf.searchsorted(rng.random(input_seq_len), side="right")
  prefix = copy_prefix_id(vocab_size)
  seq = [int(i) for i in ids] + [prefix]
  rng.uniform()
  pos = int(rng.integers(input_seq_len - 2, size=1)[0])
  seq[pos] = prefix
  seq.append(seq[pos + 1])
  return np.asarray(seq, dtype=np.int32)


def _sequence_fn(task: str):
  if task == "assoc_recall":
    return assoc_recall_sequence
  if task == "induction_head":
    return induction_head_sequence
  raise ValueError(f"task={task!r}; allowed: {TASKS}")


def generate_sequences(task: str, rng: np.random.Generator, count: int, input_seq_len: int,
                       vocab_size: int, progress=None) -> np.ndarray:
  """``count`` distinct sequences: draw, de-duplicate (sorted rows), top up, shuffle.

  ``progress`` (e.g. a tqdm bar) gets ``update(1)`` per drawn sequence.
  """
  draw = _sequence_fn(task)
  rows = []
  for _ in range(count):
    rows.append(draw(rng, input_seq_len, vocab_size))
    if progress is not None:
      progress.update(1)
  unique = [list(r) for r in np.unique(np.stack(rows), axis=0)]
  seen = {tuple(r) for r in unique}
  while len(unique) < count:
    row = draw(rng, input_seq_len, vocab_size).tolist()
    if tuple(row) not in seen:
      seen.add(tuple(row))
      unique.append(row)
  out = np.asarray(unique, dtype=np.int32)
  rng.shuffle(out)
  return out


def lm_examples(sequences: np.ndarray, last_only: bool) -> dict[str, np.ndarray]:
  """Shift sequences (S, T) into inputs/targets (S, T-1) and loss weights.

  ``last_only`` weights only the final position (test split: last-token accuracy).
  """
  inputs, targets = sequences[:, :-1], sequences[:, 1:]
  weights = np.ones(inputs.shape, np.float32)
  if last_only:
    weights[:, :-1] = 0.0
  return {"inputs": inputs.astype(np.int32), "targets": targets.astype(np.int32),
          "weights": weights}


def make_splits(task: str, num_train: int, num_test: int, input_seq_len: int,
                vocab_size: int = 20, seed: int = 0, progress=None) -> dict:
  """Train then test split from one ``default_rng(seed)`` stream (safari's order)."""
  check_sizes(task, num_train, num_test, input_seq_len, vocab_size)
  rng = np.random.default_rng(seed)
  train = generate_sequences(task, rng, num_train, input_seq_len, vocab_size, progress)
  test = generate_sequences(task, rng, num_test, input_seq_len, vocab_size, progress)
  return {"train": lm_examples(train, last_only=False),
          "test": lm_examples(test, last_only=True)}


def check_sizes(task: str, num_train: int, num_test: int, input_seq_len: int,
                vocab_size: int) -> None:
  """ValueError naming the first bad field."""
  _sequence_fn(task)
  _check_vocab_size(vocab_size)
  if num_train < 1 or num_test < 1:
    raise ValueError(f"num_train={num_train}, num_test={num_test}; both must be >= 1")
  if input_seq_len < 4:
    raise ValueError(f"input_seq_len={input_seq_len}; must be >= 4")


def _check_vocab_size(vocab_size: int) -> None:
  if vocab_size < 6:
    raise ValueError(f"vocab_size={vocab_size}; must be >= 6 (two specials + keys + values)")
