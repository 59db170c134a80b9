"""The typed config boundary: ConfigDict / config.json -> Config, and every config rule."""

import dataclasses
import json
import os

import ml_collections
import pytest

from experiments import synthetic
from mimojax.configs.base import base_config
from mimojax.train import config as config_lib


def _study(**groups):
  """base_config() with a step budget and the given `group__field` values."""
  c = base_config()
  c.train.num_steps = 1
  for key, value in groups.items():
    group, field = key.split("__")
    c[group][field] = value
  return c


def test_base_config_holds_every_field_with_its_default():
  c = base_config()
  c.train.num_steps = 1  # the one field a study must set
  defaults = config_lib.Config()
  assert config_lib.from_dict(c) == dataclasses.replace(
      defaults, train=dataclasses.replace(defaults.train, num_steps=1))
  # None defaults are typed placeholders, so command-line overrides parse
  c.data.num_train = 7
  c.model.activation = "gelu"
  with pytest.raises(TypeError):
    c.data.num_train = "seven"


def test_from_dict_types_every_field_and_round_trips_through_json():
  c = _study(eval__splits=("test", "validation"), opt__learning_rate=1, model__dropout=0)
  typed = config_lib.from_dict(c)
  assert typed.eval.splits == ("test", "validation")
  assert isinstance(typed.opt.learning_rate, float) and isinstance(typed.model.dropout, float)
  assert dataclasses.is_dataclass(typed.data) and typed.data.num_train is None
  again = config_lib.from_dict(json.loads(json.dumps(config_lib.to_dict(typed))))
  assert again == typed
  with pytest.raises(dataclasses.FrozenInstanceError):
    typed.train.batch_size = 4  # type: ignore[misc]


def test_an_older_run_config_reads_with_defaults():
  """A config.json written before a field existed reads as that run ran: defaults fill in."""
  old = config_lib.to_dict(config_lib.from_dict(_study()))
  for group, field in (("mimo", "exact_kernel_fraction"), ("mimo", "mass_balance"),
                       ("model", "exp_temperature"), ("model", "tie_embeddings"),
                       ("model", "init"), ("opt", "decay_exempt")):
    del old[group][field]
  typed = config_lib.from_dict(old)
  assert (typed.mimo.exact_kernel_fraction, typed.mimo.mass_balance) == (0.0, 0.0)
  assert (typed.model.exp_temperature, typed.model.init) == (1.0, "torch")
  assert typed.opt.decay_exempt == config_lib.OptConfig().decay_exempt


def test_a_stored_config_json_reads_as_its_study():
  """``data/mimoformer_ar_smoke_config.json``, a run's ``config.json`` in the ConfigDict's
  own JSON form (``to_json_best_effort``: lists for tuples, placeholders as null), reads as
  the study that wrote it."""
  path = os.path.join(os.path.dirname(__file__), "data", "mimoformer_ar_smoke_config.json")
  with open(path) as f:
    stored = config_lib.from_dict(json.load(f))
  study = synthetic.get_config("model=mimoformer,task=ar,smoke")
  study.data.data_dir = stored.data.data_dir
  assert stored == config_lib.from_dict(study)


def test_unknown_and_mistyped_fields_are_one_line_errors():
  values = config_lib.to_dict(config_lib.from_dict(_study()))
  values["model"]["heads"] = 2
  with pytest.raises(ValueError, match=r"^model.heads is not a field of model; allowed: "):
    config_lib.from_dict(values)
  for key, value, match in [("train__batch_size", 3.5, "train.batch_size=3.5 must be an integer"),
                            ("model__redraw_features", 1, "must be true or false"),
                            ("opt__learning_rate", "fast", "must be a number")]:
    group, field = key.split("__")
    values = config_lib.to_dict(config_lib.from_dict(_study()))
    values[group][field] = value
    with pytest.raises(ValueError, match=match) as error:
      config_lib.from_dict(values)
    assert "\n" not in str(error.value)


# (group__field overrides, message): each rule of the boundary once.
RULES = [
    (dict(train__num_epochs=3), "set exactly one of train.num_steps and train.num_epochs"),
    (dict(train__batch_size=0), r"train.batch_size=0 is out of range; allowed: \[1, inf\]"),
    (dict(eval__splits=("dev",)), r"eval.splits='dev' is not allowed; choose from"),
    (dict(opt__name="lamb"), r"opt.name='lamb' is not allowed"),
    (dict(opt__warmup_fraction=1.5), "opt.warmup_fraction"),
    (dict(opt__learning_rate=0.0), "opt.learning_rate=0.0 must be > 0"),
    (dict(opt__decay_exempt="("), "opt.decay_exempt='\\(' is not a regular expression"),
    (dict(train__mixup_alpha=1.0), "needs an image dataset"),
    (dict(seeds__num=3, mesh__seed=2), "seeds.num=3 must be divisible by mesh.seed=2"),
    (dict(model__name="resnet"), "model.name='resnet' is not allowed"),
    (dict(data__name="imagenet"), "data.name='imagenet' is not allowed"),
    (dict(model__attention="linear"), "model.attention='linear' is not allowed"),
    (dict(model__kernel="cos", model__attention="favor"), "model.kernel='cos' is not allowed"),
    (dict(model__attention="favor_s", mimo__m=0), r"mimo.m=0 is out of range; allowed: \[1, inf\]"),
    (dict(model__attention="favor_s", mimo__variant="mlp"), "mimo.variant='mlp' is not allowed"),
    (dict(model__head="classifier", model__pooling="max"), "model.pooling='max'"),
    (dict(model__dropout=1.5), r"model.dropout=1.5 is out of range; allowed: \[0.0, 1.0\)"),
    (dict(model__attention_dropout=-0.1), "model.attention_dropout"),
    (dict(mimo__curriculum_fraction=1.0, model__attention="favor_s"),
     "mimo.curriculum_fraction=1.0 is out of range"),
    (dict(mimo__curriculum_ramp_fraction=0.2, model__attention="favor_s"),
     "needs a warm-up to ramp from"),
    (dict(mimo__curriculum_fraction=0.2), "needs model.attention = 'favor_s'"),
    (dict(model__attention="favor_s", mimo__variant="att_mlp", mimo__curriculum_fraction=0.2),
     "mimo.curriculum_fraction=0.2 needs mimo.variant = 'att'"),
    (dict(model__attention="favor_s", mimo__variant="att_mlp", mimo__mass_balance=0.1),
     "mimo.mass_balance=0.1 needs mimo.variant = 'att'"),
    (dict(model__attention="favor_s", mimo__mass_balance=-0.1), "mimo.mass_balance=-0.1"),
    (dict(model__attention="favor", mimo__mass_balance=0.1),
     "mimo.mass_balance=0.1 needs model.attention = 'favor_s'"),
    (dict(model__attention="favor_s", mimo__exact_kernel_fraction=0.2),
     "mimo.exact_kernel_fraction=0.2 needs model.attention = 'favor_s' and model.kernel"),
    (dict(model__attention="favor", model__kernel="exp", model__exp_temperature=0.0),
     "model.exp_temperature: allowed values are numbers > 0"),
    (dict(model__attention="favor", model__exp_temperature=2.0),
     "model.exp_temperature: allowed values are numbers > 0"),
    (dict(model__attention="softmax", model__kernel="exp", model__exp_temperature=2.0),
     "model.exp_temperature: allowed values are numbers > 0"),
    (dict(eval__inputs_per_pass=(1,)), "eval.inputs_per_pass is for model.name='mimoconv'"),
    (dict(model__name="mimoconv", mimo__n=4, eval__inputs_per_pass=(3,)),
     r"eval.inputs_per_pass=3 is not allowed; choose from \[1, 2, 4\]"),
    (dict(model__name="mimoconv", mimo__n=4, mimo__slow_fraction=0.2, train__steps_per_call=2),
     "train.steps_per_call=2 needs mimo.slow_fraction=0"),
    (dict(model__name="mimoconv", mimo__n=4, mimo__slow_fraction=0.2,
          mimo__slow_inputs_per_pass=3), "mimo.slow_inputs_per_pass"),
    (dict(model__name="mimoconv", mimo__n=2, train__batch_size=33),
     "train.batch_size=33 must be divisible by the superposition group"),
    (dict(model__name="wide_resnet", mimo__n=2), "mimo.n=2 must be 1 for wide_resnet"),
    (dict(model__name="mimoconv", mimo__m=2), "mimo.m=2 must be 1 for mimoconv"),
    (dict(opt__learning_rate=float("inf")), "opt.learning_rate=inf must be > 0"),
    (dict(opt__learning_rate=float("nan")), "opt.learning_rate=nan must be > 0"),
    (dict(opt__b1=1.5), r"opt.b1=1.5 is out of range; allowed: \[0.0, 1.0\)"),
    (dict(opt__name="sgd", opt__b1=-0.1), "opt.b1=-0.1 is out of range"),
    (dict(opt__b2=1.0), r"opt.b2=1.0 is out of range; allowed: \[0.0, 1.0\)"),
    (dict(opt__weight_decay=-0.1), "opt.weight_decay=-0.1 is out of range"),
    (dict(opt__eps=float("inf")), "opt.eps=inf is out of range"),
    (dict(opt__grad_clip_norm=float("nan")), "opt.grad_clip_norm=nan is out of range"),
    (dict(data__shuffle_seed=-1), r"data.shuffle_seed=-1 is out of range; allowed: \[0, inf\]"),
    (dict(data__seed=-1), "data.seed=-1 is out of range"),
    (dict(data__seq_len=-5), r"data.seq_len=-5 is out of range; allowed: \[1, inf\]"),
    (dict(data__num_train=0), "data.num_train=0 is out of range"),
    (dict(train__grad_skip_factor=float("inf")), "train.grad_skip_factor=inf is out of range"),
]


@pytest.mark.parametrize("overrides, match", RULES, ids=[m for _, m in RULES])
def test_each_rule_gives_a_one_line_error(overrides, match):
  with pytest.raises(ValueError, match=match) as error:
    config_lib.from_dict(_study(**overrides))
  assert "\n" not in str(error.value)


def test_valid_studies_pass():
  config_lib.from_dict(_study(model__attention="favor_s", model__kernel="exp",
                              mimo__m=2, mimo__n=2, mimo__curriculum_fraction=0.2,
                              mimo__exact_kernel_fraction=0.1, mimo__mass_balance=0.1,
                              model__exp_temperature=4.0))
  config_lib.from_dict(_study(model__name="mimoconv", mimo__n=4, mimo__slow_fraction=0.2,
                              eval__inputs_per_pass=(1, 2), data__name="digits",
                              train__mixup_alpha=1.0))


def test_divisors():
  assert config_lib.divisors(12) == (1, 2, 3, 4, 6, 12)
  assert config_lib.divisors(1) == (1,)


def test_config_dict_and_plain_dict_read_alike():
  c = _study(model__head="classifier")
  assert config_lib.from_dict(c) == config_lib.from_dict(ml_collections.ConfigDict(
      c.to_dict()).to_dict())
