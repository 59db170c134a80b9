"""RevMUX on a frozen mimojax ListOps Transformer: the same task and data as MIMOFormer's and
DataMUX's ListOps runs (experiments/favor_s_lra.py), N = 2 and 4 inputs per row.

    python -m mimojax.main --config=experiments/favor_s_lra.py:model=transformer,shape=cpu --workdir=runs/revmux/listops_transformer
    python -m mimojax.main --config=experiments/revmux_listops.py:n=2 --workdir=runs/revmux/listops_n2
    python -m mimojax.inference.regroup runs/revmux/listops_n2

The first run trains the backbone (2 layers, width 64, softmax attention, mean pooling,
ListOps 20 < length < 128; about 36 % test accuracy after 2000 steps); the RevMUX runs
freeze it with its classifier and train the adapters only (`backbone=<workdir>`, default
runs/revmux/listops_transformer; its data settings are reused).

Argument: `n=<2|4>,variant=<revmux|adapters|ora>[,prefill=l][,backbone=<workdir>]
[,steps=k][,lr=x][,smoke]`; `prefill` defaults to 1 of the backbone's 2 layers. AdamW, weight
decay 0.01 except biases and norm scales, lambda = 0.25 InfoNCE, dropout 0.1; lr 1e-3 for 1000
steps of batch 32 (the CPU budget; official BERT recipe: 2e-5 over several GLUE epochs).

Expected (test, mean over 10 regroupings; CPU, 2 cores): docs/results.md "RevMUX".
"""

import json
import os

from mimojax.configs import base

BACKBONE_WORKDIR = os.path.join("runs", "revmux", "listops_transformer")
VARIANTS = ("revmux", "adapters", "ora")


def _backbone_data(workdir: str) -> dict | None:
  """The ``data`` group of the backbone run's config.json, or None before it exists."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)["data"]


def get_config(arg=None):
  args = base.parse_arg(arg, n=2, variant="revmux", prefill=-1, backbone=BACKBONE_WORKDIR,
                        steps=1000, lr=1e-3, smoke=False)
  base.check_allowed("n", args.n, (2, 4))
  base.check_allowed("variant", args.variant, VARIANTS)
  c = base.base_config()
  data = _backbone_data(args.backbone)
  if data is None:  # the backbone run's data (favor_s_lra.py shape=cpu) before it exists
    c.data.name, c.data.variant = "listops", "tiny" if args.smoke else "L128"
  else:
    for field, value in data.items():
      c.data[field] = value
  c.model.name = "revmux"
  c.model.backbone = args.backbone
  c.model.revmux_variant = args.variant
  c.mimo.n = args.n
  if args.prefill >= 0:
    c.model.prefill_layers = args.prefill
  c.model.dropout = 0.1
  c.opt.name = "adamw"
  c.opt.learning_rate = args.lr
  c.opt.weight_decay = 0.01
  c.train.batch_size = 32
  c.train.num_steps = args.steps
  c.train.log_every_steps = 100
  c.eval.splits = ("test",)
  c.eval.batch_size = 160
  c.eval.every_steps = c.checkpoint.every_steps = args.steps
  c.checkpoint.keep = 1
  if args.smoke:
    c.train.num_steps = c.eval.every_steps = c.checkpoint.every_steps = 2
    c.train.log_every_steps = 1
    c.eval.batch_size = 32
  return c
