"""Every study config the experiments define passes the loop's validation (no data needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import datamux_glue, datamux_mnist, favor_s_lra, mimoconv_cifar, mimoconv_mnist
from experiments import revmux_listops, revmux_text
from experiments import synthetic
from mimojax.data import DataInfo
from mimojax.models import build_model
from mimojax.train import config as config_lib

LRA_ARGS = favor_s_lra.get_sweep() + [
    "", "smoke", "model=performer", "model=mimoformer,n=4,curriculum",
    "model=mimoformer,n=4,variant=att_mlp", "model=mimoformer,n=2,variant=att_mlp,smoke",
    "model=datamux", "model=datamux,n=4", "model=datamux,shape=deep", "model=datamux,smoke"]


@pytest.mark.parametrize("arg", LRA_ARGS)
def test_favor_s_lra_configs_validate(arg):
  config = config_lib.from_dict(favor_s_lra.get_config(arg or None))
  assert config_lib.total_steps(config, 10_000) == config.train.num_steps > 0


@pytest.mark.parametrize("task", list(datamux_glue.TASKS))
@pytest.mark.parametrize("n", datamux_glue.NS)
@pytest.mark.parametrize("stage", ["warmup", "task"])
def test_datamux_glue_configs_validate(task, n, stage):
  config = config_lib.from_dict(
      datamux_glue.get_config(f"task={task},n={n},stage={stage},tokenizer=t.json"))
  assert config.train.batch_size == datamux_glue.batch_per_instance(n) * n
  assert (config.mimo.task_weight, config.mimo.retrieval_weight) == (
      (0.0, 1.0) if stage == "warmup" else (0.9, 0.1))


def test_datamux_listops_adds_the_warm_up_to_the_task_steps():
  config = config_lib.from_dict(favor_s_lra.get_config("model=datamux,shape=deep"))
  assert config.train.num_steps == 40_000 and config.mimo.retrieval_fraction == 0.5
  assert (config.model.num_layers, config.model.embed_dim, config.model.mlp_dim) == (12, 120,
                                                                                    3072)


@pytest.mark.parametrize("model", list(synthetic.MODELS))
@pytest.mark.parametrize("task", list(synthetic.TASKS))
def test_synthetic_configs_validate(model, task):
  config = config_lib.from_dict(synthetic.get_config(f"model={model},task={task},seeds=5"))
  assert config_lib.total_steps(config, 5000) == 400 * 156  # 400 epochs of 156 full batches


@pytest.mark.parametrize("model", list(synthetic.MODELS))
@pytest.mark.parametrize("task", list(synthetic.TASKS))
def test_synthetic_recipe_paper_is_the_default(model, task):
  default = synthetic.get_config(f"model={model},task={task},seeds=5")
  paper = synthetic.get_config(f"model={model},task={task},seeds=5,recipe=paper")
  assert paper.to_dict() == default.to_dict()
  # The paper's setting: none of the options that recipe=best may turn on.
  assert default.model.kernel == {"mimoformer_dpfp": "dpfp"}.get(model, "relu")
  assert default.model.exp_temperature == 1.0
  assert default.mimo.mass_balance == 0.0
  assert default.mimo.exact_kernel_fraction == 0.0
  assert default.mimo.curriculum_fraction == 0.0
  assert default.opt.learning_rate == 5e-4


def test_synthetic_recipe_best_sets_the_four_recall_fields():
  paper = synthetic.get_config("model=mimoformer,task=ar,seeds=5").to_dict()
  best = synthetic.get_config("model=mimoformer,task=ar,seeds=5,recipe=best")
  config_lib.from_dict(best)
  assert best.model.kernel == "exp"
  assert best.model.exp_temperature == 4.0
  assert best.mimo.mass_balance == 0.1
  assert best.mimo.exact_kernel_fraction == 0.2
  changed = {(g, k) for g, group in paper.items() if isinstance(group, dict)
             for k, v in group.items() if best.to_dict()[g][k] != v}
  assert changed == {("model", "kernel"), ("model", "exp_temperature"),
                     ("mimo", "mass_balance"), ("mimo", "exact_kernel_fraction")}


@pytest.mark.parametrize("model, task", list(synthetic.BEST))
def test_synthetic_recipe_best_validates(model, task):
  config = synthetic.get_config(f"model={model},task={task},seeds=5,recipe=best")
  config_lib.from_dict(config)
  paper = synthetic.get_config(f"model={model},task={task},seeds=5")
  if not synthetic.BEST[(model, task)]:
    assert config.to_dict() == paper.to_dict()


@pytest.mark.parametrize("arg, allowed", [
    ("recipe=fast", r"\['paper', 'best'\]"),
    ("model=mimoformer_dpfp,task=ar,recipe=best", r"\['paper'\]"),
    ("model=performer,task=ih,recipe=best", r"\['paper'\]")])
def test_synthetic_bad_recipe_is_a_one_line_error(arg, allowed):
  message = r"^recipe='\w+' is not allowed; choose from " + allowed + "$"
  with pytest.raises(ValueError, match=message):
    synthetic.get_config(arg)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_curriculum_fraction_outside_zero_one_is_rejected(fraction):
  config = synthetic.get_config("model=mimoformer")
  config.mimo.curriculum_fraction = fraction
  with pytest.raises(ValueError, match=r"mimo.curriculum_fraction=.* is out of range; allowed: \[0.0, 1.0\)"):
    config_lib.from_dict(config)


@pytest.mark.parametrize("curriculum, ramp, message", [
    (0.4, -0.1, r"mimo.curriculum_ramp_fraction=-0.1 is out of range; allowed: \[0.0, 0.6\]"),
    (0.4, 0.7, r"mimo.curriculum_ramp_fraction=0.7 is out of range; allowed: \[0.0, 0.6\]"),
    (0.0, 0.2, r"mimo.curriculum_ramp_fraction=0.2 needs .* mimo.curriculum_fraction > 0"),
])
def test_curriculum_ramp_outside_its_range_is_rejected(curriculum, ramp, message):
  config = synthetic.get_config("model=mimoformer")
  config.mimo.curriculum_fraction = curriculum
  config.mimo.curriculum_ramp_fraction = ramp
  with pytest.raises(ValueError, match=message):
    config_lib.from_dict(config)


def test_favor_s_lra_tasks_are_named_settings():
  listops = favor_s_lra.TASKS["listops"]
  config = favor_s_lra.get_config("task=listops,model=mimoformer,n=4,curriculum,shape=deep")
  assert (config.model.num_layers, config.model.num_heads) == (listops.layers, listops.heads)
  assert config.train.num_steps == listops.steps == 20000
  assert config.opt.warmup_fraction == listops.warmup_steps / listops.steps
  assert config.mimo.curriculum_fraction == listops.curriculum_fraction == 0.15
  wide = favor_s_lra.get_config("task=image,shape=wide")
  assert (wide.model.num_layers, wide.model.num_heads) == (1, favor_s_lra.TASKS["image"].wide_heads)


def test_sweep_has_every_table2_row_once():
  rows = favor_s_lra.get_sweep()
  assert len(rows) == len(set(rows)) == 5 + 2 * 5 * 6


@pytest.mark.parametrize("arg", [
    "model=wide_resnet", "model=wide_isonet,dataset=cifar10", "model=mimoconv,n=2",
    "model=mimoconv,n=4,dynamic,paper_decay", "model=mimoconv,n=4,smoke"])
def test_mimoconv_cifar_configs_validate(arg):
  config_lib.from_dict(mimoconv_cifar.get_config(arg))


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("data", ["mnist", "mnist_5k"])
def test_mimoconv_mnist_configs_validate(n, data):
  config = mimoconv_mnist.get_config(f"n={n},data={data},seeds=3")
  config_lib.from_dict(config)
  assert config.eval.inputs_per_pass == tuple(d for d in (1, 2, 4, 8) if d < n and n % d == 0)


@pytest.mark.parametrize("arg, match", [
    ("model=wide_resnet,n=2", "no superposition"), ("model=mimoconv,n=1,dynamic", "n > 1"),
    ("n=3", r"n=3 is not allowed; choose from \[1, 2, 4\]"), ("dataset=imagenet", "dataset")])
def test_mimoconv_cifar_bad_arguments(arg, match):
  with pytest.raises(ValueError, match=match):
    mimoconv_cifar.get_config(arg)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("arg", ["", "mux=nonlinear,maps=1", "mux=kernel,learn", "mux=ortho",
                                 "mux=low_rank,data=mnist_5k", "model=mlp",
                                 "model=mlp,mux=hadamard", "model=mlp,mux=binary,data=digits",
                                 "smoke"])
def test_datamux_mnist_configs_validate(n, arg):
  config = config_lib.from_dict(datamux_mnist.get_config(f"n={n},{arg}"))
  assert config.train.batch_size == 32 * n or "smoke" in arg
  assert config.eval.batch_size % n == 0
  if "smoke" not in arg:
    # the notebook's epoch (train size / 32 steps for every N) and lr 0.1 on an N-sum loss
    assert config.opt.learning_rate == pytest.approx(0.1 * n)
    size = datamux_mnist.DATASETS[config.data.name]
    assert config_lib.total_steps(config, size) == 15 * n * (size // (32 * n))
    assert (config.opt.name, config.opt.b1, config.opt.weight_decay) == ("sgd", 0.0, 0.0)
    assert (config.train.loss, config.data.normalise, config.data.augment) == ("mse", False, False)
  assert config.mimo.learn_mux == ("learn" in arg or config.mimo.mux == "nonlinear")


@pytest.mark.parametrize("arg, match", [
    ("n=3", r"^n=3 is not allowed; choose from \[1, 2, 4, 8, 16\]$"),
    ("mux=hadamard", r"^mux='hadamard' is not allowed; choose from \['ortho', 'low_rank', "
                     r"'kernel', 'nonlinear'\]$"),
    ("model=mlp,mux=kernel", "^mux='kernel' is not allowed"),
    ("mux=kernel,maps=4", r"^maps=4 is not allowed; choose from \[1\]$"),
    ("maps=2", r"^maps=2 is not allowed; choose from \[1, 4, 8\]$")])
def test_datamux_mnist_bad_arguments(arg, match):
  with pytest.raises(ValueError, match=match):
    datamux_mnist.get_config(arg)


def _simple_lm_param_count(d=32, layers=2, inner=128, vocab=20, l_max=42):
  """Parameters of safari's SimpleLMHeadModel (tied head), counted from its layer list
  (HazyResearch/safari: src/models/sequence/simple_lm.py)."""
  embeddings = vocab * d + l_max * d
  attention = d * 3 * d + 3 * d + d * d + d  # Wqkv and out_proj, with biases
  mlp = d * inner + inner + inner * d + d
  norms = 2 * 2 * d
  return embeddings + layers * (attention + mlp + norms) + 2 * d  # + final LayerNorm


@pytest.mark.parametrize("layers, expected", [
    ("simple_lm", _simple_lm_param_count()),
    ("mimoformer", _simple_lm_param_count() + 32 * 20 + 20)])  # + an untied LM head
def test_synthetic_layers_match_safari_simple_lm_size(layers, expected):
  config = synthetic.get_config(f"model=performer,task=ar,layers={layers}")
  model = build_model(config, DataInfo(20, 20, 42, "lm", 5000))
  params = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((4, 42), jnp.int32), train=False))["params"]
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == expected


# ------------------------------------------------------------------ RevMUX


REVMUX_TEXT_ARGS = ["stage=head", "", "smoke", "stage=head,smoke", "variant=ora,n=16",
                    "task=sst2", "task=mrpc,stage=head", "task=rte,variant=adapters,n=4",
                    "task=qnli,prefill=0"] + revmux_text.get_sweep()


@pytest.mark.parametrize("arg", REVMUX_TEXT_ARGS)
def test_revmux_text_configs_validate(arg):
  arg = ",".join(a for a in (arg, "backbone=/path/to/bert") if a)
  config = config_lib.from_dict(revmux_text.get_config(arg))
  assert config.model.name == "revmux"
  head = "stage=head" in arg
  assert config.model.revmux_variant == "single" if head else config.mimo.n >= 2
  glue = "task=" in arg
  task = arg.split("task=")[1].split(",")[0] if glue else "stdlib_docs"
  assert config.model.backbone == ("/path/to/bert" if head else revmux_text.head_workdir(task))
  assert config.opt.learning_rate == (1e-2 if head else 2e-5 if glue else 1e-3)
  assert (config.opt.weight_decay, config.model.info_nce_weight) == (0.01, 0.25)


def test_revmux_text_sweep_covers_variants_n_and_depths():
  runs = revmux_text.get_sweep()
  assert len(runs) == len(set(runs)) == 3 * 4 + 6
  depths = {revmux_text.get_config(f"{r},backbone=/b").model.prefill_layers for r in runs}
  assert depths == {None, 0, 1, 2, 4, 5, 6}


@pytest.mark.parametrize("arg", ["n=2", "n=4,variant=ora", "n=2,variant=adapters,prefill=0",
                                 "n=4,smoke"])
def test_revmux_listops_configs_validate(arg):
  config = config_lib.from_dict(revmux_listops.get_config(arg))
  assert config.model.backbone == revmux_listops.BACKBONE_WORKDIR
  assert config.data.name == "listops"


@pytest.mark.parametrize("field, value, match", [
    ("backbone", None, "model.backbone is unset"),
    ("revmux_variant", "mux", "model.revmux_variant='mux' is not allowed"),
    ("prefill_layers", -1, "model.prefill_layers=-1 is out of range"),
    ("info_nce_weight", -0.5, "model.info_nce_weight=-0.5 is out of range"),
    ("info_nce_temperature", 0.0, "model.info_nce_temperature=0.0 must be > 0")])
def test_revmux_bad_fields_are_one_line_errors(field, value, match):
  config = revmux_text.get_config("backbone=/b")
  config.model[field] = value
  with pytest.raises(ValueError, match=match):
    config_lib.from_dict(config)
  single = revmux_text.get_config("backbone=/b,stage=head")
  single.mimo.n = 2
  with pytest.raises(ValueError, match="mimo.n=2 must be 1 for model.revmux_variant='single'"):
    config_lib.from_dict(single)
