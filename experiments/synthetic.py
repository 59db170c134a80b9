"""Paper Table 3: associative recall (AR) and induction head (IH), last-token test accuracy.

    python -m mimojax.main --config=experiments/synthetic.py:model=mimoformer,task=ar,seeds=5,recipe=best
    python -m mimojax.main --config=experiments/synthetic.py:model=mimoformer,task=ih,seeds=5
    python -m mimojax.main --config=experiments/synthetic.py:model=transformer,task=ar,seeds=5
    python -m mimojax.main --config=experiments/synthetic.py:model=mimoformer,task=ih,smoke

Argument: `model=<transformer|performer|mimoformer|mimoformer_dpfp|datamux>,task=<ar|ih>
[,recipe=<paper|best>][,layers=<simple_lm|mimoformer>][,n=<1|2>][,warmup=f][,seeds=k]
[,epochs=e][,smoke]`.

Models: `transformer` (softmax), `performer` (FAVOR+, ReLU features), `mimoformer` (the
paper's "MIMOFormer N=2 (FAVOR+)": FAVOR+S att. on an M = 2 by N = 2 grid, four sequences
per attention call), `mimoformer_dpfp` (the same with DPFP features) and `datamux`
(DataMUX around SimpleLM with `n` = 1 or 2 instances per row, the paper's "DataMUX (N=2)":
Gaussian Hadamard mux, index demux, the retrieval warm-up on the task's own sequences for
the first `warmup` (default 0.1) of the steps, then 0.9 task + 0.1 retrieval; MIMONets App. F
does not give its DataMUX schedule, so this is DataMUX's own, princeton-nlp/DataMUX:
run_glue.sh).

`recipe=paper` (default): the paper's setting (App. F) with safari's training details where
the paper is silent (HazyResearch/safari: configs/experiment/synthetics/*): 2 layers, 1 head,
width 32, MLP 128, AdamW lr 5e-4, weight decay 0.1, batch 32, 400 epochs of 156 steps, a
10 % linear warm-up, then linear decay (AR) or cosine to 5e-5 (IH). The paper says "SGD";
with its lr 5e-4 and weight decay 0.1, SGD leaves even the Transformer at chance, so this
reads as safari's AdamW. Embedding dropout 0.1 for the Transformer (safari), none for the
linear-attention models (docs/fidelity.md).

`recipe=best`: the best setting measured for the model and task (docs/results.md,
"Recipes"). For `mimoformer`, `ar` it sets `model.kernel=exp`, `model.exp_temperature=4`,
`mimo.mass_balance=0.1` and `mimo.exact_kernel_fraction=0.2` (none of them in the paper);
for `performer`, `ar` it sets `model.kernel=exp`; for `transformer` and for `mimoformer`,
`ih` the paper's setting is the best known and `best` equals `paper`. The other pairs
(`performer`, `ih`; `mimoformer_dpfp`) have only `paper`: too few settings were run there.

`layers=simple_lm` (default) builds safari's SimpleLM (src/models/sequence/simple_lm.py;
the model the paper names for its DataMUX runs on these tasks, 27,456 parameters): GPT-2
initialisation, GELU MLP, LM head tied to the token embedding, weight decay on every
parameter. `layers=mimoformer` uses the official MIMOFormer (LRA) layers
(IBM/multiple-input-multiple-output-nets: MIMOFormer/code/model.py): PyTorch initialisation,
ReLU MLP, a separate LM head, no decay on biases and norm scales.

Expected last-token test accuracy (%), mean +- sd over 5 seeds, paper in brackets; per-seed
values and data files in docs/results.md. "Step 31,200": stopped at half the budget.
  recipe=paper
    transformer      AR 99.2 +- 0.1 (CPU) [98.48]; IH 98.3 +- 1.4 (CPU) [100.0]
    performer        AR 82.4 +- 19.3 (H200) [96.32]; IH 29.6 +- 35.1 (H100, step 31,200) [31.58]
    mimoformer       AR 27.4 +- 4.8 (H100, step 31,200, 10 seeds) [96.52];
                     IH 99.3 +- 1.2 (H100) [99.40]
    mimoformer_dpfp  AR 24.9 +- 1.9, IH 42.7 +- 44.8 (H100, step 31,200) [93.64, 98.56]
  recipe=best
    mimoformer       AR 98.3 +- 1.8 (100.0 / 99.0 / 99.0 / 98.6 / 94.8; CPU, 2 cores, 56 min)
    performer        AR 89.7 +- 12.8 (97.6 / 87.2 / 99.0 / 65.8 / 99.0; H200)
On the CPU (2 cores) a five-seed run takes about 1-2 hours; `smoke` takes seconds.
"""

from mimojax.configs import base

# Embedding dropout (unstated in the paper): safari's 0.1 for the Transformer, none for the
# linear-attention models; why and what each gives: docs/fidelity.md.
MODELS = {
    # model: (attention, kernel, m, n, embedding dropout)
    "transformer": ("softmax", "relu", 1, 1, 0.1),
    "performer": ("favor", "relu", 1, 1, 0.0),
    "mimoformer": ("favor_s", "relu", 2, 2, 0.0),
    "mimoformer_dpfp": ("favor_s", "dpfp", 2, 2, 0.0),
    "datamux": ("softmax", "relu", 1, 2, 0.1),  # n: the `n` argument
}
TASKS = {"ar": ("assoc_recall", 42), "ih": ("induction_head", 32)}  # name, safari l_max
# layers: (Dense init, MLP activation, tied LM head, weight-decay-exempt regex).
LAYERS = {
    # safari SimpleLM (src/models/sequence/simple_lm.py), where the paper ran these tasks:
    # GPT-2 init, GELU MLP, LM head tied to the token embedding, AdamW decay on every
    # parameter (safari's synthetic configs set no parameter groups).
    "simple_lm": ("gpt2", "gelu", True, "^$"),  # "^$" matches no parameter path
    # The official MIMOFormer (LRA) layers: torch init, ReLU MLP, separate LM head.
    "mimoformer": ("torch", "relu", False, None),  # None: base config's exemptions
}
# recipe=best: config fields set on top of recipe=paper, per (model, task); evidence in
# docs/results.md ("Recipes", "What we learned"). {} = the paper's setting is the best
# known. A pair that is absent has only recipe=paper: too few settings were run there to
# name a best one.
BEST = {
    # 98.3 +- 1.8 % (5 seeds, CPU) against 27.4 +- 4.8 % for recipe=paper (10 seeds at half
    # the budget, H100): exp features at 4 times the paper's temperature, balanced key-bundle masses (Eq. 67) and the first 20 % of the
    # steps on the exact kernel that the features estimate (Eq. 12).
    ("mimoformer", "ar"): {"model.kernel": "exp", "model.exp_temperature": 4.0,
                           "mimo.mass_balance": 0.1, "mimo.exact_kernel_fraction": 0.2},
    ("mimoformer", "ih"): {},  # 99.3 +- 1.2 %; exp features + curriculum: 63.0 +- 45.2 %
    ("transformer", "ar"): {},  # 99.2 +- 0.1 %
    ("transformer", "ih"): {},  # 98.3 +- 1.4 %
    ("performer", "ar"): {"model.kernel": "exp"},  # 89.7 +- 12.8 % vs 82.4 +- 19.3 % (H200)
}


def _datamux(c, n: int, warmup: float) -> None:
  """DataMUX around SimpleLM (MIMONets App. F: mux at the input, demux at the output):
  Gaussian Hadamard mux and index demux (the official defaults), the retrieval warm-up on the
  task's own sequences for the first `warmup` of the steps, then the task with retrieval as
  a 0.1-weighted auxiliary loss (princeton-nlp/DataMUX: run_glue.sh). The mux vectors keep
  the warm-up's norm 20 (the official fine-tuning restores the warm-up's vectors)."""
  c.model.name = "datamux"
  c.mimo.n = n
  c.mimo.mux, c.mimo.demux = "hadamard", "index"
  c.mimo.retrieval_fraction = warmup
  c.mimo.mux_norm = 20.0 if warmup > 0 else 1.0
  c.mimo.task_weight, c.mimo.retrieval_weight = 0.9, 0.1


def get_config(arg=None):
  args = base.parse_arg(arg, model="mimoformer", task="ar", seeds=1, epochs=400,
                        layers="simple_lm", recipe="paper", n=2, warmup=0.1, smoke=False)
  base.check_allowed("model", args.model, MODELS)
  base.check_allowed("n", args.n, (1, 2) if args.model == "datamux" else (2,))
  base.check_allowed("layers", args.layers, LAYERS)
  base.check_allowed("task", args.task, TASKS)
  pair = (args.model, args.task)
  base.check_allowed("recipe", args.recipe, ("paper", "best") if pair in BEST else ("paper",))
  c = base.base_config()
  c.data.name, max_len = TASKS[args.task]

  c.model.head = "lm"
  (c.model.attention, c.model.kernel, c.mimo.m, c.mimo.n,
   c.model.embed_dropout) = MODELS[args.model]
  c.model.init, c.model.activation, c.model.tie_embeddings, exempt = LAYERS[args.layers]
  if exempt is not None:
    c.opt.decay_exempt = exempt
  c.model.num_layers = 2
  c.model.num_heads = 1
  c.model.head_dim = 32
  c.model.embed_dim = 32
  c.model.mlp_dim = 128
  c.model.max_len = max_len  # inputs are 42 (AR) and 31 (IH) tokens
  if args.model == "datamux":
    _datamux(c, args.n, args.warmup)
    c.model.max_len = max_len + args.n + 1  # the index prefix
  c.model.dropout = 0.0  # residual dropout 0, as safari's SimpleLM
  c.model.attention_dropout = 0.1  # softmax attention weights only (safari)

  c.opt.name = "adamw"
  c.opt.learning_rate = 5e-4
  c.opt.weight_decay = 0.1
  c.opt.warmup_fraction = 0.1
  if args.task == "ar":
    c.opt.schedule = "warmup_linear"
  else:
    c.opt.schedule, c.opt.init_lr, c.opt.min_lr = "warmup_cosine", 1e-6, 5e-5

  c.train.batch_size = 32
  c.train.num_epochs = args.epochs
  c.train.log_every_steps = 156
  c.train.steps_per_call = 52  # steps/s 1.4x (H200), 1.3x (CPU) of 1 (docs/benchmarks.md)
  c.eval.splits = ("test",)
  c.eval.batch_size = 100
  c.eval.every_steps = 156 * 20
  c.checkpoint.every_steps = 156 * 20
  c.seeds.num = args.seeds
  if args.recipe == "best":
    for field, value in BEST[pair].items():
      group, name = field.split(".")
      c[group][name] = value

  if args.smoke:
    c.data.variant = "tiny"  # 256 train / 64 test sequences
    c.train.num_epochs = -1
    c.train.num_steps = 12
    c.train.log_every_steps = 4
    c.eval.every_steps = 6
    c.checkpoint.every_steps = 6
  return c
