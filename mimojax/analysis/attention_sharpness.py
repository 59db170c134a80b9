"""How sharply can one causal attention head attend to the previous token? FAVOR+ vs FAVOR+S.

    python -m mimojax.analysis.attention_sharpness [--grids=1x1,1x2,2x1,2x2] [--steps=8000]
        [--kernel=relu|exp|dpfp] [--dim=32] [--out=benchmarks/results/attention_sharpness.json]

Associative recall needs a previous-token head (each value position must learn which key
precedes it) before a second layer can match the query key. This probe isolates that head
at the Table 3 size (vocabulary 20, E = D = 32, R = 256, one head, L = 31 so one-hot
position values fit in D; ``--dim`` sets E = D): token + learned position embeddings ->
LayerNorm -> W_q, W_k (with bias), then the causal FAVOR+S attention of the MIMOFormer layer
(``nn.attention.attention_op``: its q/k scaling, ``ops.favor_s_attention``) on an M x N grid
of independent random sequences; M = N = 1 is FAVOR+ (with a bipolar key). Adam minimises
-log w_{i,i-1}, the weight each channel's query i puts on key i - 1 (Eq. 19, 67). The
weights are read from the attention output itself (``attention_focus.attention_rows``):
channel (m, n) gets the one-hot position values e_j and every other channel zero values, so
its output row is exactly its attention row (no cross-talk). The table reports, on a fresh
batch, the mean weight on the previous token and the share of queries that put more than
half their weight there.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mimojax.analysis import attention_focus
from mimojax.analysis import output
from mimojax.nn.attention import AttentionSpec
from mimojax.nn.attention import attention_op
from mimojax.ops import attention
from mimojax.ops import binding

VOCAB, LENGTH, DIM, FEATURES, BATCH = 20, 31, 32, 256, 8


def init_params(rng, dim=DIM):
  emb, pos, wq, wk = jax.random.split(rng, 4)
  normal = lambda r, shape: 0.02 * jax.random.normal(r, shape)  # GPT-2 / SimpleLM init
  return {"token": normal(emb, (VOCAB, dim)), "position": normal(pos, (LENGTH, dim)),
          "wq": normal(wq, (dim, dim)), "wk": normal(wk, (dim, dim)),
          "bq": jnp.zeros(dim), "bk": jnp.zeros(dim), "scale": jnp.ones(dim),
          "shift": jnp.zeros(dim)}


def attention_rows(params, tokens, keys, kernel, projection=None):
  """Causal attention rows ``(B, M, N, L, L)`` of every channel for tokens ``(B, M, N, L)``:
  the one-head FAVOR+S layer with the feature map ``kernel``, binding ``keys`` (M, N, D) and
  the (R, D) ``projection`` of relu/exp features."""
  m, n, dim = keys.shape
  x = params["token"][tokens] + params["position"]
  x = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5)
  x = x * params["scale"] + params["shift"]
  flat = lambda y: y.reshape((-1, LENGTH, 1, dim))  # (B*M*N, L, H=1, D), grid order
  q, k = flat(x @ params["wq"] + params["bq"]), flat(x @ params["wk"] + params["bk"])
  spec = AttentionSpec(num_heads=1, head_dim=dim, attention="favor_s", kernel=kernel,
                       causal=True, m=m, n=n)
  attend = attention_op(spec, projection, keys)

  rows = attention_focus.attention_rows(q, k, attend, m, n)  # (B*M*N, 1, L, L)
  return rows[:, 0].reshape(tokens.shape + (LENGTH,))


def previous_weight(rows):
  idx = jnp.arange(1, LENGTH)
  return rows[..., idx, idx - 1]


def probe(m: int, n: int, steps: int, kernel: str, dim: int = DIM, seed: int = 0) -> dict:
  rng = jax.random.key(seed)
  params = init_params(jax.random.fold_in(rng, 0), dim)
  keys = binding.rademacher_keys(jax.random.fold_in(rng, 1), (m, n, dim))
  projection = attention.gaussian_orthogonal_matrix(jax.random.fold_in(rng, 2), FEATURES, dim)
  rows_fn = functools.partial(attention_rows, keys=keys, kernel=kernel, projection=projection)
  loss_fn = lambda p, t: -jnp.mean(jnp.log(previous_weight(rows_fn(p, t)) + 1e-9))
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, tokens):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  data = np.random.default_rng(seed)
  draw = lambda: jnp.asarray(data.integers(0, VOCAB, (BATCH, m, n, LENGTH)))
  opt_state = optimizer.init(params)
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state, draw())
  weights = np.asarray(previous_weight(jax.jit(rows_fn)(params, draw())))
  return {"grid": f"{m}x{n}", "kernel": kernel, "dim": dim, "steps": steps,
          "final_loss": float(loss),
          "mean_previous_weight": float(weights.mean()),
          "share_above_half": float((weights > 0.5).mean())}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--grids", default="1x1,1x2,2x1,2x2")
  parser.add_argument("--steps", type=int, default=8000)
  parser.add_argument("--kernel", default="relu", choices=("relu", "exp", "dpfp"))
  parser.add_argument("--dim", type=int, default=DIM, help="E = D of the head (>= 31)")
  parser.add_argument("--out", default="benchmarks/results/attention_sharpness.json")
  args = parser.parse_args()
  grids = []
  for grid in args.grids.split(","):
    m, _, n = grid.partition("x")
    if not (m.isdigit() and n.isdigit() and int(m) > 0 and int(n) > 0):
      raise SystemExit(f"--grids entries must look like MxN with positive ints, got {grid!r}")
    grids.append((int(m), int(n)))
  if args.dim < LENGTH:
    raise SystemExit(f"--dim must be at least {LENGTH} (one-hot position values), got {args.dim}")
  results = [probe(m, n, args.steps, args.kernel, args.dim) for m, n in grids]
  print("| grid M x N | kernel | D | mean weight on previous token | share of queries > 0.5 |")
  print("|---|---|---|---|---|")
  for r in results:
    print(f"| {r['grid']} | {r['kernel']} | {r['dim']} | {r['mean_previous_weight']:.3f} | "
          f"{r['share_above_half']:.2f} |")
  output.write_json(args.out, {
      "results": results,
      "command": "python -m mimojax.analysis.attention_sharpness "
                 f"--grids={args.grids} --steps={args.steps} --kernel={args.kernel} "
                 f"--dim={args.dim}",
      **output.environment()})


if __name__ == "__main__":
  main()
