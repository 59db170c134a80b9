"""Long Range Arena with FAVOR+S (paper Table 2, Table A3, App. F).

The default (no argument) is a CPU-sized ListOps run of MIMOFormer (M = N = 2, att.) on
locally generated data (ListOps lengths 20-128). Expect 34.8-35.0 % test accuracy at step
2000 (one seed, CPU with 2 cores, 3-7 min; majority class 16.9 %):

    python -m mimojax.main --config=experiments/favor_s_lra.py

The CPU study of Table 2's ListOps rows (3 seeds each, CPU, about 20 min per row; test
accuracy at step 2000: Performer 35.8 +- 0.4, N=2 att. 34.2 +- 0.5, N=2 att.+MLP 33.9 +- 0.5,
N=4 att. with curriculum 27.6 +- 4.1; docs/results.md):

    python -m mimojax.main --config=experiments/favor_s_lra.py:model=performer,seeds=3
    python -m mimojax.main --config=experiments/favor_s_lra.py:model=mimoformer,n=2,variant=att_mlp,seeds=3

Paper rows (need an accelerator and, except ListOps, the downloaded data):

    python -m mimojax.main --config=experiments/favor_s_lra.py:task=listops,model=performer,shape=deep
    python -m mimojax.main --config=experiments/favor_s_lra.py:task=image,model=mimoformer,n=4,curriculum,shape=wide
    python launch/sweep.py experiments/favor_s_lra.py --dry-run     # every row of Table 2

Argument: `task=<listops|text|retrieval|image|pathfinder>,model=<transformer|performer|
mimoformer|datamux>,n=<2|4>,variant=<att|att_mlp>,shape=<deep|wide|cpu>[,curriculum]
[,seeds=k][,smoke]`. The paper's "N" is the grid side: n=2 is an M = 2 by N = 2 grid (four sequences
per attention call). `curriculum` trains the first part on the M/2 x N/2 sub-grid (the
paper's "*"; fractions as the official configs: 0.15 ListOps, 0.1625 Text, 1/6 Retrieval
and Pathfinder, 1/7 Image). `shape=cpu` is the small model on ListOps-L128 used for the CPU
study above.

Training (Table A3 and the official code, IBM/multiple-input-multiple-output-nets:
MIMOFormer/code/run_tasks.py and lra_config.py): AdamW lr 1e-4 (betas 0.9/0.999, eps 1e-6, no
weight decay), OneCycle with linear annealing, warm-up = Table A3's warm-up steps, beta1
cycled 0.95 -> 0.85 -> 0.95, dropout 0.1, R = 256 ReLU features drawn once per layer, mean
pooling over all positions. Paper Table 2 (deep / wide ListOps): Performer 38.94 / 39.40,
MIMO N=2 att. 38.08 / 38.90, N=2 att.+MLP 37.65 / 37.59, N=4 att.* 37.64 / 37.68.
"""

import dataclasses

from mimojax.configs import base


@dataclasses.dataclass(frozen=True)
class Task:
  """One LRA task: model sizes of paper Table A3 (deep), batch, steps, warm-up and curriculum
  of the official configs (IBM/multiple-input-multiple-output-nets:
  MIMOFormer/code/lra_config.py)."""
  data: str  # tfds builder name
  max_len: int  # position table: max_seq_len rounded up to a power of 2
  layers: int  # deep model (Table A3)
  heads: int
  head_dim: int
  embed_dim: int
  mlp_dim: int
  wide_heads: int  # the one-layer wide model of Table 2 (layers * heads of the deep one)
  batch: int
  steps: int
  warmup_steps: int
  curriculum_fraction: float  # MIMO_warmup / steps: the "*" rows' M/2 x N/2 warm-up
  head: str  # classifier | dual (retrieval compares two documents)


TASKS = {
    "listops": Task(
        data="listops", max_len=2048, layers=6, heads=8, head_dim=64, embed_dim=512,
        mlp_dim=2048, wide_heads=48, batch=64, steps=20000, warmup_steps=1000,
        curriculum_fraction=0.15, head="classifier"),
    "text": Task(
        data="lra_text", max_len=4096, layers=6, heads=8, head_dim=64, embed_dim=512,
        mlp_dim=2048, wide_heads=48, batch=32, steps=40000, warmup_steps=8000,
        curriculum_fraction=0.1625, head="classifier"),
    "retrieval": Task(
        data="lra_retrieval", max_len=4096, layers=4, heads=4, head_dim=32, embed_dim=128,
        mlp_dim=512, wide_heads=16, batch=32, steps=60000, warmup_steps=800,
        curriculum_fraction=1 / 6, head="dual"),
    "image": Task(
        data="lra_image", max_len=1024, layers=3, heads=4, head_dim=64, embed_dim=64,
        mlp_dim=128, wide_heads=12, batch=256, steps=70000, warmup_steps=175,
        curriculum_fraction=1 / 7, head="classifier"),
    "pathfinder": Task(
        data="lra_pathfinder", max_len=1024, layers=4, heads=8, head_dim=128, embed_dim=128,
        mlp_dim=128, wide_heads=32, batch=256, steps=124800, warmup_steps=312,
        curriculum_fraction=1 / 6, head="classifier"),
}
MODELS = ("transformer", "performer", "mimoformer", "datamux")
# DataMUX on ListOps (MIMONets Table A3, App. F): RoBERTa-shaped, 12 layers of 12 heads of
# width 10 (E = 120), FFN 3072, batch 48, lr 2e-5, 20,000 steps after the retrieval warm-up.
DATAMUX_LISTOPS = dict(layers=12, heads=12, head_dim=10, embed_dim=120, mlp_dim=3072, batch=48,
                       learning_rate=2e-5, steps=20000)
# Retrieval warm-up steps before the task: ~20k for N < 20 (the DataMUX maintainers,
# princeton-nlp/DataMUX issue 2); the CPU shape scales it with its task steps.
DATAMUX_WARMUP = {"deep": 20000, "cpu": 500}
SHAPES = ("deep", "wide", "cpu")


def get_config(arg=None):
  args = base.parse_arg(arg, task="listops", model="mimoformer", n=2, variant="att",
                        shape="", curriculum=False, seeds=1, smoke=False)
  args.shape = args.shape or ("cpu" if args.task == "listops" else "deep")
  base.check_allowed("task", args.task, TASKS)
  base.check_allowed("model", args.model, MODELS)
  base.check_allowed("n", args.n, (1, 2, 4) if args.model == "datamux" else (2, 4))
  if args.model == "datamux" and (args.task, args.shape) not in (("listops", "deep"),
                                                                  ("listops", "cpu")):
    raise ValueError(f"model=datamux is defined for task=listops with shape=deep or cpu, got "
                     f"task={args.task!r}, shape={args.shape!r}")
  base.check_allowed("variant", args.variant, ("att", "att_mlp"))
  base.check_allowed("shape", args.shape, SHAPES)
  if args.shape == "cpu" and args.task != "listops":
    raise ValueError(f"shape=cpu is defined for task=listops only, got task={args.task!r}")
  task = TASKS[args.task]

  c = base.base_config()
  c.data.name = task.data
  c.data.variant = "full" if args.task == "listops" else ""

  c.model.head = task.head
  c.model.pooling = "mean"
  c.model.kernel = "relu"
  c.model.num_features = 256
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.1
  c.model.max_len = task.max_len
  c.model.num_layers, c.model.num_heads = task.layers, task.heads
  if args.shape == "wide":
    c.model.num_layers, c.model.num_heads = 1, task.wide_heads
  c.model.head_dim, c.model.embed_dim, c.model.mlp_dim = (task.head_dim, task.embed_dim,
                                                          task.mlp_dim)
  c.model.classifier_dim = task.mlp_dim
  c.model.attention = {"transformer": "softmax", "performer": "favor",
                       "mimoformer": "favor_s", "datamux": "softmax"}[args.model]
  if args.model == "mimoformer":
    c.mimo.m = c.mimo.n = args.n
    c.mimo.variant = args.variant
    c.mimo.curriculum_fraction = task.curriculum_fraction if args.curriculum else 0.0

  c.opt.name = "adamw"
  c.opt.learning_rate = 1e-4
  c.opt.b1, c.opt.b2, c.opt.eps = 0.95, 0.999, 1e-6
  c.opt.weight_decay = 0.0
  c.opt.schedule, c.opt.anneal, c.opt.cycle_momentum = "one_cycle", "linear", True
  c.opt.warmup_fraction = task.warmup_steps / task.steps

  c.train.batch_size = task.batch
  c.train.num_steps = task.steps
  c.train.log_every_steps = 100
  c.eval.splits = ("validation", "test")
  c.eval.batch_size = 64
  c.eval.every_steps = max(task.steps // 20, 1)
  c.checkpoint.every_steps = max(task.steps // 20, 1)
  c.seeds.num = args.seeds

  if args.shape == "cpu":
    # ListOps with 20 < length < 128: a 2-layer model that trains in minutes on 2 cores.
    c.data.variant = "L128"
    c.model.max_len = 128
    c.model.num_layers, c.model.num_heads, c.model.head_dim = 2, 4, 16
    c.model.embed_dim, c.model.mlp_dim, c.model.classifier_dim = 64, 128, 128
    c.model.num_features = 64
    c.opt.learning_rate = 1e-3
    c.train.batch_size = 32
    c.train.num_steps = 2000
    c.opt.warmup_fraction = 0.05
    c.eval.splits = ("test",)
    c.eval.batch_size = 160  # divisible by every grid (M * N <= 16)
    c.eval.every_steps = c.checkpoint.every_steps = 500
  if args.smoke:
    # seconds on a CPU: ListOps tiny, byte documents cut to 64 bytes, pixel tasks unchanged
    c.data.variant = "tiny" if args.task == "listops" else c.data.variant
    if args.task in ("text", "retrieval"):
      c.data.max_length = 64
    if args.task in ("listops", "text", "retrieval"):
      c.model.max_len = 64
    c.model.num_layers = 1
    c.model.num_heads = min(c.model.num_heads, 2)
    c.model.head_dim = min(c.model.head_dim, 16)
    c.model.embed_dim = c.model.mlp_dim = c.model.classifier_dim = 32
    c.model.num_features = 32
    c.train.batch_size = 16
    c.train.num_steps = 8
    c.train.log_every_steps = 4
    c.eval.batch_size = 32
    c.eval.every_steps = c.checkpoint.every_steps = 4
  if args.model == "datamux":
    _datamux(c, args.n, args.shape, args.smoke)
  return c


def _datamux(c, n: int, shape: str, smoke: bool) -> None:
  """DataMUX on ListOps: the Table A3 model (shape=deep) or the CPU model's sizes (shape=cpu,
  same optimiser and task steps as the other CPU rows), Gaussian Hadamard mux with the
  warm-up's norm 20, index demux, RoBERTa's post-LN layers with exact GELU and no attention
  mask (the official code's), the retrieval warm-up on the ListOps training sequences, then
  the task steps with 0.9 task + 0.1 retrieval (princeton-nlp/DataMUX: run_glue.sh)."""
  c.model.name = "datamux"
  c.model.norm_position, c.model.activation = "post", "gelu_exact"
  c.mimo.m, c.mimo.n = 1, n
  c.mimo.mux, c.mimo.demux, c.mimo.mux_norm = "hadamard", "index", 20.0
  c.mimo.task_weight, c.mimo.retrieval_weight = 0.9, 0.1
  if shape == "deep":
    d = DATAMUX_LISTOPS
    c.model.num_layers, c.model.num_heads, c.model.head_dim = d["layers"], d["heads"], d["head_dim"]
    c.model.embed_dim, c.model.mlp_dim = d["embed_dim"], d["mlp_dim"]
    c.train.batch_size = d["batch"]
    c.opt.learning_rate = d["learning_rate"]
    c.opt.schedule, c.opt.warmup_fraction, c.opt.cycle_momentum = "warmup_linear", 0.0, False
    c.opt.b1, c.opt.eps, c.opt.weight_decay = 0.9, 1e-8, 0.0  # Hugging Face Trainer AdamW
  warmup = 2 if smoke else DATAMUX_WARMUP[shape]
  c.train.num_steps += warmup
  c.mimo.retrieval_fraction = warmup / c.train.num_steps
  c.model.max_len += n + 1  # the index prefix
  c.eval.batch_size = 48 if shape == "deep" else c.eval.batch_size


def get_sweep():
  """Every row of paper Table 2 (deep and wide), as config arguments."""
  models = [("performer", "")] + [
      ("mimoformer", f"n={n},variant={v}{',curriculum' if cur else ''}")
      for n, v, cur in ((2, "att", False), (2, "att_mlp", False), (4, "att", False),
                        (4, "att", True), (4, "att_mlp", False))]
  rows = [f"task={t},model=transformer,shape=deep" for t in TASKS]
  for shape in ("deep", "wide"):
    for task in TASKS:
      for model, extra in models:
        rows.append(",".join(p for p in (f"task={task}", f"model={model}", extra,
                                         f"shape={shape}") if p))
  return rows
