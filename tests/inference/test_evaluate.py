"""`evaluate` on finished tiny runs reproduces the accuracies their training logs recorded,
per mode; the CLI prints one table, writes JSON and reports bad input in one line."""

import json
import os
import subprocess
import sys

import pytest

from mimojax.inference import evaluate, restore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_metrics(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def by_mode(result):
  return {row["mode"]: row for row in result["modes"]}


def test_mimoconv_dynamic_modes_reproduce_the_logged_accuracies(mimoconv_run):
  result = evaluate.evaluate(restore.load(mimoconv_run), rounds=1)
  logged = read_metrics(mimoconv_run, "validation")[-1]
  assert (result["step"], result["split"], result["seeds"]) == (logged["step"], "validation", 1)
  rows = by_mode(result)
  assert list(rows) == ["inputs_per_pass=4", "inputs_per_pass=2", "inputs_per_pass=1"]
  assert rows["inputs_per_pass=4"]["accuracy"] == logged["accuracy"]
  assert rows["inputs_per_pass=4"]["loss"] == pytest.approx(logged["loss"], rel=1e-6)
  for n in (2, 1):
    assert rows[f"inputs_per_pass={n}"]["accuracy"] == logged[f"accuracy/inputs_per_pass={n}"]
  assert all(row["examples_per_s"] > 0 for row in rows.values())
  path = evaluate.write(result)
  assert path == os.path.join(mimoconv_run, "evaluation",
                              f"validation-step{logged['step']}.json")
  with open(path) as f:
    assert json.load(f) == result
  assert evaluate.table(result).count("\n") == 4  # header, rule, three modes


def test_an_earlier_step_reproduces_its_own_log_line(mimoconv_run):
  run = restore.load(mimoconv_run, step=3)
  result = evaluate.evaluate(run, names=["inputs_per_pass=2"], rounds=1)
  logged = next(r for r in read_metrics(mimoconv_run, "validation") if r["step"] == 3)
  assert by_mode(result)["inputs_per_pass=2"]["accuracy"] == logged["accuracy/inputs_per_pass=2"]


def test_mimoformer_grid_and_subgrid_reproduce_the_logged_test_accuracy(mimoformer_run):
  result = evaluate.evaluate(restore.load(mimoformer_run), rounds=1)
  logged = read_metrics(mimoformer_run, "test")[-1]
  rows = by_mode(result)
  assert list(rows) == ["grid=2x2", "subgrid=1x1"]
  assert rows["grid=2x2"]["accuracy"] == logged["accuracy"]
  assert rows["subgrid=1x1"]["accuracy"] == logged["accuracy/subgrid"]


def cli(*flags):
  return subprocess.run([sys.executable, "-m", "mimojax.evaluate", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_cli_prints_the_table_and_writes_json(mimoconv_run):
  proc = cli(f"--workdir={mimoconv_run}", "--modes=inputs_per_pass=1", "--rounds=1")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| inputs_per_pass=1 | 1 |" in proc.stdout
  assert os.path.isfile(os.path.join(mimoconv_run, "evaluation", "validation-step6.json"))


@pytest.mark.parametrize("flags, message", [
    (["--workdir={empty}"], "has no checkpoints"),
    (["--workdir={run}", "--modes=inputs_per_pass=3"], "'inputs_per_pass=3' is not a mode"),
    (["--workdir={run}", "--batch_size=many"], "--batch_size"),
])
def test_cli_errors_are_one_line(mimoconv_run, tmp_path, flags, message):
  proc = cli(*(f.format(empty=tmp_path, run=mimoconv_run) for f in flags))
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("mimojax: invalid"), proc.stderr[-2000:]
  assert message in lines[0]


def test_bad_step_and_batch_size_are_one_line_errors(mimoconv_run):
  with pytest.raises(ValueError, match=r"--step=5 is not a checkpoint of .*; allowed: \[3, 6\]"):
    restore.load(mimoconv_run, 5)
  with pytest.raises(ValueError, match="eval.batch_size=3 must be divisible") as err:
    evaluate.evaluate(restore.load(mimoconv_run), batch_size=3)
  assert "\n" not in str(err.value)
