"""Final results of finished runs as a markdown table, and optionally a plot.

    python -m mimojax.analysis.report runs/mnist_study/n-*                       # table
    python -m mimojax.analysis.report runs/mnist_study/n-* --x=mimo.n --plot=docs/figures/mnist.png
    python -m mimojax.analysis.report RUN... --split=validation --metric=accuracy/inputs_per_pass=1
    python -m mimojax.analysis.report runs/synthetic/* --best    # best evaluation per seed

For every workdir it reads `config.json` and the last `<split>` line of `metrics.jsonl` (one
JSON object per evaluation: `step`, `split`, each metric with its `_std` and `_per_seed`
over seeds) and prints one row: the workdir, the step, the metric in percent as mean +- std
over seeds and the per-seed values. `--best` takes each seed's highest value over all
`<split>` lines instead (the protocol of a checkpoint callback that keeps the best
evaluation, as safari's synthetic tasks do, where the validation set is the test set:
HazyResearch/safari `configs/experiment/synthetics/`); the step column then reads
`best of <k>`, and the JSON rows hold each seed's step. `--x=a.b`
adds the config value a.b as a column; with `--plot` the rows become a line plot of the
metric against it (error bars: std over seeds; needs matplotlib, `pip install -e
".[plot]"`), one line per value of `--series=c.d` (e.g. `model.name`, to set DataMUX beside
MIMOConv as paper Figure 4 does). `--json` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from mimojax.analysis import output


def final_row(workdir: str, split: str, metric: str, best: bool = False) -> dict:
  """{'workdir', 'step', 'mean', 'std', 'per_seed', 'config'} of the last `split` line.

  With `best`, each seed's maximum over all `split` lines; 'step' is 'best of <k>' and
  'best_steps' lists the step of each seed's maximum (the first, on ties).
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    raise ValueError(f"{workdir}: no metrics.jsonl (is it a mimojax workdir?)")
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rows = [r for r in rows if r.get("split") == split and metric in r]
  if not rows:
    raise ValueError(f"{workdir}: no '{split}' line with {metric!r} in metrics.jsonl")
  last = rows[-1]
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  if not best:
    per_seed = last.get(f"{metric}_per_seed", [last[metric]])
    return {"workdir": workdir, "step": last["step"], "mean": last[metric],
            "std": last.get(f"{metric}_std", 0.0), "per_seed": per_seed, "config": config}
  history = [(r["step"], r.get(f"{metric}_per_seed", [r[metric]])) for r in rows]
  peaks = [max(((v[k], -s) for s, v in history)) for k in range(len(history[-1][1]))]
  per_seed = [value for value, _ in peaks]
  return {"workdir": workdir, "step": f"best of {len(history)}",
          "mean": statistics.fmean(per_seed), "std": statistics.pstdev(per_seed),
          "per_seed": per_seed, "best_steps": [-neg_step for _, neg_step in peaks],
          "config": config}


def config_value(config: dict, dotted: str):
  value = config
  for part in dotted.split("."):
    if not isinstance(value, dict) or part not in value:
      raise ValueError(f"config.json has no field {dotted!r}")
    value = value[part]
  return value


def table(rows: list[dict], x: str | None, metric: str) -> str:
  head = ["run"] + ([x] if x else []) + ["step", f"{metric} (%)", "per seed (%)"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [os.path.basename(os.path.normpath(r["workdir"]))]
    if x:
      cells.append(str(config_value(r["config"], x)))
    cells += [str(r["step"]), f"{100 * r['mean']:.1f} +- {100 * r['std']:.1f}",
              " / ".join(f"{100 * v:.1f}" for v in r["per_seed"])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(rows: list[dict], x: str, metric: str, path: str, title: str | None,
         series: str | None = None) -> None:
  """A line of the metric against config field `x` (categorical axis), one per value of the
  config field `series` (one line when None), saved to `path`; returns the figure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  xs = sorted({config_value(r["config"], x) for r in rows})
  label = lambda r: str(config_value(r["config"], series)) if series else None
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for name in sorted({label(r) for r in rows}, key=str):
    points = sorted((xs.index(config_value(r["config"], x)), 100 * r["mean"], 100 * r["std"])
                    for r in rows if label(r) == name)
    ax.errorbar(*zip(*points), marker="o", capsize=3, label=name)
  if series:
    ax.legend(title=series)
  ax.set_xticks(range(len(xs)), [str(v) for v in xs])
  ax.set_xlabel(x)
  ax.set_ylabel(f"{metric} (%)")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  return fig


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--split", default="test")
  parser.add_argument("--metric", default="accuracy")
  parser.add_argument("--x", help="config field shown as a column and used as the plot's x")
  parser.add_argument("--plot", help="PNG path (needs --x)")
  parser.add_argument("--series", help="config field: one plotted line per value")
  parser.add_argument("--title")
  parser.add_argument("--best", action="store_true",
                      help="each seed's best value over all evaluations, not the last")
  parser.add_argument("--json", help="write the rows (without configs) to this file")
  args = parser.parse_args(argv)
  try:
    if args.plot and not args.x:
      raise ValueError("--plot needs --x (the config field on the x axis)")
    rows = [final_row(w, args.split, args.metric, args.best) for w in args.workdirs]
    print(table(rows, args.x, args.metric))
    if args.plot:
      plot(rows, args.x, args.metric, args.plot, args.title, args.series)
    if args.json:
      output.write_json(args.json, [{k: v for k, v in r.items() if k != "config"} for r in rows])
  except ValueError as e:
    print(f"mimojax.analysis.report: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
