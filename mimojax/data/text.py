"""Tokenized text: GLUE sentence classification and a text corpus cut into LM blocks.

Both read tfds's own prepared datasets (``sources.tfds_split``) and tokenize with a Hugging
Face ``tokenizers`` tokenizer (``data.tokenizer``: the path of a ``tokenizer.json``, e.g. the
one in a BERT checkpoint directory); neither needs PyTorch nor ``transformers``. DataMUX and
RevMUX train on them (princeton-nlp/DataMUX ``run_glue.py``: ``max_seq_length`` 128, the
``roberta-base`` tokenizer).

Tokenizer. A sentence or a sentence pair becomes ``[CLS] a [SEP] (b [SEP])`` through the
tokenizer's own post-processor, truncated longest-first to ``data.seq_len`` (default 128) and
right-padded to it with id 0 (``Encoder``), as ``tokenizer(a, b, padding="max_length",
truncation=True)`` does in ``run_glue.py``. The models mask id 0 as padding, so the
tokenizer's padding token must be id 0 (BERT WordPiece vocabularies: ``[PAD]`` = 0); a
tokenizer whose padding token is another id (``roberta-base``: ``<pad>`` = 1, ``<s>`` = 0) is
refused with a one-line ValueError. The vocabulary size is ``tokenizer.get_vocab_size()``.

GLUE (``GLUE``; task type "classification"): tfds ``glue/sst2`` (``sentence``; 2 classes),
``glue/mnli`` (``premise``, ``hypothesis``; 3), ``glue/qnli`` (``question``, ``sentence``; 2)
``glue/qqp`` (``question1``, ``question2``; 2), ``glue/mrpc`` and ``glue/rte``
(``sentence1``, ``sentence2``; 2 each). Splits: ``train``, ``validation`` (MNLI:
tfds ``validation_matched``) and ``test`` = the validation split, since GLUE's test labels are
hidden (tfds stores -1); MNLI also has ``validation_mismatched``. Examples
``{"inputs": int32[L] token ids, "token_types": int32[L] (0 for sentence a, 1 for b),
"label": int32[]}``.

Corpus (``CORPUS``; task type "lm"). DataMUX's retrieval warm-up reads WikiText-103-raw
(``retrieval_pretraining.sh``: ``--dataset_name wikitext --dataset_config_name
wikitext-103-raw-v1``) through Hugging Face ``datasets``. tfds has no WikiText builder, so the
corpus here is the closest one it has, ``wiki40b/en``: raw English Wikipedia articles (as
WikiText's Good and Featured articles), split train / validation / test (``lm1b``, the other
large English corpus in tfds, is shuffled news sentences in tokenized form). Wiki-40B's markup
becomes lines (``wiki40b_lines``): a title ``= T =``, a section heading ``= = S = =`` and each
paragraph line, as WikiText-raw writes them. As in ``run_glue.py``, blank lines are dropped,
every line is encoded with the tokenizer's special tokens, all lines are concatenated into one
token stream and cut into blocks of ``data.seq_len`` (default 128) tokens; the official code
concatenates per map batch of 1000 lines and drops each batch's remainder, here the stream is
concatenated whole. Block i (``LmBlocks``) has ``inputs`` = stream[iL : (i + 1)L] and
``targets`` = stream[iL + 1 : (i + 1)L + 1] (the next tokens), weighted everywhere:
``{"inputs", "targets": int32[L], "weights": float32[L]}``. ``data.num_train``,
``num_validation`` and ``num_test`` keep the first that many blocks of a split (None: all; the
whole English train split is billions of tokens, WikiText-103 about 0.1 billion). The stream
of a split is tokenized once and kept under ``<data_dir>/mimojax_token_streams/`` as a raw
uint16 (int32 for vocabularies above 65,536 ids) file named by split, block limit and a hash
of the tokenizer file, read back memory-mapped.
"""

import dataclasses
import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator

import numpy as np
import tokenizers
import tqdm
from tensorflow_datasets.core import constants as tfds_constants
# glue and wiki40b are tfds's older builders, outside its lazily loaded registry: importing
# them registers glue/* and wiki40b/* (without TensorFlow)
from tensorflow_datasets.text import glue as _tfds_glue  # pylint: disable=unused-import
from tensorflow_datasets.text import wiki40b as _tfds_wiki40b  # pylint: disable=unused-import

SEQ_LEN = 128  # DataMUX run_glue.py max_seq_length, also its corpus block length
PAD_ID = 0
STREAMS_FOLDER = "mimojax_token_streams"
_ENCODE_BATCH = 1000  # records tokenized per encode_batch call


@dataclasses.dataclass(frozen=True)
class GlueTask:
  """A GLUE task in tfds: dataset name, its text fields (1 or 2), classes and {our split:
  tfds split}."""
  dataset: str
  fields: tuple[str, ...]
  num_classes: int
  splits: dict


def _glue_splits(validation: str, **more: str) -> dict:
  return {"train": "train", "validation": validation, "test": validation, **more}


GLUE = {
    "glue_sst2": GlueTask("glue/sst2", ("sentence",), 2, _glue_splits("validation")),
    "glue_mnli": GlueTask("glue/mnli", ("premise", "hypothesis"), 3,
                          _glue_splits("validation_matched",
                                       validation_mismatched="validation_mismatched")),
    "glue_qnli": GlueTask("glue/qnli", ("question", "sentence"), 2, _glue_splits("validation")),
    "glue_qqp": GlueTask("glue/qqp", ("question1", "question2"), 2, _glue_splits("validation")),
    "glue_mrpc": GlueTask("glue/mrpc", ("sentence1", "sentence2"), 2, _glue_splits("validation")),
    "glue_rte": GlueTask("glue/rte", ("sentence1", "sentence2"), 2, _glue_splits("validation")),
}
# (tfds dataset, its split string for each of our splits) of the corpus task wiki40b_en
CORPUS = ("wiki40b/en", {"train": "train", "validation": "validation", "test": "test"})
CORPUS_HINT = (" wiki40b is an Apache Beam dataset in tfds: preparing it also needs "
               "`pip install apache-beam`.")
_WIKI40B_HEADINGS = {"_START_ARTICLE_": "= {} =", "_START_SECTION_": "= = {} = ="}
_WIKI40B_PARAGRAPH = "_START_PARAGRAPH_"
_WIKI40B_NEWLINE = "_NEWLINE_"


# ------------------------------------------------------------------ tokenizer


def load_tokenizer(task: str, path: str | None) -> tokenizers.Tokenizer:
  """A fresh ``tokenizers.Tokenizer`` read from the ``tokenizer.json`` at ``path``
  (``data.tokenizer``); one-line errors when it is unset, missing or unreadable."""
  if path is None:
    raise ValueError(f"data.tokenizer=None for {task}; set it to the path of a Hugging Face "
                     "tokenizer.json (e.g. a BERT checkpoint's)")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"data.tokenizer={path!r} for {task}: no such file")
  try:
    return tokenizers.Tokenizer.from_file(path)
  except Exception as err:  # the Rust library raises a plain Exception
    said = str(err).splitlines()[0] if str(err) else ""
    raise ValueError(f"data.tokenizer={path!r} for {task} is not a tokenizers tokenizer.json "
                     f"({type(err).__name__}: {said})") from None


def padding_id(tokenizer: tokenizers.Tokenizer) -> int | None:
  """Id of the tokenizer's padding token: its padding setting's, else ``[PAD]`` or ``<pad>``;
  None when it has none."""
  if tokenizer.padding:
    return tokenizer.padding["pad_id"]
  ids = (tokenizer.token_to_id(token) for token in ("[PAD]", "<pad>"))
  return next((i for i in ids if i is not None), None)


def seq_len(data_config) -> int:
  """``data.seq_len`` of a text task (None -> ``SEQ_LEN``)."""
  return SEQ_LEN if data_config.seq_len is None else data_config.seq_len


def as_str(text) -> str:
  """A tfds text field (str, or UTF-8 bytes as array_record sources give it) as str."""
  return text.decode("utf-8") if isinstance(text, bytes) else str(text)


@dataclasses.dataclass(frozen=True, eq=False)
class Encoder:
  """``(a, b=None) -> (ids, token_types)``, both int32[seq_len]: ``[CLS] a [SEP] (b [SEP])``
  by the tokenizer's post-processor, truncated longest-first and right-padded with id 0."""
  tokenizer: tokenizers.Tokenizer = dataclasses.field(repr=False)
  seq_len: int

  def __call__(self, a: str, b: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    encoding = self.tokenizer.encode(a, b)
    return np.asarray(encoding.ids, np.int32), np.asarray(encoding.type_ids, np.int32)


def encoder(task: str, path: str | None, length: int, num_sentences: int = 2) -> Encoder:
  """The ``Encoder`` of the tokenizer at ``path`` for ``num_sentences`` (1 or 2) sentences in
  ``length`` tokens; a one-line ValueError unless its padding token is id 0 and ``length``
  holds the special tokens and a token of each sentence."""
  tokenizer = load_tokenizer(task, path)
  pad = padding_id(tokenizer)
  if pad != PAD_ID:
    raise ValueError(f"data.tokenizer={path!r} for {task}: padding token id {pad}; allowed: a "
                     f"tokenizer whose padding token is id {PAD_ID} (the models mask id 0), "
                     "e.g. a BERT WordPiece tokenizer.json")
  special = tokenizer.num_special_tokens_to_add(num_sentences == 2)
  if length < special + num_sentences:
    raise ValueError(f"data.seq_len={length} for {task}; must be >= {special + num_sentences} "
                     f"({special} special tokens and a token of each of {num_sentences} "
                     "sentences)")
  tokenizer.enable_truncation(max_length=length, strategy="longest_first")
  tokenizer.enable_padding(length=length, pad_id=PAD_ID,
                           pad_token=tokenizer.id_to_token(PAD_ID) or "[PAD]")
  return Encoder(tokenizer, length)


def vocab_size(task: str, path: str | None) -> int:
  """Vocabulary size of the tokenizer at ``path`` (added tokens included)."""
  return load_tokenizer(task, path).get_vocab_size()


# ------------------------------------------------------------------ GLUE


@dataclasses.dataclass(frozen=True, eq=False)
class GlueExample:
  """tfds GLUE example -> ``{"inputs", "token_types": int32[seq_len], "label": int32}``."""
  encode: Encoder
  fields: tuple[str, ...]

  def __call__(self, example: dict) -> dict:
    ids, types = self.encode(*(as_str(example[field]) for field in self.fields))
    return {"inputs": ids, "token_types": types,
            "label": np.asarray(example["label"], np.int32)}


def glue_view(task: str):
  """``data_config -> GlueExample`` of the GLUE task ``task`` (a key of ``GLUE``)."""
  def view(data_config) -> GlueExample:
    fields = GLUE[task].fields
    return GlueExample(encoder(task, data_config.tokenizer, seq_len(data_config), len(fields)),
                       fields)
  return view


# ------------------------------------------------------------------ corpus


def wiki40b_lines(text: str) -> list[str]:
  """The non-blank lines of a Wiki-40B article: ``_START_ARTICLE_`` / ``_START_SECTION_``
  titles as ``= T =`` / ``= = S = =`` (WikiText's headings), each ``_NEWLINE_``-separated
  piece of a paragraph a line; text outside the markup is split the same way."""
  lines, heading = [], None
  for raw in text.split("\n"):
    raw = raw.strip()
    if raw in _WIKI40B_HEADINGS:
      heading = _WIKI40B_HEADINGS[raw]
    elif raw == _WIKI40B_PARAGRAPH:
      heading = None
    elif heading is not None:
      lines.append(heading.format(raw))
      heading = None
    else:
      lines += raw.split(_WIKI40B_NEWLINE)
  return [line.strip() for line in lines if line.strip()]


def stream_dtype(vocab: int) -> np.dtype:
  """uint16 when every id fits, else int32."""
  return np.dtype(np.uint16 if vocab <= 1 << 16 else np.int32)


def encode_stream(texts: Iterable[str], tokenizer: tokenizers.Tokenizer,
                  limit: int | None = None) -> Iterator[np.ndarray]:
  """Chunks of the token stream of ``texts`` (each a Wiki-40B article, ``wiki40b_lines``):
  every line encoded with the tokenizer's special tokens, in order; at most ``limit`` tokens
  in all (None: no limit). Turns the tokenizer's truncation and padding off."""
  tokenizer.no_truncation()
  tokenizer.no_padding()
  dtype = stream_dtype(tokenizer.get_vocab_size())
  texts, left = iter(texts), limit
  while left is None or left > 0:
    batch = [line for _, text in zip(range(_ENCODE_BATCH), texts)
             for line in wiki40b_lines(text)]
    if not batch:
      return
    ids = [i for encoding in tokenizer.encode_batch(batch) for i in encoding.ids]
    chunk = np.asarray(ids[:left] if left is not None else ids, dtype)
    left = None if left is None else left - len(chunk)
    yield chunk


@dataclasses.dataclass(frozen=True, eq=False)
class LmBlocks:
  """Block i of a token stream: ``inputs`` = stream[iL : (i + 1)L], ``targets`` =
  stream[iL + 1 : (i + 1)L + 1], ``weights`` = 1 (float32); ``(len(stream) - 1) // L``
  blocks."""
  stream: np.ndarray
  seq_len: int

  def __len__(self) -> int:
    return max(len(self.stream) - 1, 0) // self.seq_len

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} blocks")
    start = index * self.seq_len
    window = np.asarray(self.stream[start:start + self.seq_len + 1], np.int32)
    return {"inputs": window[:-1], "targets": window[1:],
            "weights": np.ones((self.seq_len,), np.float32)}

  def __repr__(self) -> str:
    return f"LmBlocks({len(self.stream)} tokens, seq_len={self.seq_len})"


def streams_dir(data_dir, task: str) -> str:
  """Where the token streams of ``task`` are kept: ``<data_dir>/mimojax_token_streams/<task>``
  (data_dir None: tfds's default)."""
  root = os.fspath(data_dir or tfds_constants.get_default_data_dir())
  return os.path.join(root, STREAMS_FOLDER, task)


def stream_path(folder: str, split: str, limit: int | None, tokenizer_path: str,
                dtype: np.dtype) -> str:
  """File of the stream of ``split`` cut at ``limit`` tokens (None: whole), tokenized by the
  tokenizer file at ``tokenizer_path`` (its content's SHA-256, first 16 hex digits)."""
  with open(tokenizer_path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:16]
  size = "all" if limit is None else str(limit)
  return os.path.join(folder, f"{split}-{size}-{digest}.{dtype.name}")


def write_stream(path: str, chunks: Iterable[np.ndarray]) -> None:
  """The chunks' raw bytes to ``path``, through a temporary file renamed when complete."""
  partial = f"{path}.partial"
  with open(partial, "wb") as f:
    for chunk in chunks:
      f.write(chunk.tobytes())
  os.replace(partial, path)


def read_stream(path: str, dtype: np.dtype) -> np.ndarray:
  """The stream at ``path``, memory-mapped read-only (an empty file: an empty array)."""
  if os.path.getsize(path) == 0:
    return np.zeros((0,), dtype)
  return np.memmap(path, dtype=dtype, mode="r")


def corpus_blocks(task: str, raw, data_config, split: str, num_blocks: int | None) -> LmBlocks:
  """The ``LmBlocks`` of the corpus split ``raw`` (tfds records with a ``text`` field):
  its first ``num_blocks`` blocks (None: all), from the kept stream file, which is written
  first when missing (under a file lock, so that processes sharing a data_dir wait for one)."""
  tokenizer = load_tokenizer(task, data_config.tokenizer)
  length = seq_len(data_config)
  dtype = stream_dtype(tokenizer.get_vocab_size())
  folder = streams_dir(data_config.data_dir, task)
  limit = None if num_blocks is None else num_blocks * length + 1
  whole = stream_path(folder, split, None, data_config.tokenizer, dtype)
  path = whole if limit is None else stream_path(folder, split, limit, data_config.tokenizer,
                                                 dtype)
  if not os.path.exists(whole) and not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      try:
        if not os.path.exists(path):
          texts = (as_str(raw[i]["text"]) for i in tqdm.trange(
              len(raw), unit="doc", desc=f"{task}/{split}: tokenizing"))
          write_stream(path, encode_stream(texts, tokenizer, limit))
      finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
  stream = read_stream(whole if os.path.exists(whole) else path, dtype)
  if len(stream) < length + 1:
    raise ValueError(f"{task}/{split} has {len(stream)} tokens; data.seq_len={length} needs "
                     f"at least {length + 1}")
  return LmBlocks(stream[:limit], length)
