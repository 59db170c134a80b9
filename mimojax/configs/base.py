"""Shared defaults for every study and the `get_config(arg)` argument parser.

A study file in `experiments/` starts from `base_config()`, edits the groups it needs and
exposes `get_config(arg)`; `parse_arg` turns the `:k=v,flag` suffix of
`--config=experiments/<study>.py:k=v,flag` into typed values.

Groups: data, model, mimo, opt, train, eval, seeds, mesh, checkpoint. Durations are given in
steps or epochs (exactly one of the two >= 0); `mimojax.train.loop` converts them in one place.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by all studies (CPU-sized; studies override what they need)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # seed i of a seeds.num=k run uses jax.random.key(seed + i)

  c.data = ml_collections.ConfigDict()
  c.data.name = "assoc_recall"
  c.data.variant = ""  # builder config for tasks that have several (e.g. ListOps lengths)
  c.data.data_dir = ml_collections.config_dict.placeholder(str)  # None: tfds default
  c.data.seed = 0  # generator seed (generated tasks)
  c.data.shuffle_seed = 0  # training order; shared by every model seed of a run
  c.data.manual_dir = ml_collections.config_dict.placeholder(str)  # LRA release files
  c.data.seq_len = ml_collections.config_dict.placeholder(int)  # None: the task's length
  c.data.max_length = ml_collections.config_dict.placeholder(int)  # bytes per document
  c.data.validation_size = 0  # image tasks: last k train examples form the validation split
  c.data.augment = True  # image tasks: the dataset's training augmentation (flips, crops)

  c.model = ml_collections.ConfigDict()
  c.model.name = "transformer"
  c.model.head = "lm"  # lm | classifier | dual
  c.model.pooling = "mean"  # mean | cls
  c.model.attention = "softmax"  # softmax | favor | favor_s
  c.model.kernel = "relu"  # relu | exp | dpfp (favor, favor_s)
  c.model.num_features = 256
  c.model.exp_temperature = 1.0  # exp kernel: exp(t q.k / sqrt(D)); 1 = paper (Eq. 12)
  c.model.redraw_features = False
  c.model.dpfp_nu = 1
  c.model.num_layers = 2
  c.model.num_heads = 1
  c.model.head_dim = 32
  c.model.embed_dim = 32
  c.model.mlp_dim = 128
  c.model.max_len = 64
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.0
  c.model.classifier_dim = 128
  c.model.embed_dropout = ml_collections.config_dict.placeholder(float)  # None: dropout
  c.model.reference_padding = False  # official code: every pad adds eps to FAVOR normalisers
  c.model.init = "torch"  # transformer Dense init: torch (official code) | gpt2 (safari SimpleLM)
  c.model.tie_embeddings = False  # lm head: True = transposed token embedding (SimpleLM)
  # Convolutional networks (wide_resnet, wide_isonet, mimoconv); None = the model's default.
  c.model.depth = 28
  c.model.width = 10
  c.model.initial_width = ml_collections.config_dict.placeholder(int)
  # conv: relu | prelu | srelu; transformer MLP: relu | gelu. None: the model's default.
  c.model.activation = ml_collections.config_dict.placeholder(str)
  c.model.layout = ml_collections.config_dict.placeholder(str)  # standard | official
  c.model.bn_eval_batch_stats = False  # official code: BatchNorm batch statistics at test
  c.model.isometry_gamma = ml_collections.config_dict.placeholder(float)
  c.model.key_init = "uniform"  # uniform (official code) | gaussian (paper N(0, 1/D))
  c.model.trainable_keys = True
  c.model.unbind_bias_relu = True  # official code's MBAT unbinding with bias and ReLU

  c.mimo = ml_collections.ConfigDict()
  c.mimo.m = 1
  c.mimo.n = 1
  c.mimo.variant = "att"  # att | att_mlp (paper Sec. 4.2)
  c.mimo.curriculum_fraction = 0.0  # App. F.1: first fraction of steps on the M/2 x N/2 sub-grid
  c.mimo.curriculum_ramp_fraction = 0.0  # then both grids, full-grid share 0 -> 1 (not in paper)
  c.mimo.exact_kernel_fraction = 0.0  # first fraction of steps: exact exp kernel (not in paper)
  c.mimo.mass_balance = 0.0  # FAVOR+S att.: weight of Var_m log B^(m,n) (not in paper; 0: off)
  c.mimo.inputs_per_pass = ml_collections.config_dict.placeholder(int)  # MIMOConv; None: N
  c.mimo.key_mu = 0.1  # MIMOConv binding-key orthonormality weight (App. B.3)
  c.mimo.slow_fraction = 0.0  # MIMOConv dynamic training: share of batches in slow mode
  c.mimo.slow_inputs_per_pass = 1  # inputs per pass of a slow-mode batch (official sup_low)

  c.opt = ml_collections.ConfigDict()
  c.opt.name = "adamw"  # adamw | sgd
  c.opt.learning_rate = 5e-4  # peak learning rate
  c.opt.weight_decay = 0.0
  c.opt.b1 = 0.9  # AdamW beta1 / SGD momentum
  c.opt.b2 = 0.999
  c.opt.eps = 1e-8
  c.opt.schedule = "constant"  # constant | warmup_linear | warmup_cosine | one_cycle
  c.opt.warmup_fraction = 0.0  # of all steps (one_cycle: pct_start)
  c.opt.init_lr = 0.0  # warmup_* start value
  c.opt.min_lr = 0.0  # warmup_cosine end value
  c.opt.anneal = "cos"  # one_cycle annealing: cos | linear
  c.opt.cycle_momentum = False  # one_cycle: b1/momentum 0.95 -> 0.85 -> 0.95
  c.opt.grad_clip_norm = 0.0  # 0: off
  c.opt.decay_exempt = r"(^|/)(bias|scale|slope|threshold)$"  # regex on param paths: no decay

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32  # global batch (all processes, all data shards)
  c.train.num_steps = -1
  c.train.num_epochs = -1
  c.train.log_every_steps = 50
  # Steps per compiled call (lax.scan over a stack of batches): >1 removes the per-step host
  # work that bounds small models on accelerators; results equal one step per call up to
  # summation order.
  c.train.steps_per_call = 1
  # Consecutive skipped (NaN/Inf) updates before stopping. Checked where train metrics are
  # logged, so the run stops at the first log at or after the limit (skipped updates leave
  # the parameters unchanged).
  c.train.max_nonfinite_steps = 20
  c.train.passes_per_epoch = 1  # data traversals per epoch (MIMOConv: N, App. E.1)
  c.train.mixup_alpha = 0.0  # image tasks: mixup Beta(alpha, alpha) before superposition; 0 off
  c.train.grad_skip_factor = 0.0  # skip batches with grad norm >= factor x last epoch's mean; 0 off

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 1000
  c.eval.batch_size = 100
  c.eval.splits = ("test",)
  c.eval.inputs_per_pass = ()  # MIMOConv: extra modes n reported as accuracy/inputs_per_pass=n

  c.seeds = ml_collections.ConfigDict()
  c.seeds.num = 1

  c.mesh = ml_collections.ConfigDict()
  c.mesh.seed = 1  # devices along the seed axis (must divide seeds.num)
  c.mesh.data = -1  # devices along the data axis; -1: all remaining devices

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 1000
  c.checkpoint.keep = 2
  return c


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'k=v,flag,...' against typed `defaults`; a bare name sets a bool to True.

  Values take the type of their default; unknown keys raise a ValueError that lists the
  allowed ones.
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"config argument {key!r} is unknown; allowed: {sorted(defaults)}")
    default = defaults[key]
    if not eq:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r}: allowed values are true/false")
      out[key] = value.lower() in ("true", "1")
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ValueError(
            f"config argument {key}={value!r} is not a {type(default).__name__}") from None
  return out



def check_allowed(name: str, value, allowed) -> None:
  """Raises a one-line ValueError unless `value` is one of `allowed`."""
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not allowed; choose from {list(allowed)}")
