#!/usr/bin/env bash
# K mimojax CPU processes on this machine, joined into one jax.distributed job.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/local_processes.sh [options] K [mimojax.main flags...]

Starts K processes of `python -m mimojax.main <flags> --distributed` on this machine, each on
its own CPU devices, joined through a jax.distributed coordinator on localhost. Waits for all
of them and exits non-zero if any fails; once one has failed, the others get --grace seconds
to stop by themselves (the JAX distributed service ends them after
MIMOJAX_HEARTBEAT_TIMEOUT seconds) and are then killed.

Process 0 prints to the terminal; process i also logs to <workdir>/logs/process_<i>.log.
Without --workdir, one runs/<study>/<timestamp> directory is chosen for all processes.
The global batch (train.batch_size) is split evenly: each process reads batch_size / K rows.

Options (accepted anywhere on the command line):
  --devices-per-process=N  CPU devices per process (JAX_NUM_CPU_DEVICES; default 1)
  --port=PORT              coordinator port on localhost (default: a free port)
  --grace=SECONDS          see above (default 60)
  --dry-run                print the exact commands, run nothing
  -h, --help               show this help

Environment: PYTHON (default: python, else python3); MIMOJAX_HEARTBEAT_TIMEOUT (default
here 20), MIMOJAX_INIT_TIMEOUT (default here 120), MIMOJAX_SHUTDOWN_TIMEOUT (default here
60); other variables (JAX_*, XLA_FLAGS, TFDS_DATA_DIR, ...) pass through.

Example:
  launch/local_processes.sh 2 --config=experiments/synthetic.py:model=mimoformer,task=ih,smoke
EOF
}

((BASH_VERSINFO[0] >= 4)) || die "needs bash >= 4 (this is ${BASH_VERSION})"

devices=1
port=""
grace=60
dry_run=0
count=""
main_args=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --devices-per-process=*) devices="${arg#*=}" ;;
    --port=*) port="${arg#*=}" ;;
    --grace=*) grace="${arg#*=}" ;;
    *)
      if [[ -z "$count" && "$arg" != -* ]]; then
        count="$arg"
      else
        main_args+=("$arg")
      fi ;;
  esac
done

[[ -n "$count" ]] || { usage >&2; die "missing K (number of processes)"; }
need_positive K "$count"
need_positive --devices-per-process "$devices"
need_positive --grace "$grace"
[[ -z "$port" ]] || need_positive --port "$port" "a port number"

python_bin="${PYTHON:-$(command -v python || command -v python3 || true)}"
[[ -n "$python_bin" ]] || die "no python found; set PYTHON=/path/to/python"

# One workdir for every process (each would otherwise pick its own timestamp).
workdir=""
config=""
for ((i = 0; i < ${#main_args[@]}; i++)); do
  case "${main_args[i]}" in
    --workdir=*) workdir="${main_args[i]#*=}" ;;
    --workdir) workdir="${main_args[i + 1]:-}" ;;
    --config=*) config="${main_args[i]#*=}" ;;
  esac
done
if [[ -z "$workdir" ]]; then
  [[ -n "$config" ]] || die "--config=experiments/<study>.py[:args] is required"
  study="$(basename "${config%%:*}" .py)"
  workdir="runs/${study}/$(date +%Y%m%d-%H%M%S)"
  main_args+=("--workdir=${workdir}")
fi
logdir="${workdir}/logs"

if [[ -z "$port" ]]; then
  port="$("$python_bin" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0))
print(s.getsockname()[1])')"
fi

command_for() {  # command_for I -> fills the array `cmd`
  cmd=(env JAX_PLATFORMS=cpu "JAX_NUM_CPU_DEVICES=${devices}"
       "MIMOJAX_COORDINATOR=localhost:${port}" "MIMOJAX_NUM_PROCESSES=${count}"
       "MIMOJAX_PROCESS_ID=$1"
       "MIMOJAX_HEARTBEAT_TIMEOUT=${MIMOJAX_HEARTBEAT_TIMEOUT:-20}"
       "MIMOJAX_INIT_TIMEOUT=${MIMOJAX_INIT_TIMEOUT:-120}"
       "MIMOJAX_SHUTDOWN_TIMEOUT=${MIMOJAX_SHUTDOWN_TIMEOUT:-60}"
       "$python_bin" -m mimojax.main "${main_args[@]}" --distributed)
}

if ((dry_run)); then
  echo "mkdir -p $(quote "$logdir")"
  for ((i = 0; i < count; i++)); do
    command_for "$i"
    if ((i == 0)); then
      echo "$(quote "${cmd[@]}") > >(tee $(quote "${logdir}/process_0.log")) 2>&1 &"
    else
      echo "$(quote "${cmd[@]}") > $(quote "${logdir}/process_${i}.log") 2>&1 &"
    fi
  done
  echo "wait  # all ${count} processes; any failure fails the run"
  exit 0
fi

mkdir -p "$logdir"
live=()  # started and not yet reaped (so their pids cannot have been reused)
kill_live() {
  for pid in "${live[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}
on_signal() {
  echo "local_processes.sh: interrupted; killing the processes" >&2
  kill_live
  exit 130
}
trap on_signal INT TERM

declare -A index_of
for ((i = 0; i < count; i++)); do
  command_for "$i"
  if ((i == 0)); then
    "${cmd[@]}" > >(tee "${logdir}/process_0.log") 2>&1 &
  else
    "${cmd[@]}" > "${logdir}/process_${i}.log" 2>&1 &
  fi
  live+=("$!")
  index_of[$!]=$i
done
echo "local_processes.sh: ${count} processes (pids ${live[*]}), coordinator localhost:${port}," \
     "logs in ${logdir}" >&2

finished() {  # finished PID: true once the process has exited (zombie or gone)
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [[ -z "$state" || "$state" == Z* ]]
}

failed=()
deadline=""  # after the first failure: when the remaining processes get killed
while ((${#live[@]})); do
  still=()
  for pid in "${live[@]}"; do
    if ! finished "$pid"; then
      still+=("$pid")
      continue
    fi
    status=0
    wait "$pid" || status=$?
    i=${index_of[$pid]}
    if ((status != 0)); then
      failed+=("process ${i} exited with status ${status} (log: ${logdir}/process_${i}.log)")
      if [[ -z "$deadline" ]]; then
        echo "local_processes.sh: process ${i} failed; the others get ${grace}s to stop" >&2
        deadline=$((SECONDS + grace))
      fi
    fi
  done
  live=("${still[@]+"${still[@]}"}")
  if [[ -n "$deadline" ]] && ((SECONDS >= deadline && ${#live[@]})); then
    echo "local_processes.sh: grace period over; killing pids ${live[*]}" >&2
    kill_live
    deadline=$((SECONDS + 3600))  # reaped on the next rounds
  fi
  ((${#live[@]} == 0)) || sleep 1
done

if ((${#failed[@]})); then
  printf 'local_processes.sh: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "local_processes.sh: all ${count} processes finished; outputs in ${workdir}" >&2
