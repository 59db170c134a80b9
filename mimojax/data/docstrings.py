"""An offline sentence-classification task from text that ships with Python: the summary
sentences of the standard library's docstrings, labelled by the area of the library their
module belongs to.

Provenance: the docstrings of the running CPython's standard library (PSF licence), read with
``inspect`` from the modules listed in ``AREAS``; the areas follow the chapters of the Python
Library Reference ("Text Processing Services", "Numeric and Mathematical Modules", "File and
Directory Access", "Internet Protocols and Support" with "Networking and Interprocess
Communication", "Concurrent Execution", "Data Persistence" with "Data Compression and
Archiving" and "File Formats", and the date and time modules). No download: the text is
the interpreter's own. The sentences of a summary are real English descriptions of what an API
does ("Return the cosine of x (measured in radians).", "Create a new socket and send a PORT
command for it."), so the label is a property of the meaning of the sentence: a sentence
encoder that understands it separates the areas far above chance (1/7), and no single token
decides it.

A sentence is the first paragraph of the docstring of a module, or of a public class,
function or method defined in it, whitespace collapsed; kept when it has at least 4 words,
at most 300 characters and does not start with a call signature; a sentence found in modules
of two areas is dropped, one found twice in one area is kept once. Splits are fixed by a
hash of the sentence (``md5``): 70% train, 10% validation, 20% test. The exact sentences
depend on the Python version (Python 3.11: 1954 sentences; 1349 / 221 / 384).

Examples ``{"inputs": int32[L] token ids, "token_types": int32[L], "label": int32[]}``,
tokenized by ``data.tokenizer`` as the GLUE tasks (``text.encoder``), ``data.seq_len``
default ``SEQ_LEN``.
"""

import hashlib
import importlib
import inspect

import numpy as np

from mimojax.data import sources
from mimojax.data import text

# area -> standard-library modules whose docstrings it takes
AREAS = {
    "text": ("string", "re", "difflib", "textwrap", "unicodedata", "html", "html.parser",
             "gettext", "locale", "codecs"),
    "math": ("math", "cmath", "decimal", "_pydecimal", "fractions", "random", "statistics",
             "numbers"),
    "files": ("os", "posixpath", "shutil", "glob", "fnmatch", "tempfile", "stat", "filecmp",
              "pathlib", "io", "_pyio", "fileinput"),
    "network": ("socket", "ssl", "http.client", "http.server", "http.cookiejar",
                "urllib.request", "urllib.parse", "smtplib", "ftplib", "imaplib", "poplib",
                "email.message", "email.utils", "email.parser", "email.header", "mailbox",
                "xmlrpc.client", "ipaddress", "socketserver"),
    "concurrency": ("threading", "multiprocessing.pool", "multiprocessing.managers",
                    "multiprocessing.connection", "multiprocessing.queues",
                    "multiprocessing.synchronize", "multiprocessing.process",
                    "concurrent.futures._base", "concurrent.futures.thread",
                    "concurrent.futures.process", "subprocess", "queue", "sched",
                    "asyncio.tasks", "asyncio.events", "asyncio.queues", "asyncio.locks",
                    "asyncio.streams", "asyncio.base_events", "asyncio.futures"),
    "formats": ("json", "json.decoder", "json.encoder", "csv", "pickle", "zipfile", "tarfile",
                "gzip", "bz2", "lzma", "zlib", "sqlite3", "shelve", "configparser",
                "plistlib", "base64", "binascii", "struct"),
    "time": ("datetime", "time", "calendar", "zoneinfo"),
}
NUM_CLASSES = len(AREAS)
SEQ_LEN = 32  # holds 92% of the sentences whole in MiniLM's WordPiece tokens
SPLITS = {"train": (0, 70), "validation": (70, 80), "test": (80, 100)}  # md5 % 100 ranges


def summary(doc) -> str | None:
  """The first paragraph of a docstring, whitespace collapsed; None when it is not kept."""
  if not isinstance(doc, str) or not doc.strip():
    return None
  sentence = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
  if len(sentence.split()) < 4 or len(sentence) > 300 or "(" in sentence.split()[0]:
    return None
  return sentence


def _documented(module) -> list:
  """The module and its public classes (with their public methods and properties) and
  functions defined in it."""
  out = [module]
  for attr, obj in sorted(vars(module).items()):
    if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
      continue
    if inspect.isclass(obj):
      out.append(obj)
      out.extend(member for name, member in sorted(vars(obj).items())
                 if not name.startswith("_") and (inspect.isfunction(member) or isinstance(
                     member, property) or inspect.ismethoddescriptor(member)))
    elif callable(obj):
      out.append(obj)
  return out


def sentences() -> list[tuple[str, int]]:
  """Every (sentence, area index) of the task, in a fixed order (module doc)."""
  areas = {}
  for label, names in enumerate(AREAS.values()):
    for name in names:
      for obj in _documented(importlib.import_module(name)):
        sentence = summary(obj.__doc__ if inspect.ismodule(obj) or isinstance(obj, property)
                           else inspect.getdoc(obj))
        if sentence is not None:
          areas.setdefault(sentence, set()).add(label)
  return [(s, next(iter(labels))) for s, labels in areas.items() if len(labels) == 1]


def bucket(sentence: str) -> int:
  """The sentence's split bucket in [0, 100)."""
  return int(hashlib.md5(sentence.encode("utf-8")).hexdigest(), 16) % 100


def load_split(data_config, split: str) -> sources.ArraySource:
  """The tokenized split ``split`` of the task (module doc)."""
  if split not in SPLITS:
    raise ValueError(f"split {split!r} of stdlib_docs; allowed: {list(SPLITS)}")
  encode = text.encoder("stdlib_docs", data_config.tokenizer, seq_len(data_config), 1)
  low, high = SPLITS[split]
  kept = [(s, label) for s, label in sentences() if low <= bucket(s) < high]
  encoded = [encode(s) for s, _ in kept]
  return sources.ArraySource({
      "inputs": np.stack([ids for ids, _ in encoded]),
      "token_types": np.stack([types for _, types in encoded]),
      "label": np.array([label for _, label in kept], np.int32)})


def seq_len(data_config) -> int:
  """``data.seq_len`` (None -> ``SEQ_LEN``)."""
  return SEQ_LEN if data_config.seq_len is None else data_config.seq_len
