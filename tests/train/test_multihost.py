"""Multi-host training on this CPU machine: several `jax.distributed` processes on localhost.

Invariants checked against a single-process run of the same study (same global batch):
  * 2 processes x 2 CPU devices train the synthetic smoke study (2 vmapped seeds on a
    (seed=2, data=2) mesh) to the same metrics and train state as 1 process x 4 devices,
    up to float summation order: |a - b| <= ATOL + RTOL * |b| for every state leaf and
    metric. (Here both runs reduce over the same 2 data shards and came out bitwise equal;
    a (seed=1, data=4) layout differs by ~1e-7 relative, the order of the cross-process
    all-reduce.)
  * a checkpoint written by the 2-process run resumes in 1 process, and one written by the
    1-process run resumes in 2 processes, both ending at the uninterrupted 1-process result;
  * killing one process makes the survivor exit non-zero with JAX's "distributed service
    detected fatal errors" message within MIMOJAX_HEARTBEAT_TIMEOUT, instead of hanging.
The subprocesses run with JAX_DISABLE_MOST_OPTIMIZATIONS=1 (halves compile time) and every
wait is bounded by a timeout.

Model: the softmax Transformer of the study. FAVOR models draw random features with a
batched QR on the CPU LAPACK path, which can deadlock XLA's intra-op thread pool when two
CPU devices of one process run it at once on a 2-core machine (jaxlib 0.10.2); the launcher
test in tests/launch runs the verbatim MIMOFormer command with one device per process.
"""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import synthetic
from mimojax import data as data_lib
from mimojax import main as main_lib
from mimojax.train import checkpoint, config as config_lib, mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUDY = "model=transformer,task=ih,seeds=2,smoke"
RTOL, ATOL = 1e-5, 1e-6  # float summation order only (see the module docstring)
RUN_TIMEOUT = 400  # seconds for one training run (typically 15-40 s)
HEARTBEAT = 5  # seconds (MIMOJAX_HEARTBEAT_TIMEOUT in the subprocesses)
FATAL = "JAX distributed service detected fatal errors"

FakeDevice = collections.namedtuple("FakeDevice", "id process_index")


# --- environment and mesh layout (no subprocesses) ---------------------------------------

def test_distributed_kwargs_from_environment():
  env = {"MIMOJAX_COORDINATOR": "10.0.0.1:1234", "MIMOJAX_NUM_PROCESSES": "4",
         "MIMOJAX_PROCESS_ID": "3", "MIMOJAX_HEARTBEAT_TIMEOUT": "7", "UNRELATED": "x"}
  assert main_lib.distributed_kwargs(env) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3,
      "heartbeat_timeout_seconds": 7}
  assert main_lib.distributed_kwargs({}) == {}  # TPU VMs: JAX detects everything


@pytest.mark.parametrize("env, field", [
    ({"MIMOJAX_NUM_PROCESSES": "two"}, "MIMOJAX_NUM_PROCESSES"),
    ({"MIMOJAX_NUM_PROCESSES": "0"}, "MIMOJAX_NUM_PROCESSES"),
    ({"MIMOJAX_PROCESS_ID": "-1"}, "MIMOJAX_PROCESS_ID"),
    ({"MIMOJAX_NUM_PROCESSES": "2", "MIMOJAX_PROCESS_ID": "2"}, "MIMOJAX_PROCESS_ID"),
    ({"MIMOJAX_COORDINATOR": "localhost"}, "MIMOJAX_COORDINATOR"),
])
def test_distributed_kwargs_rejects_bad_values(env, field):
  with pytest.raises(ValueError, match=field):
    main_lib.distributed_kwargs(env)


def test_distributed_is_requested_by_flag_or_environment():
  assert not main_lib.distributed_requested({}, False)
  assert main_lib.distributed_requested({}, True)
  assert main_lib.distributed_requested({"MIMOJAX_DISTRIBUTED": "1"}, False)
  assert not main_lib.distributed_requested({"MIMOJAX_DISTRIBUTED": "0"}, False)
  with pytest.raises(ValueError, match="MIMOJAX_DISTRIBUTED"):
    main_lib.distributed_requested({"MIMOJAX_DISTRIBUTED": "yes"}, False)


@pytest.mark.parametrize("seed, data", [(1, 4), (2, 2), (2, 4), (1, 2)])
def test_each_process_holds_every_seed_row_and_one_data_block(seed, data):
  processes, per_process = 2, 4
  devices = [FakeDevice(1000 * p + i, p) for p in range(processes) for i in range(per_process)]
  grid = mesh_lib.process_grid(devices[::-1], seed, data, processes)  # order must not matter
  assert [len(row) for row in grid] == [data] * seed
  block = data // processes
  for s, row in enumerate(grid):
    for column, device in enumerate(row):
      assert device.process_index == column // block  # rows [p*B/P, (p+1)*B/P) of a batch
  used = [d for row in grid for d in row]
  assert len(set(used)) == seed * data


@pytest.mark.parametrize("seed, data, field", [(1, 3, "mesh.data=3"), (4, 2, "mesh.seed=4")])
def test_process_grid_rejects_uneven_layouts(seed, data, field):
  devices = [FakeDevice(1000 * p + i, p) for p in range(2) for i in range(2)]
  with pytest.raises(ValueError, match=field):
    mesh_lib.process_grid(devices, seed, data, 2)


def test_checkpoint_dir_keeps_bucket_urls():
  assert checkpoint.checkpoint_dir("gs://bucket/run") == "gs://bucket/run/checkpoints"
  assert os.path.isabs(checkpoint.checkpoint_dir("runs/x"))


# --- subprocess helpers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared_data_dir(data_dir):
  """``data_dir`` holding the tiny induction-head data, generated before any process reads
  it."""
  config = synthetic.get_config(STUDY)
  config.data.data_dir = data_dir
  typed = config_lib.from_dict(config)
  for split in ("train", "test"):
    data_lib.load_split(typed.data, split)
  return data_dir


def _env(**extra):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("MIMOJAX_", "JAX_", "XLA_"))}
  env.update(JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHON=sys.executable,
             MIMOJAX_HEARTBEAT_TIMEOUT=str(HEARTBEAT), PYTHONUNBUFFERED="1")
  env.update(extra)
  return env


def _run(cmd, env, timeout=RUN_TIMEOUT):
  """Runs `cmd` (and its children) in a new session; kills the session on timeout."""
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    pytest.fail(f"{cmd[:4]} did not finish in {timeout}s:\n{out[-3000:]}")
  assert proc.returncode == 0, f"{cmd} failed:\n{out[-4000:]}"
  return out


def _flags(data_dir, workdir):
  return [f"--config=experiments/synthetic.py:{STUDY}", "--config.mesh.seed=2",
          f"--config.data.data_dir={data_dir}", f"--workdir={workdir}"]


def train_one_process(data_dir, workdir):
  """1 process x 4 CPU devices."""
  _run([sys.executable, "-m", "mimojax.main", *_flags(data_dir, workdir)],
       _env(JAX_NUM_CPU_DEVICES="4"))


def train_two_processes(data_dir, workdir):
  """2 processes x 2 CPU devices through launch/local_processes.sh."""
  _run(["bash", "launch/local_processes.sh", "--devices-per-process=2", "2",
        *_flags(data_dir, workdir)], _env())


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def read_state(workdir, step):
  """The saved train state at `step` as a flat {path: numpy array} dict."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = checkpointer.restore(path, restore_args=args)
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(state)}


def assert_same_state(got, want, what):
  assert got.keys() == want.keys(), what
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=ATOL,
                               err_msg=f"{what}: {key}")


def assert_same_metrics(got, want, what):
  assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want], what
  for g, w in zip(got, want):
    assert g.keys() == w.keys(), what
    for key, value in w.items():
      if key not in ("step", "split"):
        np.testing.assert_allclose(g[key], value, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what}: step {w['step']} {w['split']} {key}")


def after_resume(rows, step=6, log_every=4):
  """Rows a run resumed at `step` shares with the uninterrupted run: evals after `step` and
  train rows whose averaging window (the last `log_every` steps) starts after it."""
  return [r for r in rows
          if r["step"] > step and (r["split"] != "train" or r["step"] - log_every >= step)]


def resume_from_step(source, target, step):
  """A workdir holding only `source`'s checkpoint at `step` (as if stopped right after it)."""
  os.makedirs(os.path.join(target, "checkpoints"))
  shutil.copytree(os.path.join(source, "checkpoints", str(step)),
                  os.path.join(target, "checkpoints", str(step)))


# --- 2 processes = 1 process; checkpoints cross over -------------------------------------

@pytest.mark.slow
def test_two_processes_match_one_process_and_checkpoints_cross_over(prepared_data_dir, tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  train_one_process(prepared_data_dir, one)
  train_two_processes(prepared_data_dir, two)

  reference = read_metrics(one)
  assert [r["step"] for r in reference if r["split"] == "train"] == [4, 8, 12]
  assert len(reference[-1]["accuracy_per_seed"]) == 2
  assert_same_metrics(read_metrics(two), reference, "2x2 vs 1x4 metrics")
  final = read_state(one, 12)
  assert_same_state(read_state(two, 6), read_state(one, 6), "2x2 vs 1x4 state at step 6")
  assert_same_state(read_state(two, 12), final, "2x2 vs 1x4 state at step 12")
  assert sorted(os.listdir(os.path.join(two, "logs"))) == ["process_0.log", "process_1.log"]

  # Written by 2 processes, resumed by 1; and the other way round.
  two_to_one, one_to_two = str(tmp_path / "two_to_one"), str(tmp_path / "one_to_two")
  resume_from_step(two, two_to_one, 6)
  train_one_process(prepared_data_dir, two_to_one)
  resume_from_step(one, one_to_two, 6)
  train_two_processes(prepared_data_dir, one_to_two)
  for workdir, what in ((two_to_one, "2-process checkpoint resumed in 1 process"),
                        (one_to_two, "1-process checkpoint resumed in 2 processes")):
    assert_same_state(read_state(workdir, 12), final, what)
    assert_same_metrics(after_resume(read_metrics(workdir)), after_resume(reference), what)


# --- a dead process stops the job --------------------------------------------------------

def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _read(path):
  with open(path) as f:
    return f.read()


def _wait_for(predicate, timeout, what):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    time.sleep(0.2)
  pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _start_two_processes(data_dir, tmp_path, *flags):
  """Two `--distributed` processes of 2 CPU devices each on `tmp_path / "run"`, started
  directly (no launcher), each logging to `tmp_path / process_<i>.log`; (procs, logs)."""
  port = _free_port()
  procs, logs = [], []
  for i in range(2):
    logs.append(str(tmp_path / f"process_{i}.log"))
    env = _env(JAX_NUM_CPU_DEVICES="2", MIMOJAX_COORDINATOR=f"localhost:{port}",
               MIMOJAX_NUM_PROCESSES="2", MIMOJAX_PROCESS_ID=str(i))
    with open(logs[i], "w") as log:
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "mimojax.main", *_flags(data_dir, tmp_path / "run"), *flags,
           "--distributed"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
  return procs, logs


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1], ids=["coordinator_killed", "worker_killed"])
def test_killing_one_process_stops_the_other_with_an_error(prepared_data_dir, tmp_path, victim):
  procs, logs = _start_two_processes(prepared_data_dir, tmp_path)
  try:
    def both_joined():
      for i, proc in enumerate(procs):
        assert proc.poll() is None, f"process {i} exited early:\n{_read(logs[i])[-3000:]}"
      return all(f"process {i} of 2" in _read(logs[i]) for i in range(2))

    _wait_for(both_joined, RUN_TIMEOUT, "both processes to join the job")
    procs[victim].kill()
    procs[victim].wait(timeout=60)
    survivor = procs[1 - victim]
    try:
      code = survivor.wait(timeout=HEARTBEAT + 120)
    except subprocess.TimeoutExpired:
      pytest.fail(f"process {1 - victim} still runs {HEARTBEAT + 120}s after process "
                  f"{victim} was killed")
    output = _read(logs[1 - victim])
    assert code != 0
    assert FATAL in output, output[-3000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_at_the_same_saved_step(prepared_data_dir,
                                                                   tmp_path):
  """SIGTERM to the worker only: both processes finish the same step, save it together and
  exit with the same one line."""
  workdir = tmp_path / "run"
  procs, logs = _start_two_processes(
      prepared_data_dir, tmp_path, "--config.train.num_steps=2000",
      "--config.train.log_every_steps=4", "--config.eval.every_steps=2000",
      "--config.checkpoint.every_steps=2000")
  try:

    def training():
      for i, proc in enumerate(procs):
        assert proc.poll() is None, f"process {i} exited early:\n{_read(logs[i])[-3000:]}"
      return os.path.exists(workdir / "metrics.jsonl")

    _wait_for(training, RUN_TIMEOUT, "the first logged train step")
    procs[1].send_signal(signal.SIGTERM)
    codes = [proc.wait(timeout=RUN_TIMEOUT) for proc in procs]
    lasts = [_read(log).strip().splitlines()[-1] for log in logs]
    assert codes == [1, 1], lasts
    assert all(last.startswith("mimojax: stopped by SIGTERM after step ") for last in lasts)
    steps = {last.split("after step ")[1].split(";")[0] for last in lasts}
    assert len(steps) == 1, lasts  # one step for both
    saved = [d for d in os.listdir(workdir / "checkpoints") if d.isdigit()]
    assert saved == list(steps) and int(saved[0]) < 2000
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)
