"""launch/: --help and --dry-run of every script (no network), local process supervision with
a stand-in interpreter, sweep.py row -> command expansion, and one real 2-process run of the
README's `launch/local_processes.sh` command."""

import glob
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = ["tpu_vm.sh", "run_on_host.sh", "gpu_hosts.sh", "local_processes.sh"]
STUDY = "experiments/synthetic.py:model=mimoformer,task=ih,smoke"


@pytest.fixture
def no_gcloud(tmp_path):
  """A PATH whose `gcloud`, `ssh` and `gsutil` only record that they were called."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  calls = tmp_path / "calls.txt"
  for name in ("gcloud", "ssh", "gsutil"):
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {calls}\nexit 1\n")
    tool.chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
  return env, calls


def sh(script, *args, env=None, cwd=REPO, timeout=60):
  return subprocess.run(["bash", os.path.join(LAUNCH, script), *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def lines(text):
  return [line for line in text.splitlines() if line.strip()]


def in_session(cmd, timeout, failure, **kwargs):
  """Runs ``cmd`` in a new session: (returncode, stdout, stderr); after ``timeout`` seconds
  the whole process group is killed and the test fails with ``failure``."""
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True,
                          **kwargs)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(failure)
  return proc.returncode, out, err


# --- --help ------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
  out = sh(script, "--help")
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("Usage: launch/" + script)
  assert "--dry-run" in out.stdout


def test_sweep_help():
  out = subprocess.run([sys.executable, os.path.join(LAUNCH, "sweep.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0 and "--dry-run" in out.stdout and "--launch" in out.stdout


# --- tpu_vm.sh ---------------------------------------------------------------------------

def test_tpu_vm_dry_run_prints_the_pod_recipe_and_runs_nothing(no_gcloud):
  env, calls = no_gcloud
  out = sh("tpu_vm.sh", "all", "--dry-run", "--name=pod", "--zone=us-central2-b",
           "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--project=proj",
           "--workdir=gs://bucket/ih", "--data-dir=gs://bucket/tfds", "--",
           "--config=experiments/synthetic.py:model=mimoformer,task=ih,seeds=5", env=env)
  assert out.returncode == 0, out.stderr
  assert not calls.exists(), calls.read_text()  # dry run: gcloud never called
  cmds = lines(out.stdout)
  common = "--zone=us-central2-b --project=proj"
  assert cmds[0] == ("gcloud compute tpus tpu-vm create pod " + common +
                     " --accelerator-type=v4-32 --version=tpu-ubuntu2204-base")
  assert cmds[1].startswith("tar -czf ") and "--exclude=./.venv" in cmds[1]
  assert cmds[2].startswith("gcloud compute tpus tpu-vm scp ")
  assert cmds[2].endswith("pod:mimojax.tar.gz " + common + " --worker=all")
  ssh = [shlex.split(c) for c in cmds if c.startswith("gcloud compute tpus tpu-vm ssh pod")]
  assert all(c[6:10] == ["--zone=us-central2-b", "--project=proj", "--worker=all",
                         "--command"] for c in ssh)
  remote = [c[10] for c in ssh]
  assert remote[0].startswith("rm -rf ~/mimojax && mkdir -p ~/mimojax && tar -xzf")
  assert remote[1] == "bash ~/mimojax/launch/run_on_host.sh setup --jax=tpu"
  assert remote[2] == "bash ~/mimojax/launch/run_on_host.sh kill"  # stale processes first
  assert remote[3] == (
      "bash ~/mimojax/launch/run_on_host.sh train --data-dir=gs://bucket/tfds -- "
      "--config=experiments/synthetic.py:model=mimoformer,task=ih,seeds=5 "
      "--workdir=gs://bucket/ih")
  assert remote[4] == "gcloud storage cp ~/mimojax_logs/train-*.log gs://bucket/ih/logs/"
  assert cmds[-1] == "gcloud storage cp 'gs://bucket/ih/logs/*' tpu_logs/pod/"
  assert not any(" delete " in c for c in cmds)


def test_tpu_vm_defaults_spot_and_delete(no_gcloud):
  env, calls = no_gcloud
  out = sh("tpu_vm.sh", "create", "--dry-run", "--spot", "--name=n", env=env)
  assert lines(out.stdout) == [
      "gcloud compute tpus tpu-vm create n --zone=us-central2-b --accelerator-type=v4-32 "
      "--version=tpu-ubuntu2204-base --spot"]
  out = sh("tpu_vm.sh", "delete", "--dry-run", "--name=n", "--zone=europe-west4-a", env=env)
  assert lines(out.stdout) == [
      "gcloud compute tpus tpu-vm delete n --zone=europe-west4-a --quiet"]
  assert not calls.exists()


def test_tpu_vm_train_needs_a_shared_workdir(no_gcloud):
  env, _ = no_gcloud
  out = sh("tpu_vm.sh", "train", "--dry-run", "--", "--config=experiments/synthetic.py", env=env)
  assert out.returncode == 2 and "--workdir=gs://" in out.stderr
  out = sh("tpu_vm.sh", "launch", env=env)
  assert out.returncode == 2 and "unknown command 'launch'" in out.stderr


# --- run_on_host.sh ----------------------------------------------------------------------

def test_run_on_host_dry_run():
  out = sh("run_on_host.sh", "train", "--dry-run", "--data-dir=gs://b/tfds", "--log-dir=/l",
           "--", "--config=" + STUDY, "--workdir=gs://b/w")
  assert out.returncode == 0, out.stderr
  assert lines(out.stdout) == [
      "mkdir -p /l",
      "export TFDS_DATA_DIR=gs://b/tfds",
      f"cd {REPO}",
      "echo $$ > /l/train.pid",
      f"exec {REPO}/.venv/bin/python -m mimojax.main --config={STUDY} --workdir=gs://b/w "
      f"--distributed > >(tee -a /l/train-{os.uname().nodename}.log) 2>&1"]
  setup = lines(sh("run_on_host.sh", "setup", "--dry-run", "--jax=cuda12").stdout)
  assert setup[-1] == (f"{REPO}/.venv/bin/python -m pip install --quiet -e {REPO} "
                       "'jax[cuda12]>=0.9,<0.11' gcsfs google-cloud-storage")
  out = sh("run_on_host.sh", "setup", "--dry-run", "--jax=rocm")
  assert out.returncode == 2 and "--jax=rocm" in out.stderr


def test_run_on_host_kill_only_touches_its_own_pid_file(tmp_path):
  (tmp_path / "train.pid").write_text(f"{os.getpid()}\n")  # alive, but not mimojax.main
  out = sh("run_on_host.sh", "kill", f"--log-dir={tmp_path}")
  assert out.returncode == 0 and "is not running" in out.stderr
  assert not (tmp_path / "train.pid").exists()


# --- gpu_hosts.sh ------------------------------------------------------------------------

def test_gpu_hosts_dry_run_one_process_per_gpu(no_gcloud):
  env, calls = no_gcloud
  out = sh("gpu_hosts.sh", "--dry-run", "--hosts=gpu-a,gpu-b", "--processes-per-host=2",
           "--port=2222", "--repo=/srv/mimojax", "--", "--config=" + STUDY,
           "--workdir=/nfs/ih", env=env)
  assert out.returncode == 0, out.stderr
  assert not calls.exists()
  cmds = [c for c in lines(out.stdout) if c.startswith("ssh ")]
  assert len(cmds) == 4
  for i, cmd in enumerate(cmds):
    words = shlex.split(cmd)
    assert words[1] == ("gpu-a", "gpu-a", "gpu-b", "gpu-b")[i]
    assert words[2] == (
        f"cd /srv/mimojax && CUDA_VISIBLE_DEVICES={i % 2} MIMOJAX_COORDINATOR=gpu-a:2222 "
        f"MIMOJAX_NUM_PROCESSES=4 MIMOJAX_PROCESS_ID={i} MIMOJAX_HEARTBEAT_TIMEOUT=100 bash "
        f'launch/run_on_host.sh train --log-dir="$HOME/mimojax_logs/process_{i}" -- '
        f"--config={STUDY} --workdir=/nfs/ih")
    assert words[3:] == [">", f"logs/gpu_hosts/process_{i}.log", "2>&1", "&"]


def test_gpu_hosts_one_process_per_host_and_errors(no_gcloud):
  env, _ = no_gcloud
  out = sh("gpu_hosts.sh", "--dry-run", "--hosts=a,b,c", "--coordinator=10.0.0.9:5000",
           "--config=x.py", "--workdir=/nfs/w", env=env)
  cmds = [shlex.split(c)[2] for c in lines(out.stdout) if c.startswith("ssh ")]
  assert len(cmds) == 3 and not any("CUDA_VISIBLE_DEVICES" in c for c in cmds)
  assert all("MIMOJAX_COORDINATOR=10.0.0.9:5000 MIMOJAX_NUM_PROCESSES=3" in c for c in cmds)
  out = sh("gpu_hosts.sh", "--dry-run", "--hosts=a", "--config=x.py", env=env)
  assert out.returncode == 2 and "--workdir is required" in out.stderr
  out = sh("gpu_hosts.sh", "--dry-run", "--config=x.py", "--workdir=/w", env=env)
  assert out.returncode == 2 and "--hosts is required" in out.stderr


# --- local_processes.sh ------------------------------------------------------------------

def test_local_processes_dry_run():
  out = sh("local_processes.sh", "3", "--dry-run", "--devices-per-process=2", "--port=4321",
           "--config=" + STUDY, "--workdir=/tmp/w")
  assert out.returncode == 0, out.stderr
  cmds = lines(out.stdout)
  assert cmds[0] == "mkdir -p /tmp/w/logs" and cmds[-1].startswith("wait")
  for i, cmd in enumerate(cmds[1:-1]):
    words = shlex.split(cmd)
    env = dict(w.split("=", 1) for w in words[1:words.index("-m") - 1])
    assert env["MIMOJAX_PROCESS_ID"] == str(i)
    assert env["MIMOJAX_NUM_PROCESSES"] == "3" and env["JAX_NUM_CPU_DEVICES"] == "2"
    assert env["MIMOJAX_COORDINATOR"] == "localhost:4321" and env["JAX_PLATFORMS"] == "cpu"
    main = words[words.index("-m"):]
    assert main[:5] == ["-m", "mimojax.main", "--config=" + STUDY, "--workdir=/tmp/w",
                        "--distributed"]
  assert len(cmds) == 5


def test_local_processes_picks_one_workdir_and_checks_k():
  out = sh("local_processes.sh", "--dry-run", "2", "--config=" + STUDY)
  workdirs = {w for c in lines(out.stdout) for w in shlex.split(c) if w.startswith("--workdir=")}
  assert len(workdirs) == 1 and workdirs.pop().startswith("--workdir=runs/synthetic/")
  for bad in ("0", "two"):
    out = sh("local_processes.sh", "--dry-run", bad, "--config=" + STUDY)
    assert out.returncode == 2 and f"K={bad}" in out.stderr


@pytest.fixture
def fake_python(tmp_path):
  """An interpreter stand-in: process 1 exits with status 3 after its peers started;
  the others would run for 300 s (they must be killed by the launcher)."""
  script = tmp_path / "python"
  script.write_text(
      "#!/bin/bash\n"
      'if [ "$1" = "-c" ]; then exec python3 "$@"; fi\n'
      'echo "process $MIMOJAX_PROCESS_ID of $MIMOJAX_NUM_PROCESSES: $*"\n'
      'if [ "$MIMOJAX_PROCESS_ID" = "${FAIL_ID:-none}" ]; then exit 3; fi\n'
      'if [ -n "${FAIL_ID:-}" ]; then exec sleep 300; fi\n')
  script.chmod(0o755)
  return str(script)


def test_local_processes_fails_and_kills_the_rest_when_one_fails(tmp_path, fake_python):
  env = dict(os.environ, PYTHON=fake_python, FAIL_ID="1")
  returncode, _, err = in_session(
      ["bash", os.path.join(LAUNCH, "local_processes.sh"), "3", "--grace=2", "--config=x.py",
       f"--workdir={tmp_path / 'w'}"], 60,
      "local_processes.sh did not stop the remaining processes", env=env,
      stderr=subprocess.PIPE)
  assert returncode == 1
  assert "process 1 exited with status 3" in err
  assert "process 0 exited with status 137" in err and "process 2 exited with status 137" in err
  logs = sorted(os.listdir(tmp_path / "w" / "logs"))
  assert logs == ["process_0.log", "process_1.log", "process_2.log"]
  assert "process 2 of 3: -m mimojax.main --config=x.py" in (
      tmp_path / "w" / "logs" / "process_2.log").read_text()


def test_local_processes_succeeds_when_all_succeed(tmp_path, fake_python):
  env = dict(os.environ, PYTHON=fake_python)
  out = sh("local_processes.sh", "2", "--config=x.py", f"--workdir={tmp_path}", env=env)
  assert out.returncode == 0, out.stderr
  assert "process 0 of 2" in out.stdout  # process 0 is echoed to the terminal


# --- sweep.py ----------------------------------------------------------------------------

EXPERIMENT = '''
def get_config(arg=None):
  raise AssertionError("sweep.py must not build configs")

def get_sweep():
  yield "task=listops,model=mimoformer,n=2,variant=att,shape=deep"
  yield "task=listops,model=performer"
  yield {"task": "text", "model": "transformer", "smoke": True, "config.train.num_steps": 7}
'''


def sweep(*args, cwd=REPO):
  return subprocess.run([sys.executable, os.path.join(LAUNCH, "sweep.py"), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=120)


def test_sweep_dry_run_one_command_per_row(tmp_path):
  study = tmp_path / "study_x.py"
  study.write_text(EXPERIMENT)
  out = sweep(str(study), "--dry-run", "--workdir-base=gs://b/sw", "--",
              "--config.seeds.num=3")
  assert out.returncode == 0, out.stderr
  main = [sys.executable, "-m", "mimojax.main"]
  assert [shlex.split(c) for c in lines(out.stdout)] == [
      main + [f"--config={study}:task=listops,model=mimoformer,n=2,variant=att,shape=deep",
              "--workdir=gs://b/sw/task-listops_model-mimoformer_n-2_variant-att_shape-deep",
              "--config.seeds.num=3"],
      main + [f"--config={study}:task=listops,model=performer",
              "--workdir=gs://b/sw/task-listops_model-performer", "--config.seeds.num=3"],
      main + [f"--config={study}:task=text,model=transformer,smoke",
              "--workdir=gs://b/sw/task-text_model-transformer_smoke_train.num_steps-7",
              "--config.train.num_steps=7", "--config.seeds.num=3"]]
  # without --launch the commands are only printed, too; the default base is runs/<study>
  default = sweep(str(study), "--launcher=launch/local_processes.sh 2")
  first = shlex.split(lines(default.stdout)[0])
  assert first[:2] == ["launch/local_processes.sh", "2"]
  assert first[3].startswith("--workdir=runs/study_x/task-listops")


def test_sweep_launch_runs_every_row_and_stops_on_failure(tmp_path):
  study = tmp_path / "study_y.py"
  study.write_text(EXPERIMENT)
  record = tmp_path / "record.jsonl"
  launcher = tmp_path / "launcher.py"  # records its argv; fails on the performer row
  launcher.write_text("import json, sys\n"
                      f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      "sys.exit(3 if any('performer' in a for a in sys.argv) else 0)\n")
  printed = [shlex.split(c)[3:] for c in lines(sweep(str(study)).stdout)]  # after -m main
  out = sweep(str(study), "--launch", f"--launcher={sys.executable} {launcher}")
  assert out.returncode == 1 and "row 2 failed with status 3" in out.stderr
  assert [json.loads(x) for x in record.read_text().splitlines()] == printed[:2]
  record.unlink()
  out = sweep(str(study), "--launch", "--keep-going", f"--launcher={sys.executable} {launcher}")
  assert out.returncode == 1
  assert [json.loads(x) for x in record.read_text().splitlines()] == printed


def test_sweep_rejects_bad_experiments(tmp_path):
  no_sweep = tmp_path / "plain.py"
  no_sweep.write_text("def get_config(arg=None):\n  return None\n")
  out = sweep(str(no_sweep))
  assert out.returncode == 2 and "has no get_sweep()" in out.stderr
  twice = tmp_path / "twice.py"
  twice.write_text("def get_sweep():\n  return ['a=1', 'a=1']\n")
  out = sweep(str(twice))
  assert out.returncode == 2 and "rows 0 and 1" in out.stderr


FAVOR_S_LRA = os.path.join(REPO, "experiments", "favor_s_lra.py")


@pytest.mark.skipif(not os.path.exists(FAVOR_S_LRA),
                    reason="experiments/favor_s_lra.py is not written yet")
def test_sweep_lists_favor_s_lra_table_rows():
  spec = importlib.util.spec_from_file_location("favor_s_lra_for_test", FAVOR_S_LRA)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rows = list(module.get_sweep())
  out = sweep("experiments/favor_s_lra.py", "--dry-run")
  assert out.returncode == 0, out.stderr
  cmds = [shlex.split(c) for c in lines(out.stdout)]
  assert len(cmds) == len(rows) > 1
  assert all(c[3].startswith("--config=experiments/favor_s_lra.py") for c in cmds)
  workdirs = [c[4] for c in cmds]
  assert len(set(workdirs)) == len(workdirs)


# --- the README command, for real ----------------------------------------------------------

@pytest.mark.slow
def test_local_processes_runs_the_readme_command_verbatim(tmp_path):
  """`launch/local_processes.sh 2 --config=...:model=mimoformer,task=ih,smoke`, run from a
  directory laid out like the checkout, trains with 2 CPU processes and writes the run."""
  from experiments import synthetic  # pylint: disable=import-outside-toplevel
  from mimojax import data as data_lib  # pylint: disable=import-outside-toplevel
  tfds_dir = tmp_path / "tfds"
  config = synthetic.get_config("model=mimoformer,task=ih,smoke")
  config.data.data_dir = str(tfds_dir)
  for split in ("train", "test"):
    data_lib.load_split(config.data, split)  # prepared once, shared by both processes
  checkout = tmp_path / "checkout"
  checkout.mkdir()
  for name in ("launch", "experiments"):
    os.symlink(os.path.join(REPO, name), checkout / name)
  env = {k: v for k, v in os.environ.items() if not k.startswith(("MIMOJAX_", "JAX_", "XLA_"))}
  env.update(PYTHON=sys.executable, TFDS_DATA_DIR=str(tfds_dir), PYTHONPATH=REPO,
             JAX_DISABLE_MOST_OPTIMIZATIONS="1", MIMOJAX_HEARTBEAT_TIMEOUT="10")
  command = f"launch/local_processes.sh 2 --config={STUDY}"
  returncode, out, _ = in_session(shlex.split(command), 500,
                                  "the 2-process smoke run did not finish in 500 s",
                                  cwd=checkout, env=env, stderr=subprocess.STDOUT)
  assert returncode == 0, out[-4000:]
  (workdir,) = glob.glob(str(checkout / "runs" / "synthetic" / "*"))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [(r["step"], r["split"]) for r in rows if r["split"] == "test"] == [(6, "test"),
                                                                             (12, "test")]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "6"]
  with open(os.path.join(workdir, "logs", "process_1.log")) as f:
    assert "process 1 of 2, 1 local / 2 global devices" in f.read()
