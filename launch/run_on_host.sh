#!/usr/bin/env bash
# What one host of a multi-host job runs: install, train (one process of the job), kill.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/run_on_host.sh setup [--venv=DIR] [--jax=tpu|cuda12|cpu] [--dry-run]
       launch/run_on_host.sh train [--venv=DIR] [--data-dir=DIR] [--log-dir=DIR] [--dry-run]
                                   [--] mimojax.main flags...
       launch/run_on_host.sh kill  [--log-dir=DIR] [--dry-run]

Runs on every host of a multi-host job (launch/tpu_vm.sh and launch/gpu_hosts.sh call it
over ssh); the code is the directory this script lives in.

  setup  create the virtual environment (default <repo>/.venv) and install mimojax with the
         JAX build for the accelerator (--jax=tpu: jax[tpu]; cuda12: jax[cuda12]; cpu: jax)
         plus gcsfs and google-cloud-storage for gs:// paths.
  train  run `python -m mimojax.main <flags> --distributed` as this host's process of the
         job, in the foreground; output also goes to <log-dir>/train-<hostname>.log and the
         pid to <log-dir>/train.pid. On TPU VMs JAX finds the coordinator, process count
         and id itself; elsewhere set MIMOJAX_COORDINATOR, MIMOJAX_NUM_PROCESSES and
         MIMOJAX_PROCESS_ID (launch/gpu_hosts.sh does). --data-dir sets TFDS_DATA_DIR.
  kill   kill the training process recorded in <log-dir>/train.pid (a stale run that
         would keep the accelerator busy), if it is still running.

Options:
  --venv=DIR      virtual environment (default: <repo>/.venv)
  --jax=KIND      tpu | cuda12 | cpu (setup; default tpu)
  --data-dir=DIR  tfds data dir for this run (local path or gs://...); default: tfds default
  --log-dir=DIR   default ~/mimojax_logs
  --dry-run       print the exact commands, run nothing
  -h, --help      show this help

Example (on every worker of a TPU pod slice, with the same flags):
  bash launch/run_on_host.sh train -- --config=experiments/synthetic.py:model=mimoformer,task=ih \
      --workdir=gs://my-bucket/mimojax/ih
EOF
}


repo="$repo_root"
(($#)) || { usage >&2; exit 2; }
case "$1" in
  -h|--help) usage; exit 0 ;;
  setup|train|kill) action="$1"; shift ;;
  *) usage >&2; die "unknown command '$1'; choose setup, train or kill" ;;
esac

venv="${repo}/.venv"
jax_kind="tpu"
data_dir=""
log_dir="${HOME}/mimojax_logs"
parse_options --venv=venv --jax=jax_kind --data-dir=data_dir --log-dir=log_dir -- "$@"

run() {  # run CMD...: print it under --dry-run, else execute it
  if ((dry_run)); then quote "$@"; else "$@"; fi
}

case "$action" in
  setup)
    case "$jax_kind" in
      tpu) jax_spec="jax[tpu]>=0.9,<0.11" ;;
      cuda12) jax_spec="jax[cuda12]>=0.9,<0.11" ;;
      cpu) jax_spec="jax>=0.9,<0.11" ;;
      *) die "--jax=${jax_kind} is not allowed; choose tpu, cuda12 or cpu" ;;
    esac
    ((${#main_args[@]} == 0)) || die "setup takes no mimojax flags (got ${main_args[*]})"
    run python3 -m venv "$venv"
    run "${venv}/bin/python" -m pip install --quiet --upgrade pip
    run "${venv}/bin/python" -m pip install --quiet -e "$repo" "$jax_spec" gcsfs \
      google-cloud-storage
    ;;
  train)
    need_main_args "train needs mimojax.main flags (--config=... --workdir=...)"
    log="${log_dir}/train-$(hostname).log"
    cmd=("${venv}/bin/python" -m mimojax.main "${main_args[@]}" --distributed)
    if ((dry_run)); then
      echo "mkdir -p $(quote "$log_dir")"
      [[ -z "$data_dir" ]] || echo "export TFDS_DATA_DIR=$(quote "$data_dir")"
      echo "cd $(quote "$repo")"
      echo "echo \$\$ > $(quote "${log_dir}/train.pid")"
      echo "exec $(quote "${cmd[@]}") > >(tee -a $(quote "$log")) 2>&1"
      exit 0
    fi
    mkdir -p "$log_dir"
    [[ -z "$data_dir" ]] || export TFDS_DATA_DIR="$data_dir"
    cd "$repo"
    echo $$ > "${log_dir}/train.pid"
    exec "${cmd[@]}" > >(tee -a "$log") 2>&1
    ;;
  kill)
    pid_file="${log_dir}/train.pid"
    if ((dry_run)); then
      echo "kill -KILL \$(cat $(quote "$pid_file"))  # if that pid still runs mimojax.main"
      exit 0
    fi
    if [[ ! -f "$pid_file" ]]; then
      echo "run_on_host.sh: no ${pid_file}; nothing to kill" >&2
      exit 0
    fi
    pid="$(cat "$pid_file")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' < "/proc/${pid}/cmdline" 2>/dev/null \
        | grep -q "mimojax.main"; then
      echo "run_on_host.sh: killing stale training process ${pid} on $(hostname)" >&2
      kill -KILL "$pid"
    else
      echo "run_on_host.sh: process ${pid} from ${pid_file} is not running" >&2
    fi
    rm -f "$pid_file"
    ;;
esac
