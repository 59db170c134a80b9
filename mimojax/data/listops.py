"""ListOps (LRA): seeded re-implementation of the tree sampler, tokenizer and evaluator.

The Long Range Arena ListOps task (MIMONets Table 2) is nested prefix expressions over the
digits 0-9 with the operators MIN, MAX, MED (median, truncated to int) and SM (sum mod 10);
the label is the expression's value. LRA's generator draws from Python's module-level
``random`` and collects trees in a ``set``, so its release files cannot be regenerated; this
module makes the same draws, in the same order, from a private ``random.Random(seed)``, which
gives the same distribution reproducibly:

* a node at depth < max_depth draws u = random(); at max_depth u = 1;
* u > 0.25: a leaf, ``choice(range(10))``, length 1;
* otherwise k = randint(2, max_args) children are sampled (recursively, depth + 1) and only
  then the operator, ``choice([MIN, MAX, MED, SM])``; length = 2 + the children's lengths;
* a tree is kept if ``min_length < length < max_length`` (strictly) and its token string is
  new (first occurrence wins, insertion order); the first ``num_train`` kept trees are the
  train split, the next ``num_validation`` validation, the next ``num_test`` test.

Tokens are LRA's cleaned prefix form, e.g. ``[MAX 2 9 [MIN 4 7 ] 0 ]`` (LRA writes "]" as "X"
and wraps nodes in parentheses; ``tokenize`` accepts both). Fixed vocabulary (LRA's order came
from a ``set`` and was arbitrary): 0 = pad, 1..10 = digits 0..9, 11 = "[MIN", 12 = "[MAX",
13 = "[MED", 14 = "[SM", 15 = "]"; ``VOCAB_SIZE = 16``. LRA's encoder had 17 ids (one OOV
bucket) and the MIMOFormer config uses 32 as an upper bound; a model may use a larger table.
"""

import random
from collections.abc import Iterable, Sequence

import numpy as np

PAD_ID = 0
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
TOKENS = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (END,)
VOCAB_SIZE = len(TOKENS)
NUM_CLASSES = 10
VALUE_P = 0.25

_ID = {t: i for i, t in enumerate(TOKENS)}
_ID["X"] = _ID[END]
_OP_IDS = tuple(_ID[op] for op in OPERATORS)
_MIN_ID, _MAX_ID, _MED_ID, _SM_ID = _OP_IDS
_END_ID = _ID[END]


def digit_id(value: int) -> int:
  """Token id of a leaf digit."""
  return value + 1


def apply_operator(op_id: int, args: Sequence[int]) -> int:
  """Value of one operator node: MIN, MAX, MED = int(np.median(args)) (an even count gives
  the mean of the middle two, truncated), SM = sum mod 10."""
  if op_id == _MIN_ID:
    return min(args)
  if op_id == _MAX_ID:
    return max(args)
  if op_id == _MED_ID:
    ordered = sorted(args)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2
  if op_id == _SM_ID:
    return sum(args) % 10
  raise ValueError(f"op_id={op_id}; allowed operator ids: {_OP_IDS}")


def sample_tree(rnd: random.Random, max_depth: int = 10, max_args: int = 10) -> list[int]:
  """Token ids of one tree sampled in LRA's draw order (its length is the tree's length).

  Same draws as LRA's ``random.random`` / ``choice(range(10))`` / ``randint(2, max_args)`` /
  ``choice(OPERATORS)``, with the integer draws written out as CPython's documented-stable
  ``_randbelow`` (rejection sampling on ``getrandbits(n.bit_length())``): about twice as fast,
  and the tests check it against the public calls. The operator slot is filled after the
  children, as LRA draws the operator last.
  """
  out = []
  uniform, bits, append = rnd.random, rnd.getrandbits, out.append
  num_choices = max_args - 1
  first_digit, num_ops = digit_id(0), len(_OP_IDS)

  def below(n: int) -> int:
    k = n.bit_length()
    r = bits(k)
    while r >= n:
      r = bits(k)
    return r

  def node(depth: int) -> None:
    u = uniform() if depth < max_depth else 1.0
    if u > VALUE_P:
      append(first_digit + below(10))
      return
    num_args = 2 + below(num_choices)
    slot = len(out)
    append(PAD_ID)
    for _ in range(num_args):
      node(depth + 1)
    out[slot] = _OP_IDS[below(num_ops)]
    append(_END_ID)

  node(1)
  return out


def generate(num_examples: int, min_length: int, max_length: int, seed: int,
             max_depth: int = 10, max_args: int = 10,
             progress=None) -> list[tuple[tuple[int, ...], int]]:
  """The first ``num_examples`` distinct trees with min_length < length < max_length.

  Returns (token ids, label) pairs in acceptance order; labels come from
  ``evaluate_listops``. ``progress`` (e.g. tqdm) gets ``update(1)`` per accepted tree.
  """
  check_bounds(min_length, max_length, max_depth, max_args)
  rnd = random.Random(seed)
  kept = {}
  while len(kept) < num_examples:
    ids = sample_tree(rnd, max_depth, max_args)
    if min_length < len(ids) < max_length:
      key = tuple(ids)
      if key not in kept:
        kept[key] = evaluate_listops(key)
        if progress is not None:
          progress.update(1)
  return list(kept.items())


def tokenize(text: str) -> list[int]:
  """Token ids of a prefix expression; accepts LRA's "X" for "]" and drops "(" / ")"."""
  ids = []
  for tok in text.split():
    if tok in ("(", ")"):
      continue
    if tok not in _ID or tok == TOKENS[PAD_ID]:
      raise ValueError(f"token {tok!r}; allowed: digits 0-9, {OPERATORS}, ']', 'X', '(', ')'")
    ids.append(_ID[tok])
  return ids


def detokenize(ids: Iterable[int]) -> str:
  """Space-separated expression; padding ids are dropped."""
  return " ".join(TOKENS[int(i)] for i in ids if int(i) != PAD_ID)


def pad(ids: Sequence[int], seq_len: int) -> np.ndarray:
  """Right-pad token ids with PAD_ID to ``seq_len`` (int32); longer input is an error."""
  if len(ids) > seq_len:
    raise ValueError(f"sequence length {len(ids)} > seq_len={seq_len}")
  out = np.zeros((seq_len,), np.int32)
  out[:len(ids)] = ids
  return out


def evaluate_listops(tokens: Iterable[int]) -> int:
  """Value of a token-id sequence (padding ignored), with an explicit operator stack."""
  stack = []
  result = None
  for t in (int(t) for t in tokens if int(t) != PAD_ID):
    if result is not None:
      raise ValueError("tokens continue after the expression ended")
    if t in _OP_IDS:
      stack.append((t, []))
      continue
    if t == _END_ID:
      if not stack or not stack[-1][1]:
        raise ValueError("']' without an open operator with arguments")
      op_id, args = stack.pop()
      value = apply_operator(op_id, args)
    elif 1 <= t <= 10:
      value = t - 1
    else:
      raise ValueError(f"token id {t}; allowed 0..{VOCAB_SIZE - 1}")
    if stack:
      stack[-1][1].append(value)
    else:
      result = value
  if result is None or stack:
    raise ValueError("incomplete expression")
  return result


def check_bounds(min_length: int, max_length: int, max_depth: int, max_args: int) -> None:
  """ValueError unless some tree length lies strictly between the bounds."""
  if not (0 <= min_length < max_length - 1 and max_length >= 5):
    raise ValueError(f"min_length={min_length}, max_length={max_length}; need "
                     "0 <= min_length < max_length - 1 and max_length >= 5")
  if max_depth < 2 or max_args < 2:
    raise ValueError(f"max_depth={max_depth}, max_args={max_args}; both must be >= 2")
