"""The MIMOConv training recipe shared by `experiments/mimoconv_cifar.py` and
`experiments/mimoconv_mnist.py` (paper App. E.1 and the official code,
IBM/multiple-input-multiple-output-nets: `MIMOConv/src/train_superposition.py`, `optimizer.py`).

SGD with momentum under OneCycleLR (max lr 0.2, 30 % cosine warm-up from 0.008, cosine
down to 8e-7, momentum cycled 0.95 -> 0.85 -> 0.95), L2 weight decay 1e-5 on every
parameter but the PReLU/SReLU parameters (official code; `paper_decay=True` also exempts
the binding and unbinding parameters, as App. E.1 says), gradients clipped at norm 1e3,
mixup alpha 1 before superposition, batches of 128 * N images traversed N times per epoch,
batches skipped whose gradient norm reaches 10 x the previous epoch's mean, and dynamic
training with 20 % slow-mode (n = 1) batches. Every proper divisor n of N is evaluated as
`accuracy/inputs_per_pass=<n>` beside `accuracy` (n = N).
"""

from __future__ import annotations

import ml_collections

from mimojax.train.config import choose
from mimojax.train.config import divisors

CONV_MODELS = ("wide_resnet", "wide_isonet", "mimoconv")
OFFICIAL_DECAY_EXEMPT = r"(^|/)(slope|threshold)$"
PAPER_DECAY_EXEMPT = r"(^|/)(slope|threshold)$|^(bind|unbind)/"


def apply_recipe(c: ml_collections.ConfigDict, *, model: str, n: int, dynamic: bool,
                 epochs: int, train_size: int, evals_per_run: int = 10,
                 paper_decay: bool = False, batch_per_channel: int = 128
                 ) -> ml_collections.ConfigDict:
  """Sets `c`'s model, mimo, opt, train and eval groups to the recipe for `model` with N = `n`
  superposition channels (`n` must be 1 for the baselines) trained for `epochs` epochs on
  `train_size` images, evaluated `evals_per_run` times. Batches hold `batch_per_channel` * N
  images (the paper: 128, i.e. 128 superpositions per step)."""
  choose("model", model, CONV_MODELS)
  if model != "mimoconv" and (n != 1 or dynamic):
    raise ValueError(f"model={model} has no superposition: n must be 1 and dynamic off, "
                     f"got n={n}, dynamic={dynamic}")
  if dynamic and n == 1:
    raise ValueError("dynamic training needs n > 1 (slow mode is n = 1)")
  c.model.name = model
  c.mimo.n = n
  c.mimo.slow_fraction = 0.2 if dynamic else 0.0
  c.mimo.slow_inputs_per_pass = 1
  c.eval.inputs_per_pass = divisors(n)[:-1]

  c.opt.name = "sgd"
  c.opt.learning_rate = 0.2
  c.opt.schedule, c.opt.anneal, c.opt.warmup_fraction = "one_cycle", "cos", 0.3
  c.opt.cycle_momentum = True
  c.opt.weight_decay = 1e-5
  c.opt.decay_exempt = PAPER_DECAY_EXEMPT if paper_decay else OFFICIAL_DECAY_EXEMPT
  c.opt.grad_clip_norm = 1e3

  batch = batch_per_channel * n
  c.train.batch_size = batch
  c.train.passes_per_epoch = n
  c.train.num_steps = -1
  c.train.num_epochs = epochs
  c.train.mixup_alpha = 1.0
  c.train.grad_skip_factor = 10.0
  epoch_steps = n * (train_size // batch)
  c.train.log_every_steps = epoch_steps
  c.eval.batch_size = batch
  total = epochs * epoch_steps
  c.eval.every_steps = max(total // evals_per_run, 1)
  c.checkpoint.every_steps = epoch_steps
  return c


def apply_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a recipe config to a seconds-long CPU run on the offline sklearn digits."""
  n = c.mimo.n
  c.data.name = "digits"
  c.data.validation_size = 0
  c.model.depth, c.model.width, c.model.initial_width = 10, 1, 1
  c.train.batch_size = c.eval.batch_size = 8 * n
  c.train.num_epochs = -1
  c.train.num_steps = 6
  c.train.log_every_steps = 3
  c.eval.splits = ("test",)
  c.eval.every_steps = c.checkpoint.every_steps = 3
  return c
