"""analysis.report: the final metric of each workdir as a table, a plot and JSON."""

import json
import os

import pytest

from mimojax.analysis import report


def make_run(path, n, per_seed, model="mimoconv"):
  os.makedirs(path)
  with open(path / "config.json", "w") as f:
    json.dump({"mimo": {"n": n}, "model": {"name": model}}, f)
  mean = sum(per_seed) / len(per_seed)
  std = (sum((v - mean) ** 2 for v in per_seed) / len(per_seed)) ** 0.5
  rows = [{"step": 5, "split": "test", "accuracy": 0.1, "accuracy_per_seed": [0.1] * 3},
          {"step": 10, "split": "train", "accuracy": 0.99},
          {"step": 10, "split": "test", "accuracy": mean, "accuracy_std": std,
           "accuracy_per_seed": per_seed}]
  with open(path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def test_table_plot_and_json(tmp_path, capsys):
  make_run(tmp_path / "n-4", 4, [0.80, 0.90, 0.85])
  make_run(tmp_path / "n-1", 1, [0.98, 0.96, 0.97])
  out = tmp_path / "rows.json"
  argv = [str(tmp_path / "n-4"), str(tmp_path / "n-1"), "--x=mimo.n", f"--json={out}"]
  try:
    import matplotlib  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    argv.append(f"--plot={tmp_path / 'fig' / 'acc.png'}")
  except ImportError:
    pass
  assert report.main(argv) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "| run | mimo.n | step | accuracy (%) | per seed (%) |"
  assert lines[2] == "| n-4 | 4 | 10 | 85.0 +- 4.1 | 80.0 / 90.0 / 85.0 |"
  assert lines[3] == "| n-1 | 1 | 10 | 97.0 +- 0.8 | 98.0 / 96.0 / 97.0 |"
  assert [r["mean"] for r in json.loads(out.read_text())] == pytest.approx([0.85, 0.97])
  if argv[-1].startswith("--plot"):
    assert os.path.getsize(tmp_path / "fig" / "acc.png") > 1000


def test_series_plot_draws_one_line_per_model(tmp_path):
  pytest.importorskip("matplotlib")
  for model, values in (("mimoconv", (0.97, 0.85)), ("datamux_cnn", (0.98, 0.6))):
    for n, value in zip((1, 4), values):
      make_run(tmp_path / f"{model}-{n}", n, [value], model)
  rows = [report.final_row(str(tmp_path / d), "test", "accuracy")
          for d in sorted(os.listdir(tmp_path))]
  fig = report.plot(rows, "mimo.n", "accuracy", str(tmp_path / "f.png"), None, "model.name")
  lines = {bars.get_label(): bars.lines[0].get_ydata().tolist()
           for bars in fig.axes[0].containers}
  assert lines == {"datamux_cnn": pytest.approx([98.0, 60.0]),
                   "mimoconv": pytest.approx([97.0, 85.0])}


def test_errors_are_one_line(tmp_path, capsys):
  assert report.main([str(tmp_path)]) == 2
  assert "no metrics.jsonl" in capsys.readouterr().err
  make_run(tmp_path / "r", 2, [0.5])
  assert report.main([str(tmp_path / "r"), "--metric=accuracy/inputs_per_pass=1"]) == 2
  assert "no 'test' line" in capsys.readouterr().err
  assert report.main([str(tmp_path / "r"), "--plot=x.png"]) == 2
  assert report.main([str(tmp_path / "r"), "--x=mimo.m"]) == 2
  assert "no field 'mimo.m'" in capsys.readouterr().err


def test_best_takes_each_seeds_maximum_over_evaluations(tmp_path, capsys):
  os.makedirs(tmp_path / "r")
  (tmp_path / "r" / "config.json").write_text("{}")
  history = {4: [0.2, 0.9, 0.5], 8: [0.7, 0.9, 0.4], 12: [0.6, 0.3, 0.5]}
  with open(tmp_path / "r" / "metrics.jsonl", "w") as f:
    for step, per_seed in history.items():
      f.write(json.dumps({"step": step, "split": "train", "accuracy": 1.0}) + "\n")
      mean = sum(per_seed) / 3
      std = (sum((v - mean) ** 2 for v in per_seed) / 3) ** 0.5
      f.write(json.dumps({"step": step, "split": "test", "accuracy": mean,
                          "accuracy_std": std, "accuracy_per_seed": per_seed}) + "\n")
  out = tmp_path / "rows.json"
  assert report.main([str(tmp_path / "r"), "--best", f"--json={out}"]) == 0
  # Seed 0 peaks at step 8, seed 1 first reaches 0.9 at step 4, seed 2 ties at 4 and 12.
  row, = json.loads(out.read_text())
  assert row["per_seed"] == [0.7, 0.9, 0.5] and row["best_steps"] == [8, 4, 4]
  assert row["mean"] == pytest.approx(0.7)
  assert row["std"] == pytest.approx(((0.0 + 0.04 + 0.04) / 3) ** 0.5)
  assert "| r | best of 3 | 70.0 +- 16.3 | 70.0 / 90.0 / 50.0 |" in capsys.readouterr().out
  assert report.main([str(tmp_path / "r")]) == 0  # the default stays the last evaluation
  assert "| r | 12 | 46.7 +- 12.5 | 60.0 / 30.0 / 50.0 |" in capsys.readouterr().out
