"""DataMUX on GLUE-style sentence classification (DataMUX Sec. 4.1, Fig. 3), for users with
the tfds downloads (`glue/*`, and `wiki40b/en` for the warm-up on a real text corpus).

Two runs, as the official code (princeton-nlp/DataMUX: run_glue.sh): the retrieval warm-up on
a text corpus, then the task, starting from the warm-up's encoder and mux vectors
(`train.init_from`) with retrieval kept as a 0.1-weighted auxiliary loss:

    python -m mimojax.main --config=experiments/datamux_glue.py:stage=warmup,n=10,tokenizer=/path/tokenizer.json \\
        --workdir=runs/datamux_glue/warmup-n10
    python -m mimojax.main --config=experiments/datamux_glue.py:task=mnli,n=10,warmup=none,tokenizer=/path/tokenizer.json \\
        --config.train.init_from=runs/datamux_glue/warmup-n10 --workdir=runs/datamux_glue/mnli-n10

Without a corpus, `warmup=in_task` (the default) trains retrieval on the task's own sentences
for the first fifth of the steps of one run instead. `smoke` shrinks either stage to a seconds-long CPU run (it still needs the data).

Argument: `task=<sst2|mnli|qnli|qqp>,n=<1|2|5|10|20|40>,tokenizer=PATH[,stage=<warmup|task>]
[,warmup=<in_task|none>][,seeds=k][,smoke]`. `tokenizer`: a Hugging Face `tokenizer.json`
whose padding id is 0 (a BERT WordPiece vocabulary such as bert-base-uncased, MUX-PLM's; the
all-MiniLM-L6-v2 package ships that vocabulary). The official DataMUX uses RoBERTa's
tokenizer, whose padding id is 1 (docs/fidelity.md).

Model and training (run_glue.sh; reference-baselines.md 1.1-1.4): RoBERTa-base-shaped encoder
trained from scratch (12 post-LN layers, d = 768, 12 heads, FFN 3072, exact GELU, dropout 0.1,
no attention mask), Gaussian Hadamard mux (norm 20 at the warm-up, kept by the task run) and
index demux, sequences of 128 tokens, AdamW lr 5e-5 with linear decay, batch 24 N sentences
(20 N for N >= 20, 16 N for N >= 40, 32 for N = 1), warm-up 20,000 steps for N < 20 and 40,000
beyond (the maintainers' advice, princeton-nlp/DataMUX issue 2), then 10 epochs of the task
with 0.9 task + 0.1 retrieval. Numbers to compare with (DataMUX Fig. 3, read from the plot):
MNLI about 63 % at N = 2 falling to about 56 % at N = 40; SST-2 and QQP lose less.
"""

from mimojax.configs import base

TASKS = {"sst2": "glue_sst2", "mnli": "glue_mnli", "qnli": "glue_qnli", "qqp": "glue_qqp"}
NS = (1, 2, 5, 10, 20, 40)


def batch_per_instance(n: int) -> int:
  """Sentences per instance slot in a batch (run_glue.sh)."""
  if n == 1:
    return 32
  return 16 if n >= 40 else 20 if n >= 20 else 24


def get_config(arg=None):
  args = base.parse_arg(arg, task="mnli", n=2, tokenizer="", stage="task", warmup="in_task",
                        seeds=1, smoke=False)
  base.check_allowed("task", args.task, TASKS)
  base.check_allowed("n", args.n, NS)
  base.check_allowed("stage", args.stage, ("warmup", "task"))
  base.check_allowed("warmup", args.warmup, ("in_task", "none"))
  if not args.tokenizer:
    raise ValueError("tokenizer='' is not allowed; give tokenizer=<path of a Hugging Face "
                     "tokenizer.json with padding id 0>")
  warmup_steps = 20_000 if args.n < 20 else 40_000
  c = base.base_config()
  c.data.tokenizer = args.tokenizer
  c.data.seq_len = 128

  c.model.name = "datamux"
  c.model.norm_position, c.model.activation = "post", "gelu_exact"
  c.model.num_layers, c.model.num_heads, c.model.head_dim = 12, 12, 64
  c.model.embed_dim, c.model.mlp_dim = 768, 3072
  c.model.dropout, c.model.attention_dropout = 0.1, 0.1
  c.model.max_len = 128 + args.n + 1  # the index prefix
  c.mimo.n = args.n
  c.mimo.mux, c.mimo.demux, c.mimo.mux_norm = "hadamard", "index", 20.0

  c.opt.name, c.opt.learning_rate, c.opt.weight_decay = "adamw", 5e-5, 0.0
  c.opt.schedule, c.opt.warmup_fraction = "warmup_linear", 0.0
  c.train.batch_size = batch_per_instance(args.n) * args.n
  c.eval.batch_size = c.train.batch_size
  c.eval.splits = ("validation",)
  c.seeds.num = args.seeds
  if args.stage == "warmup":  # retrieval only, on the corpus, bidirectional as the encoder
    c.data.name = "wiki40b_en"
    c.model.head, c.model.bidirectional = "lm", True
    c.mimo.task_weight, c.mimo.retrieval_weight = 0.0, 1.0
    c.train.num_steps = warmup_steps
    c.eval.every_steps = c.checkpoint.every_steps = 10_000
  else:
    c.data.name = TASKS[args.task]
    c.model.head = "classifier"
    c.mimo.task_weight, c.mimo.retrieval_weight = 0.9, 0.1
    c.train.num_epochs = 10
    c.eval.every_steps = c.checkpoint.every_steps = 2_000
    if args.warmup == "in_task":
      c.mimo.retrieval_fraction = 0.2
  if args.smoke:
    c.model.num_layers, c.model.num_heads, c.model.head_dim = 1, 2, 8
    c.model.embed_dim, c.model.mlp_dim = 16, 32
    c.data.seq_len = 16
    c.model.max_len = 16 + args.n + 1
    c.train.batch_size = c.eval.batch_size = 4 * args.n
    c.train.num_epochs, c.train.num_steps = -1, 6
    c.train.log_every_steps = c.eval.every_steps = c.checkpoint.every_steps = 3
    c.data.num_train = c.data.num_validation = c.data.num_test = 64
  return c
