"""Where does a trained synthetic-task LM attend? Attention rows of every layer, read out.

    python -m mimojax.analysis.attention_focus --workdir=<run> [--split=test] [--subgrid]
        [--out=FILE]

For associative recall and induction head the answer to the last token is the token that
followed an earlier copy of it, so a two-layer model solves them with a previous-token head
(each position i attends to i - 1) and a matching head (the last query attends to the
positions j whose preceding token equals the last token, the "answer positions"). For every
layer of every seed of a finished run (``--workdir`` of ``mimojax.main``, latest checkpoint),
this prints, over the split:

* ``prev``: the weight an answer position j puts on position j - 1 (the previous-token head
  must make j hold the token before it), next to ``prev_uniform``, 1 / (j + 1);
* ``same``: the weight a position puts on earlier copies of its own token, next to
  ``same_uniform``: a layer 0 that matches tokens in place of a previous-token head (the
  matching role in the wrong layer) shows here;
* ``match``: the weight the last query puts on the answer positions, next to
  ``match_uniform``, the share of the positions they hold (uniform attention's weight), and
  ``match_odds``, how many times more weight an answer position gets than another one;
* the model's last-token accuracy on the split (``--split=train`` reads the training
  sequences: train against test accuracy tells underfitting from overfitting), and for a
  FAVOR+S model each statistic in each channel (m, n) of the grid: ``channel_accuracy``,
  ``channel_prev`` and ``channel_match_odds`` (row-major), and ``channel_mass_ratio``, the
  median over positions of :func:`mass_ratios` (how many times more kernel mass the other
  key bundles hold than the channel's own, from the normalisers the layer sows). A channel
  can fail, at chance, while the others solve the task.

Averages run over heads and over the sequences that have an answer position. ``--subgrid``
reads the model as the App. F.1 warm-up runs it (``models.Phase(subgrid=True)``), on the
M/2 x N/2 sub-grid of its keys (a copy of a run's checkpoint from the warm-up shows what the
warm-up has learnt).

Everything is read from one forward pass of the model: each attention layer sows the
projected q and k that its attention takes and, for FAVOR+S, the normalisers B^(m,n)
(Eq. 62/63). The row of channel (m, n) of FAVOR+S is the weight its query puts on its own
values, ``phi(q~_n,i) . phi(k~_m,j) / B^(m,n)_i`` (Eq. 19, 67): it is read out of the layer's
own ``nn.attention.attention_op`` (scaling, constants, sub-grid and exact kernel included) by
giving that channel one-hot position values and every other channel zero values; the rest of
a FAVOR+S output is cross-talk. Softmax and FAVOR+ rows are read the same way. MIMOFormer
runs of the att.+MLP variant (Eq. 68) leave the attention outputs bound and are not read.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from mimojax import data as data_lib
from mimojax.analysis import output
from mimojax.nn.attention import CONSTANTS
from mimojax.nn.attention import attention_op
from mimojax.ops import channels
from mimojax.train import checkpoint
from mimojax.train import config as config_lib
from mimojax.train import loop


def _one_hot_chunks(shape, length: int):
  """One-hot position values ``(B, L, H, W)`` of width W = shape[-1], one array per block of
  W positions: block c marks position j with e_{j - cW} (zero outside the block)."""
  width = shape[-1]
  for start in range(0, length, width):
    eye = jnp.eye(length, width, k=-start)  # row j: e_{j - start} when in the block
    yield start, jnp.broadcast_to(eye[:, None, :], shape)


def grid_channel(batch: int, m: int, n: int):
  """Row ``m``, column ``n`` and channel ``m * N + n`` of each of ``batch`` examples in its
  M x N grid, in the layout of ``channels.to_grid``; three ``(batch,)`` int arrays."""
  shape = (batch // (m * n), m, n)
  row = channels.from_grid(jnp.broadcast_to(jnp.arange(m)[:, None], shape))
  col = channels.from_grid(jnp.broadcast_to(jnp.arange(n), shape))
  return row, col, row * n + col


def attention_rows(q, k, attend, m: int = 1, n: int = 1):
  """Attention rows ``(B, H, L, L)`` of ``attend(q, k, v) -> (B, L, H, W)``.

  ``q, k`` (B, L, H, D): the projected queries and keys that ``attend`` takes, e.g. a layer's
  sown ``q``, ``k`` and its ``nn.attention.attention_op`` (which applies the module's
  scaling). ``m * n > 1``: ``attend`` works on batches of M x N grids (example
  ``(g*M + m)*N + n``), and the row of each channel is its weight on its own values, read
  with values in that channel only.
  """
  batch, length = q.shape[:2]
  rows = jnp.zeros((batch, q.shape[2], length, length), q.dtype)
  channel = grid_channel(batch, m, n)[2]
  for start, one_hot in _one_hot_chunks(q.shape, length):
    block = []
    for c in range(m * n):
      only = (channel == c).astype(q.dtype)[:, None, None, None]
      out = attend(q, k, one_hot * only)  # (B, L, H, W): rows of channel c's examples
      block.append(out * only)
    out = jnp.moveaxis(sum(block), 1, 2)  # (B, H, L, W)
    width = min(out.shape[-1], length - start)
    rows = rows.at[..., start:start + width].set(out[..., :width])
  return rows


def mass_ratios(normalisers):
  """Per example and query position ``(B, L)``: ``sum_{m' != m} B^(m',n)_i / B^(m,n)_i``,
  the kernel mass of the other key bundles that the query bundle ``q~_n`` of the example's
  channel (m, n) reads, over its own bundle's mass, the normaliser of Eq. 67 (mean over
  heads). The output of channel (m, n) is ``S_n * a[m,n] / B^(m,n)`` and ``S_n`` carries the
  values of every bundle, so a ratio far above 1 buries the channel's own values under the
  others'. ``normalisers`` ``(B/(MN), N, L, H, M)``: a FAVOR+S layer's sown ``normalisers``
  (``nn.attention.normalisers_op``); only their ratios matter.
  """
  own = jnp.moveaxis(normalisers, -1, 1)  # (G, M, N, L, H): batch index (g*M + m)*N + n
  ratios = (jnp.sum(normalisers, axis=-1)[:, None] - own) / own
  return ratios.reshape((-1,) + ratios.shape[3:]).mean(axis=-1)


def focus_stats(rows, tokens):
  """Sums over the sequences of rows ``(B, H, L, L)`` that have an answer position.

  Per sequence (mean over heads and its answer positions j): ``prev``, the weight j puts on
  j - 1, and ``prev_uniform``, 1 / (j + 1), what causal uniform attention gives; ``match``,
  the weight the last query puts on all answer positions, and ``match_uniform``, their share
  of the L positions; ``same``, the weight a position puts on earlier copies of its own token
  (mean over the positions that have one), and ``same_uniform``, what uniform attention
  gives. ``with_answer`` counts the sequences, ``sequences`` all of them.
  """
  length = tokens.shape[1]
  # answer positions j in [1, L - 2]: the token before j equals the last token
  answer = jnp.zeros(tokens.shape, bool).at[:, 1:length - 1].set(
      tokens[:, :length - 2] == tokens[:, -1:])
  count = answer.sum(axis=1)
  has = count > 0
  per_answer = lambda x: jnp.where(has, (x * answer).sum(-1) / jnp.maximum(count, 1), 0).sum()
  idx = jnp.arange(1, length)
  previous = jnp.zeros(tokens.shape).at[:, 1:].set(rows[..., idx, idx - 1].mean(axis=1))
  match = (rows[:, :, -1, :] * answer[:, None, :]).sum(-1).mean(axis=1)
  # earlier copies of each query's own token: (B, Lq, Lk), j < i
  copies = (tokens[:, :, None] == tokens[:, None, :]) & jnp.tri(length, k=-1, dtype=bool)
  repeats = copies.sum(-1)
  per_repeat = lambda x: jnp.where(
      has, (x * (repeats > 0)).sum(-1) / jnp.maximum((repeats > 0).sum(-1), 1), 0).sum()
  return {"prev": float(per_answer(previous)),
          "prev_uniform": float(per_answer(1.0 / (jnp.arange(length) + 1.0))),
          "match": float(jnp.where(has, match, 0).sum()),
          "match_uniform": float(jnp.where(has, count / length, 0).sum()),
          "same": float(per_repeat((rows.mean(axis=1) * copies).sum(-1))),
          "same_uniform": float(per_repeat(repeats / (jnp.arange(length) + 1.0))),
          "with_answer": int(has.sum()), "sequences": int(tokens.shape[0])}


def odds_ratio(weight: float, share: float) -> float:
  """How many times more weight an answer position gets than another position, on average:
  the odds of ``weight`` over the odds of uniform attention's ``share``. Comparable to the
  kernel ratios of ``analysis.kernel_contrast`` (e.g. 3.87 for FAVOR+ against nine simplex
  keys)."""
  return (weight / (1 - weight)) / (share / (1 - share))


def read_out(model, variables, tokens):
  """Logits ``(B, L, V)``, every layer's attention rows ``(B, H, L, L)`` and its
  :func:`mass_ratios` ``(B, L)`` (zero without a grid of M > 1) for ``tokens``.

  One forward pass of ``model`` (a ``Transformer``) with the "intermediates" collection
  mutable: each layer's sown q and k go through that layer's own ``attention_op``, its sown
  normalisers into :func:`mass_ratios`."""
  if model.variant != "att":
    raise ValueError(f"the read-out needs the att. variant (mimo.variant = 'att'), got "
                     f"{model.variant!r}: att.+MLP layers (Eq. 68) leave their outputs bound")
  logits, sown = model.apply(variables, tokens, train=False, mutable=["intermediates"])
  spec = model.layer_spec()
  m, n = spec.grid
  rows, ratios = [], []
  for i in range(model.num_layers):
    layer = sown["intermediates"]["encoder"][f"layer_{i}"]["attention"]
    q, k = layer["q"][0], layer["k"][0]
    constants = variables.get(CONSTANTS, {}).get("encoder", {}).get(f"layer_{i}", {})
    constants = constants.get("attention", {})
    attend = attention_op(spec, constants.get("projection"), constants.get("binding_keys"))
    rows.append(attention_rows(q, k, attend, m, n))
    ratios.append(mass_ratios(layer["normalisers"][0]) if m > 1
                  else jnp.zeros(q.shape[:2], q.dtype))
  return logits, rows, ratios


def restore_run(config, workdir: str):
  """``(trainer, state)`` of the language-model run in ``workdir``: its ``Trainer`` and the
  host copy of its latest checkpoint's state (every seed)."""
  trainer = loop.Trainer(config, workdir)
  if trainer.info.task_type != "lm":
    raise ValueError(f"--workdir must hold a language-model run (model.head = 'lm'), got "
                     f"task type {trainer.info.task_type!r}")
  state = trainer.init_state()
  mngr = checkpoint.manager(workdir, config.checkpoint.keep)
  restored = checkpoint.restore_latest(mngr, checkpoint.abstract_like(state))
  mngr.close()
  if restored is None:
    raise ValueError(f"--workdir {workdir} has no checkpoint")
  return trainer, jax.device_get(restored[0])


def _summary(stats: list[dict]) -> dict:
  """The ``focus_stats`` sums of several batches as per-sequence means, with ``match_odds``
  and ``with_answer`` (the share of sequences that have an answer position)."""
  total = {key: sum(s[key] for s in stats) for key in stats[0]}
  with_answer = max(total.pop("with_answer"), 1)
  summary = {"with_answer": with_answer / total.pop("sequences")}
  summary.update({key: value / with_answer for key, value in total.items()})
  summary["match_odds"] = odds_ratio(summary["match"], summary["match_uniform"])
  return summary


def analyse(workdir: str, split: str = "test", subgrid: bool = False) -> list[dict]:
  """One record per (seed, layer) of the run in ``workdir`` (latest checkpoint), read on the
  warm-up sub-grid when ``subgrid``."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = config_lib.from_dict(json.load(f))
  if subgrid and config.model.attention != "favor_s":
    raise ValueError(f"--subgrid needs a FAVOR+S run (model.attention = 'favor_s'), got "
                     f"{config.model.attention!r}")
  trainer, state = restore_run(config, workdir)
  model = trainer.model.clone(phase=dataclasses.replace(trainer.model.phase, subgrid=subgrid))
  read = jax.jit(functools.partial(read_out, model))  # compiled once for all seeds
  source = data_lib.load_split(config.data, split)[0]
  layers = [f"layer_{i}" for i in range(model.num_layers)]
  m, n = model.layer_spec().grid
  channel_of = lambda size: np.asarray(grid_channel(size, m, n)[2])

  records = []
  for seed in range(config.seeds.num):
    variables = {"params": jax.tree.map(lambda x: x[seed], state.params),
                 **jax.tree.map(lambda x: x[seed], state.model_state)}
    totals = {(layer, c): [] for layer in layers for c in range(m * n)}
    ratios = {(layer, c): [] for layer in layers for c in range(m * n)}
    correct, count = np.zeros(m * n), np.zeros(m * n)
    for batch in data_lib.eval_batches(source, config.eval.batch_size):
      valid = np.asarray(batch["valid"], bool)
      tokens = jnp.asarray(batch["inputs"])
      logits, rows, layer_ratios = read(variables, tokens)
      hits = np.asarray(jnp.argmax(logits[:, -1], -1) == batch["targets"][:, -1])
      channel = channel_of(len(valid))
      for c in range(m * n):
        idx = np.flatnonzero(valid & (channel == c))
        correct[c] += hits[idx].sum()
        count[c] += len(idx)
        for layer, layer_rows, ratio in zip(layers, rows, layer_ratios):
          totals[layer, c].append(focus_stats(layer_rows[idx], tokens[idx]))
          ratios[layer, c].append(np.asarray(ratio[idx]).ravel())
    for layer in layers:
      per_channel = [_summary(totals[layer, c]) for c in range(m * n)]
      record = {"seed": seed, "layer": layer, "accuracy": correct.sum() / count.sum(),
                **_summary(sum((totals[layer, c] for c in range(m * n)), [])),
                "channel_accuracy": (correct / count).tolist()}
      for key in ("prev", "match_odds"):
        record[f"channel_{key}"] = [r[key] for r in per_channel]
      record["channel_mass_ratio"] = [float(np.median(np.concatenate(ratios[layer, c])))
                                      for c in range(m * n)]
      records.append(record)
  return records


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--subgrid", action="store_true",
                      help="read the model on its App. F.1 warm-up sub-grid")
  parser.add_argument("--out", default=None, help="JSON path (default <workdir>/attention_focus"
                      "[_subgrid].json)")
  args = parser.parse_args()
  records = analyse(args.workdir, args.split, args.subgrid)
  columns = ("prev", "prev_uniform", "same", "same_uniform", "match", "match_uniform",
             "match_odds", "accuracy")
  print(f"{'seed':>4} {'layer':>8} " + " ".join(f"{c:>13}" for c in columns))
  for r in records:
    print(f"{r['seed']:>4} {r['layer']:>8} " + " ".join(f"{r[c]:13.3f}" for c in columns))
  if len(records[0]["channel_accuracy"]) > 1:
    print("per channel (m, n), row-major:")
    for r in records:
      print(f"{r['seed']:>4} {r['layer']:>8} " + "  ".join(
          f"acc {a:.3f} prev {p:.3f} odds {o:5.1f} mass {x:6.2f}" for a, p, o, x in
          zip(r["channel_accuracy"], r["channel_prev"], r["channel_match_odds"],
              r["channel_mass_ratio"])))
  name = "attention_focus_subgrid.json" if args.subgrid else "attention_focus.json"
  output.write_json(args.out or os.path.join(args.workdir, name),
                    {"workdir": args.workdir, "split": args.split, "subgrid": args.subgrid,
                     "records": records}, indent=2)


if __name__ == "__main__":
  main()
