"""Paper Table 1: WideResNet-28-10, WideIsoNet-28-10 and MIMOConv-28-10 on CIFAR-10/100.

    python -m mimojax.main --config=experiments/mimoconv_cifar.py:model=mimoconv,n=4,dataset=cifar100
    python -m mimojax.main --config=experiments/mimoconv_cifar.py:model=mimoconv,n=4,dynamic
    python -m mimojax.main --config=experiments/mimoconv_cifar.py:model=wide_resnet
    python -m mimojax.main --config=experiments/mimoconv_cifar.py:model=wide_isonet,seeds=5
    python -m mimojax.main --config=experiments/mimoconv_cifar.py:model=mimoconv,n=2,smoke

Argument: `model=<wide_resnet|wide_isonet|mimoconv>,n=<1|2|4>[,dynamic][,dataset=<cifar10|
cifar100>][,epochs=e][,seeds=k][,paper_decay][,smoke]`. CIFAR must be prepared as tfds
array_record in `data.data_dir` (the error says how); `smoke` trains a narrow network on the
offline sklearn digits for a few steps instead.

Networks (App. E; IBM/multiple-input-multiple-output-nets: MIMOConv/src/models/): WRN-28-10
in the official layout (stem conv -> BN -> ReLU, 1x1-conv + BN projections), WideIsoNet =
the same with ReLU and the isometry regulariser (gamma 1e-4); MIMOConv-28-10 with PReLU
(slope 0.5), initial width 4, PWHRR binding of N channels, MBAT unbinding, isometry gamma
1e-4 and key orthonormality mu 0.1. `dynamic` trains MIMOConv N = 4 with 20 % slow-mode
(n = 1) batches and reports n = 1, 2, 4.
Training: `mimojax.configs.mimoconv` (SGD, OneCycle 0.2, mixup 1, batch 128 N, N passes per
epoch, grad-norm skipping); 1200 epochs for MIMOConv and WideIsoNet, 200 for WideResNet;
the final epoch's test accuracy is the result (no best-epoch selection). BatchNorm
evaluates with running statistics; `--config.model.bn_eval_batch_stats=True` reproduces
the official code's batch-statistics evaluation (docs/fidelity.md).

Paper Table 1 (test accuracy %, mean over 5 seeds; N = 1 / 2 / 4):
  CIFAR10:  WideResNet 96.75, WideIsoNet 97.32, MIMOConv static 97.49 / 96.93 / 95.58,
            dynamic 97.13 / 96.41 / 95.43.
  CIFAR100: WideResNet 81.91, WideIsoNet 83.00, MIMOConv static 83.19 / 82.30 / 78.44,
            dynamic 82.52 / 80.48 / 78.19.
These need an accelerator (the paper: 11 GPU-hours per 1200-epoch run on an A100).
"""

from mimojax.configs import base
from mimojax.configs import mimoconv

DATASETS = {"cifar10": 50_000, "cifar100": 50_000}  # train images (official -f: all 50k)
EPOCHS = {"wide_resnet": 200, "wide_isonet": 1200, "mimoconv": 1200}


def get_config(arg=None):
  args = base.parse_arg(arg, model="mimoconv", n=1, dynamic=False, dataset="cifar100",
                        epochs=0, seeds=1, paper_decay=False, smoke=False)
  base.check_allowed("model", args.model, mimoconv.CONV_MODELS)
  base.check_allowed("n", args.n, (1, 2, 4))
  base.check_allowed("dataset", args.dataset, DATASETS)
  c = base.base_config()
  c.data.name = args.dataset
  c.model.depth, c.model.width = 28, 10
  c.model.layout = "official"
  mimoconv.apply_recipe(c, model=args.model, n=args.n, dynamic=args.dynamic,
                        epochs=args.epochs or EPOCHS[args.model],
                        train_size=DATASETS[args.dataset], paper_decay=args.paper_decay)
  c.seeds.num = args.seeds
  if args.smoke:
    mimoconv.apply_smoke(c)
  return c
