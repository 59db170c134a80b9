"""The typed config boundary: a study's ConfigDict -> frozen dataclasses, validated once.

Users write and override ``ml_collections`` ConfigDicts (``experiments/``, ``--config.a.b=v``).
``from_dict`` turns one (or the ``config.json`` of an earlier run) into a :class:`Config`:
every field typed, a field missing from an older run's file taking its default below, an
unknown field rejected. ``validate`` then checks every rule once, and ``check_data`` the rules
that need the data's ``DataInfo``; below this module code reads typed values only. The
defaults here are the ones ``configs.base.base_config()`` starts every study from.

Durations are in steps or epochs (exactly one of ``train.num_steps``, ``train.num_epochs``
>= 0); ``total_steps`` converts them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing

from mimojax import data as data_lib
from mimojax import models
from mimojax.models.datamux import DEMUXES, MUXES, NORM_POSITIONS, prefix_length
from mimojax.models.revmux import VARIANTS as REVMUX_VARIANTS
from mimojax.models.transformer import HEAD_TASKS, HEADS, POOLINGS, VARIANTS
from mimojax.models.wide_resnet import DEFAULTS as CONV_DEFAULTS
from mimojax.models.wide_resnet import stage_sizes_for_depth
from mimojax.nn import attention as attention_lib
from mimojax.nn import blocks
from mimojax.nn import conv
from mimojax.train import optim

SPLITS = ("train", "validation", "test")
LOSSES = ("cross_entropy", "mse")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """``data``: which task and how it is generated or read (``mimojax.data``)."""
  name: str = "assoc_recall"
  variant: str = ""  # builder config of tasks that have several (e.g. ListOps lengths)
  data_dir: str | None = None  # None: tfds default
  seed: int = 0  # generator seed (generated tasks)
  shuffle_seed: int = 0  # training order; shared by every model seed of a run
  manual_dir: str | None = None  # LRA release files
  seq_len: int | None = None  # None: the task's length
  max_length: int | None = None  # bytes per document (LRA text, retrieval); ListOps bound
  validation_size: int = 0  # image tasks: the last k train examples form the validation split
  augment: bool = True  # image tasks: the dataset's training augmentation (flips, crops)
  normalise: bool = True  # image tasks: per-channel mean/std; False: pixels / 255 (DataMUX)
  tokenizer: str | None = None  # text tasks (GLUE, wiki40b_en): a Hugging Face tokenizer.json
  # Generated tasks: overrides of the variant's settings (None: the variant's value);
  # num_*: also the blocks kept per split of wiki40b_en (None: all).
  vocab_size: int | None = None
  input_seq_len: int | None = None
  min_length: int | None = None
  max_depth: int | None = None
  max_args: int | None = None
  contour_length: int | None = None
  num_train: int | None = None
  num_validation: int | None = None
  num_test: int | None = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """``model``: the network (``mimojax.models``); None: the model's default."""
  name: str = "transformer"  # a key of models.MODELS
  # Transformer family.
  head: str = "lm"  # lm | classifier | dual
  pooling: str = "mean"  # mean | cls
  attention: str = "softmax"  # softmax | favor | favor_s
  kernel: str = "relu"  # relu | exp | dpfp (favor, favor_s)
  num_features: int = 256
  exp_temperature: float = 1.0  # exp kernel: exp(t q.k / sqrt(D)); 1 = paper (Eq. 12)
  redraw_features: bool = False
  dpfp_nu: int = 1
  num_layers: int = 2
  num_heads: int = 1
  head_dim: int = 32
  embed_dim: int = 32
  mlp_dim: int = 128
  max_len: int = 64
  dropout: float = 0.1
  attention_dropout: float = 0.0
  classifier_dim: int = 128
  embed_dropout: float | None = None  # None: dropout
  reference_padding: bool = False  # official code: every pad adds eps to FAVOR normalisers
  init: str = "torch"  # Dense init: torch (official code) | gpt2 (safari SimpleLM)
  tie_embeddings: bool = False  # lm head: the transposed token embedding (SimpleLM)
  # Convolutional networks (wide_resnet, wide_isonet, mimoconv).
  depth: int = 28
  width: int = 10
  initial_width: int | None = None
  activation: str | None = None  # conv: relu | prelu | srelu; transformer MLP: relu | gelu
  layout: str | None = None  # standard | official
  bn_eval_batch_stats: bool = False  # official code: BatchNorm batch statistics at test
  isometry_gamma: float | None = None
  key_init: str = "uniform"  # uniform (official code) | gaussian (paper N(0, 1/D))
  trainable_keys: bool = True
  unbind_bias_relu: bool = True  # official code's MBAT unbinding with bias and ReLU
  # DataMUX Transformer (datamux): RoBERTa's post-LN layers or the pre-LN ones above.
  norm_position: str = "pre"  # pre | post
  mask_padding: bool = False  # datamux: mask padded keys (official code: no mask)
  # datamux with head lm: bidirectional attention, for a retrieval-only warm-up run on a text
  # corpus (mimo.task_weight = 0) whose encoder a classifier then starts from (train.init_from)
  bidirectional: bool = False
  # RevMUX (models.revmux): adapters around a frozen backbone; N = mimo.n.
  backbone: str | None = None  # Hugging Face BERT checkpoint directory or mimojax workdir
  revmux_variant: str = "revmux"  # revmux | adapters | ora | single (the backbone alone)
  prefill_layers: int | None = None  # backbone layers run per input; None: half of them
  info_nce_weight: float = 0.25  # lambda (official BERT script's default)
  info_nce_temperature: float = 0.05  # official: cosine x 20


@dataclasses.dataclass(frozen=True)
class MimoConfig:
  """``mimo``: superposition settings and their training phases (``train.phases``)."""
  m: int = 1
  n: int = 1
  variant: str = "att"  # att | att_mlp (MIMONets Sec. 4.2)
  curriculum_fraction: float = 0.0  # App. F.1: first fraction of steps on the M/2 x N/2 grid
  curriculum_ramp_fraction: float = 0.0  # then both grids, full-grid share 0 -> 1 (not in paper)
  exact_kernel_fraction: float = 0.0  # first fraction of steps: exact exp kernel (not in paper)
  mass_balance: float = 0.0  # FAVOR+S att.: weight of Var_m log B^(m,n) (not in paper; 0: off)
  inputs_per_pass: int | None = None  # MIMOConv; None: N
  key_mu: float = 0.1  # MIMOConv binding-key orthonormality weight (App. B.3)
  slow_fraction: float = 0.0  # MIMOConv dynamic training: share of batches in slow mode
  slow_inputs_per_pass: int = 1  # inputs per pass of a slow-mode batch (official sup_low)
  # DataMUX (models.datamux): N = n instances per group, m = 1.
  mux: str = "hadamard"  # hadamard | binary | ortho | low_rank; CNN also kernel | nonlinear
  mux_norm: float = 1.0  # norm of the Gaussian Hadamard vectors (official: 20 for warm-up)
  mux_overlap: float = 0.0  # binary mux: chunk overlap epsilon in [0, 1]
  learn_mux: bool = False  # train the mux vectors / matrices / kernels (official: frozen)
  mux_maps: int = 1  # CNN nonlinear mux: feature maps per instance (1, 4 or 8)
  demux: str = "index"  # index (prefix tokens) | mlp (N heads)
  retrieval_fraction: float = 0.0  # first fraction of steps: the retrieval warm-up only
  task_weight: float = 1.0  # loss = task_weight * task + retrieval_weight * retrieval
  retrieval_weight: float = 0.0  # (after the warm-up; official fine-tuning: 0.9 and 0.1)


@dataclasses.dataclass(frozen=True)
class OptConfig:
  """``opt``: optimiser and learning-rate schedule (``train.optim``)."""
  name: str = "adamw"  # adamw | sgd
  learning_rate: float = 5e-4  # peak learning rate
  weight_decay: float = 0.0
  b1: float = 0.9  # AdamW beta1 / SGD momentum
  b2: float = 0.999
  eps: float = 1e-8
  schedule: str = "constant"  # constant | warmup_linear | warmup_cosine | one_cycle
  warmup_fraction: float = 0.0  # of all steps (one_cycle: pct_start)
  init_lr: float = 0.0  # warmup_* start value
  min_lr: float = 0.0  # warmup_cosine end value
  anneal: str = "cos"  # one_cycle annealing: cos | linear
  cycle_momentum: bool = False  # one_cycle: b1/momentum 0.95 -> 0.85 -> 0.95
  grad_clip_norm: float = 0.0  # 0: off
  decay_exempt: str = optim.DEFAULT_DECAY_EXEMPT  # regex on param paths: no weight decay


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """``train``: batches, duration, logging and update guards."""
  batch_size: int = 32  # global batch (all processes, all data shards)
  num_steps: int = -1
  num_epochs: int = -1
  log_every_steps: int = 50
  # Steps per compiled call (lax.scan over a stack of batches): > 1 removes the per-step
  # host work that bounds small models on accelerators; results equal one step per call up
  # to summation order.
  steps_per_call: int = 1
  # Consecutive skipped (NaN/Inf) updates before stopping, checked where train metrics are
  # logged (skipped updates leave the parameters unchanged).
  max_nonfinite_steps: int = 20
  passes_per_epoch: int = 1  # data traversals per epoch (MIMOConv: N, App. E.1)
  mixup_alpha: float = 0.0  # image tasks: mixup Beta(alpha, alpha) before superposition; 0 off
  grad_skip_factor: float = 0.0  # skip batches with grad norm >= factor x last epoch's mean
  init_from: str | None = None  # a workdir: start from its matching parameters and constants
  loss: str = "cross_entropy"  # cross_entropy | mse (one-vs-rest +-1 targets, DataMUX vision)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """``eval``: when and what to evaluate."""
  every_steps: int = 1000
  batch_size: int = 100
  splits: tuple[str, ...] = ("test",)
  inputs_per_pass: tuple[int, ...] = ()  # MIMOConv: modes n, as accuracy/inputs_per_pass=n


@dataclasses.dataclass(frozen=True)
class SeedsConfig:
  """``seeds``: independent models trained in one program (vmapped)."""
  num: int = 1


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """``mesh``: devices along the seed and data axes."""
  seed: int = 1  # must divide seeds.num
  data: int = -1  # -1: all remaining devices


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """``checkpoint``: Orbax save interval and how many to keep."""
  every_steps: int = 1000
  keep: int = 2


@dataclasses.dataclass(frozen=True)
class Config:
  """A whole study. ``seed``: seed i of a ``seeds.num`` run uses ``jax.random.key(seed + i)``."""
  seed: int = 0
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  mimo: MimoConfig = MimoConfig()
  opt: OptConfig = OptConfig()
  train: TrainConfig = TrainConfig()
  eval: EvalConfig = EvalConfig()
  seeds: SeedsConfig = SeedsConfig()
  mesh: MeshConfig = MeshConfig()
  checkpoint: CheckpointConfig = CheckpointConfig()


# ------------------------------------------------------------------------------------------
# ConfigDict / JSON -> Config


def _optional_of(hint):
  """``X`` of an ``X | None`` annotation, else None."""
  args = typing.get_args(hint)
  return next(a for a in args if a is not type(None)) if type(None) in args else None


def _coerce(name: str, value, hint):
  """``value`` as the annotated type ``hint``; a one-line ValueError otherwise."""
  if _optional_of(hint) is not None:
    if value is None:
      return None
    hint = _optional_of(hint)
  if typing.get_origin(hint) is tuple:
    if not isinstance(value, (list, tuple)):
      raise ValueError(f"{name}={value!r} must be a tuple")
    return tuple(_coerce(name, v, typing.get_args(hint)[0]) for v in value)
  if hint is bool:
    if not isinstance(value, bool):
      raise ValueError(f"{name}={value!r} must be true or false")
    return value
  if hint is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ValueError(f"{name}={value!r} must be an integer")
    return value
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{name}={value!r} must be a number")
    return float(value)
  if not isinstance(value, hint):
    raise ValueError(f"{name}={value!r} must be a {hint.__name__}")
  return value


def _build(cls, values, prefix: str = ""):
  hints = typing.get_type_hints(cls)
  unknown = sorted(set(values) - set(hints))
  if unknown:
    where = prefix.rstrip(".") or "the config"
    raise ValueError(f"{prefix}{unknown[0]} is not a field of {where}; allowed: "
                     f"{sorted(hints)}")
  fields = {}
  for name, value in values.items():
    hint = hints[name]
    if dataclasses.is_dataclass(hint):
      if not hasattr(value, "items"):
        raise ValueError(f"{prefix}{name} must be a group of fields, got {value!r}")
      fields[name] = _build(hint, dict(value.items()), f"{prefix}{name}.")
    else:
      fields[name] = _coerce(prefix + name, value, hint)
  return cls(**fields)


def from_dict(values) -> Config:
  """The :class:`Config` of a ConfigDict or of the dict a ``config.json`` holds, validated.

  Fields it does not name take their defaults (an older run's file reads as it ran); a field
  this version does not know raises a one-line ValueError."""
  if hasattr(values, "to_dict"):
    values = values.to_dict()
  config = _build(Config, dict(values))
  validate(config)
  return config


def to_dict(config: Config) -> dict:
  """Plain JSON-ready values of every field (what a run writes to ``config.json``)."""
  return dataclasses.asdict(config)


def placeholder_types(cls) -> dict:
  """Field name -> the type of a None default (``configs.base`` declares it as a typed
  placeholder so that ``--config.a.b=v`` overrides parse)."""
  hints = typing.get_type_hints(cls).items()
  return {name: _optional_of(hint) for name, hint in hints if _optional_of(hint) is not None}


# ------------------------------------------------------------------------------------------
# Rules: each checked once, here.


def choose(name: str, value, allowed) -> None:
  """Raises a one-line ValueError unless ``value`` is one of ``allowed``."""
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not allowed; choose from {list(allowed)}")


def in_range(name: str, value, low=None, high=None, *, high_open: bool = False) -> None:
  """Raises a one-line ValueError unless ``value`` is finite and ``low <= value <= high``
  (``< high`` with ``high_open``); a None bound is no bound."""
  above = low is None or value >= low
  below = high is None or (value < high if high_open else value <= high)
  if not (math.isfinite(value) and above and below):
    bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}"
    raise ValueError(f"{name}={value!r} is out of range; allowed: "
                     f"{bounds}{')' if high_open else ']'}")


def divisors(n: int) -> tuple[int, ...]:
  """The positive divisors of ``n``, ascending (MIMOConv's inputs-per-pass modes)."""
  return tuple(d for d in range(1, n + 1) if n % d == 0)


def validate(config: Config) -> None:
  """Raises a one-line ValueError for the first value the run cannot use (no compilation)."""
  _validate_run(config)
  _validate_data(config.data)
  _validate_opt(config.opt)
  choose("model.name", config.model.name, models.MODELS)
  choose("data.name", config.data.name, data_lib.DATASETS)
  choose("train.loss", config.train.loss, LOSSES)
  if config.model.name == "transformer":
    _validate_transformer(config.model, config.mimo)
  elif config.model.name in MUXES:
    _validate_datamux(config.model, config.mimo)
  elif config.model.name == "revmux":
    _validate_revmux(config.model, config.mimo)
  else:
    _validate_conv(config.model, config.mimo)
  _validate_phases(config)


def _validate_run(config: Config) -> None:
  train, evaluation = config.train, config.eval
  if (train.num_steps >= 0) == (train.num_epochs >= 0):
    raise ValueError("set exactly one of train.num_steps and train.num_epochs (the other -1); "
                     f"got {train.num_steps} and {train.num_epochs}")
  for name, value in (("train.batch_size", train.batch_size),
                      ("train.log_every_steps", train.log_every_steps),
                      ("train.max_nonfinite_steps", train.max_nonfinite_steps),
                      ("train.passes_per_epoch", train.passes_per_epoch),
                      ("train.steps_per_call", train.steps_per_call),
                      ("eval.every_steps", evaluation.every_steps),
                      ("eval.batch_size", evaluation.batch_size),
                      ("seeds.num", config.seeds.num), ("mesh.seed", config.mesh.seed),
                      ("checkpoint.every_steps", config.checkpoint.every_steps),
                      ("checkpoint.keep", config.checkpoint.keep)):
    in_range(name, value, 1)
  for split in evaluation.splits:
    choose("eval.splits", split, SPLITS)
  in_range("train.mixup_alpha", train.mixup_alpha, 0)
  in_range("train.grad_skip_factor", train.grad_skip_factor, 0)
  if train.mixup_alpha > 0:
    choose("data.name (train.mixup_alpha > 0 needs an image dataset)", config.data.name,
           data_lib.images.IMAGE_DATASETS)
  in_range("mimo.m", config.mimo.m, 1)
  in_range("mimo.n", config.mimo.n, 1)
  if config.seeds.num % config.mesh.seed:
    raise ValueError(f"seeds.num={config.seeds.num} must be divisible by "
                     f"mesh.seed={config.mesh.seed}")
  group = config.mimo.m * config.mimo.n  # inputs superposed together (1: none)
  for name, value in (("train.batch_size", train.batch_size),
                      ("eval.batch_size", evaluation.batch_size)):
    if value % group:
      raise ValueError(f"{name}={value} must be divisible by the superposition group "
                       f"mimo.m * mimo.n = {group}")


def _validate_data(data: DataConfig) -> None:
  in_range("data.seed", data.seed, 0)
  in_range("data.shuffle_seed", data.shuffle_seed, 0)
  in_range("data.validation_size", data.validation_size, 0)
  for name in ("seq_len", "max_length", "vocab_size", "input_seq_len", "min_length",
               "max_depth", "max_args", "contour_length", "num_train", "num_validation",
               "num_test"):  # lengths and counts, also where the task does not read them
    if getattr(data, name) is not None:
      in_range(f"data.{name}", getattr(data, name), 1)


def _validate_opt(opt: OptConfig) -> None:
  choose("opt.name", opt.name, optim.ALLOWED_OPTIMIZERS)
  choose("opt.schedule", opt.schedule, optim.ALLOWED_SCHEDULES)
  choose("opt.anneal", opt.anneal, optim.ALLOWED_ANNEAL)
  in_range("opt.warmup_fraction", opt.warmup_fraction, 0.0, 1.0)
  if not (opt.learning_rate > 0 and math.isfinite(opt.learning_rate)):
    raise ValueError(f"opt.learning_rate={opt.learning_rate} must be > 0; allowed: finite "
                     "numbers > 0")
  for name in ("b1", "b2"):
    in_range(f"opt.{name}", getattr(opt, name), 0.0, 1.0, high_open=True)
  for name in ("eps", "weight_decay", "init_lr", "min_lr", "grad_clip_norm"):
    in_range(f"opt.{name}", getattr(opt, name), 0.0)
  try:
    re.compile(opt.decay_exempt)
  except re.error as e:
    raise ValueError(f"opt.decay_exempt={opt.decay_exempt!r} is not a regular "
                     f"expression: {e}") from None


def _validate_transformer(model: ModelConfig, mimo: MimoConfig) -> None:
  choose("model.head", model.head, HEADS)
  choose("model.attention", model.attention, attention_lib.ATTENTIONS)
  choose("model.kernel", model.kernel, attention_lib.KERNELS)
  choose("model.init", model.init, attention_lib.INITS)
  choose("model.activation", model.activation or "relu", tuple(blocks.MLP_ACTIVATIONS))
  if model.head != "lm":
    choose("model.pooling", model.pooling, POOLINGS)
  for name in ("num_layers", "num_heads", "head_dim", "num_features", "dpfp_nu", "embed_dim",
               "mlp_dim", "max_len") + (("classifier_dim",) if model.head != "lm" else ()):
    in_range(f"model.{name}", getattr(model, name), 1)
  for name in ("dropout", "attention_dropout", "embed_dropout"):
    value = getattr(model, name)
    if value is not None:
      in_range(f"model.{name}", value, 0.0, 1.0, high_open=True)
  if model.tie_embeddings and model.head != "lm":
    raise ValueError(f"model.tie_embeddings=True needs model.head='lm', got {model.head!r}; "
                     "allowed otherwise: False")
  if model.exp_temperature <= 0 or (model.exp_temperature != 1 and (
      model.kernel != "exp" or model.attention == "softmax")):
    raise ValueError(
        f"model.exp_temperature: allowed values are numbers > 0 with model.kernel = 'exp' "
        f"and model.attention in ('favor', 'favor_s'), else 1; got {model.exp_temperature!r}"
        f" with kernel {model.kernel!r}, attention {model.attention!r}")
  in_range("mimo.mass_balance", mimo.mass_balance, 0.0)
  favor_s = model.attention == "favor_s"
  if not favor_s:  # the other mimo fields are not read without FAVOR+S
    if mimo.mass_balance:
      raise ValueError(f"mimo.mass_balance={mimo.mass_balance} needs model.attention = "
                       f"'favor_s', got {model.attention!r}; allowed otherwise: 0")
    return
  choose("mimo.variant", mimo.variant, VARIANTS)
  if mimo.variant == "att_mlp":
    for name, value in (("mimo.curriculum_fraction", mimo.curriculum_fraction),
                        ("mimo.mass_balance", mimo.mass_balance)):
      if value:
        raise ValueError(f"{name}={value} needs mimo.variant = 'att' (att_mlp has no "
                         "sub-grid warm-up and one summed normaliser, Eq. 68); allowed "
                         "with att_mlp: 0")


def _validate_datamux(model: ModelConfig, mimo: MimoConfig) -> None:
  """DataMUX: the mux of the model family, N = mimo.n instances, softmax attention."""
  if mimo.m != 1:
    raise ValueError(f"mimo.m={mimo.m} must be 1 for {model.name} (instances are mimo.n)")
  choose("mimo.mux", mimo.mux, MUXES[model.name])
  if not (mimo.mux_norm > 0 and math.isfinite(mimo.mux_norm)):
    raise ValueError(f"mimo.mux_norm={mimo.mux_norm!r} must be > 0; allowed: finite numbers > 0")
  in_range("mimo.mux_overlap", mimo.mux_overlap, 0.0, 1.0)
  choose("mimo.mux_maps", mimo.mux_maps, (1, 4, 8) if mimo.mux == "nonlinear" else (1,))
  if model.name != "datamux":
    return
  choose("model.attention (DataMUX keeps softmax attention)", model.attention, ("softmax",))
  choose("mimo.demux", mimo.demux, DEMUXES)
  choose("model.head", model.head, ("classifier", "lm"))
  choose("model.norm_position", model.norm_position, NORM_POSITIONS)
  if model.bidirectional and (model.head != "lm" or mimo.task_weight != 0):
    raise ValueError("model.bidirectional=True needs model.head='lm' and mimo.task_weight=0 "
                     "(a retrieval-only warm-up; next-token prediction must be causal); "
                     "allowed otherwise: False")
  if model.mask_padding and model.head != "classifier":
    raise ValueError(f"model.mask_padding=True needs model.head='classifier' (token 0 is a "
                     f"real token of the {model.head!r} tasks); allowed otherwise: False")
  _validate_transformer(model, mimo)


def _validate_revmux(model: ModelConfig, mimo: MimoConfig) -> None:
  """RevMUX: N = mimo.n instances around the frozen backbone at model.backbone."""
  if not model.backbone:
    raise ValueError("model.backbone is unset for model.name='revmux'; allowed: a Hugging "
                     "Face BERT checkpoint directory or a mimojax workdir")
  choose("model.revmux_variant", model.revmux_variant, REVMUX_VARIANTS)
  if mimo.m != 1:
    raise ValueError(f"mimo.m={mimo.m} must be 1 for revmux (instances are mimo.n)")
  if model.revmux_variant == "single" and mimo.n != 1:
    raise ValueError(f"mimo.n={mimo.n} must be 1 for model.revmux_variant='single' (one "
                     "input per row)")
  if model.prefill_layers is not None:
    in_range("model.prefill_layers", model.prefill_layers, 0)
  in_range("model.dropout", model.dropout, 0.0, 1.0, high_open=True)
  in_range("model.info_nce_weight", model.info_nce_weight, 0.0)
  if not (model.info_nce_temperature > 0 and math.isfinite(model.info_nce_temperature)):
    raise ValueError(f"model.info_nce_temperature={model.info_nce_temperature!r} must be > 0; "
                     "allowed: finite numbers > 0")


def _validate_conv(model: ModelConfig, mimo: MimoConfig) -> None:
  stage_sizes_for_depth(model.depth)
  defaults = CONV_DEFAULTS[model.name]
  pick = lambda name: defaults[name] if getattr(model, name) is None else getattr(model, name)
  in_range("model.width", model.width, 1)
  in_range("model.initial_width", pick("initial_width"), 1)
  choose("model.activation", pick("activation"), conv.ACTIVATIONS)
  choose("model.layout", pick("layout"), conv.LAYOUTS)
  in_range("model.isometry_gamma", pick("isometry_gamma"), 0.0)
  if model.name == "wide_isonet" and not pick("isometry_gamma") > 0:
    raise ValueError(f"model.isometry_gamma={pick('isometry_gamma')} must be > 0 for "
                     "wide_isonet (paper 1e-4)")
  choose("model.key_init", model.key_init, conv.KEY_INITS)
  in_range("mimo.key_mu", mimo.key_mu, 0.0)
  if mimo.m != 1:
    raise ValueError(f"mimo.m={mimo.m} must be 1 for {model.name} (channels are mimo.n)")
  if model.name != "mimoconv" and mimo.n != 1:
    raise ValueError(f"mimo.n={mimo.n} must be 1 for {model.name} (no superposition)")
  if mimo.inputs_per_pass is not None:
    choose("mimo.inputs_per_pass", mimo.inputs_per_pass, divisors(mimo.n))


def _validate_phases(config: Config) -> None:
  """The fields that make training change over time (``train.phases``)."""
  mimo, model = config.mimo, config.model
  in_range("mimo.curriculum_fraction", mimo.curriculum_fraction, 0.0, 1.0, high_open=True)
  in_range("mimo.curriculum_ramp_fraction", mimo.curriculum_ramp_fraction, 0.0,
           1.0 - mimo.curriculum_fraction)
  if mimo.curriculum_ramp_fraction > 0 and mimo.curriculum_fraction == 0:
    raise ValueError(f"mimo.curriculum_ramp_fraction={mimo.curriculum_ramp_fraction} needs a "
                     "warm-up to ramp from: set mimo.curriculum_fraction > 0 (or the ramp to 0)")
  if mimo.curriculum_fraction > 0 and model.attention != "favor_s":
    raise ValueError(f"mimo.curriculum_fraction={mimo.curriculum_fraction} needs "
                     f"model.attention = 'favor_s', got {model.attention!r}")
  in_range("mimo.exact_kernel_fraction", mimo.exact_kernel_fraction, 0.0, 1.0, high_open=True)
  if mimo.exact_kernel_fraction > 0 and (model.attention, model.kernel) != ("favor_s", "exp"):
    raise ValueError(
        f"mimo.exact_kernel_fraction={mimo.exact_kernel_fraction} needs model.attention = "
        f"'favor_s' and model.kernel = 'exp' (got {model.attention!r}, {model.kernel!r}); "
        "allowed otherwise: 0")
  in_range("mimo.slow_fraction", mimo.slow_fraction, 0.0, 1.0)
  in_range("mimo.retrieval_fraction", mimo.retrieval_fraction, 0.0, 1.0, high_open=True)
  in_range("mimo.task_weight", mimo.task_weight, 0.0)
  in_range("mimo.retrieval_weight", mimo.retrieval_weight, 0.0)
  retrieval = {"mimo.retrieval_fraction": mimo.retrieval_fraction,
               "mimo.retrieval_weight": mimo.retrieval_weight}
  for name, value in retrieval.items():
    if value and model.name != "datamux":
      raise ValueError(f"{name}={value} is for model.name='datamux' (the retrieval task), "
                       f"got {model.name!r}; allowed otherwise: 0")
  if not (mimo.task_weight > 0 or mimo.retrieval_weight > 0):
    raise ValueError("mimo.task_weight and mimo.retrieval_weight are both 0: nothing to "
                     "train after the warm-up; allowed: numbers >= 0, not both 0")
  modes = {"eval.inputs_per_pass": config.eval.inputs_per_pass}
  if mimo.slow_fraction > 0:
    modes["mimo.slow_inputs_per_pass"] = (mimo.slow_inputs_per_pass,)
  for name, values in modes.items():
    if values and model.name != "mimoconv":
      raise ValueError(f"{name} is for model.name='mimoconv', got {model.name!r}")
    for n in values:
      choose(name, n, divisors(mimo.n))  # the divisors of mimo.n
  if config.train.steps_per_call > 1 and mimo.slow_fraction > 0:
    raise ValueError(f"train.steps_per_call={config.train.steps_per_call} needs "
                     "mimo.slow_fraction=0 (slow-mode batches are drawn one step at a "
                     "time); set train.steps_per_call=1")


def check_data(config: Config, info) -> None:
  """The rules that need the data's ``DataInfo``: the model fits the task."""
  model = config.model
  if model.name not in ("transformer", "datamux"):
    if info.task_type != "classification":
      raise ValueError(f"model.name={model.name!r} needs a 'classification' task; "
                       f"data.name={config.data.name!r} gives {info.task_type!r}")
    return
  expected = HEAD_TASKS[model.head]
  if info.task_type != expected:
    raise ValueError(f"model.head={model.head!r} needs a {expected!r} task; "
                     f"data.name={config.data.name!r} gives {info.task_type!r}")
  if model.name == "datamux":
    extra, what = prefix_length(config.mimo.demux, config.mimo.n), "the demux prefix"
  else:
    extra, what = int(model.head != "lm" and model.pooling == "cls"), "CLS"
  needed = info.seq_len + extra
  if model.max_len < needed:
    raise ValueError(f"model.max_len={model.max_len} must be >= {needed} (data seq_len "
                     f"{info.seq_len}{f' + {what}' if extra else ''})")


def total_steps(config: Config, num_train_examples: int) -> int:
  """Training length in steps: ``train.num_steps``, or ``train.num_epochs`` whole epochs."""
  if config.train.num_epochs >= 0:
    return config.train.num_epochs * steps_per_epoch(config, num_train_examples)
  return config.train.num_steps


def steps_per_epoch(config: Config, num_train_examples: int) -> int:
  """Steps of one epoch: ``train.passes_per_epoch`` traversals of the train split in full
  batches (MIMOConv traverses the data N times per epoch, App. E.1)."""
  return config.train.passes_per_epoch * (num_train_examples // config.train.batch_size)
