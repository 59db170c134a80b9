#!/usr/bin/env bash
# One mimojax job over several GPU hosts (ssh), one process per host or per GPU.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/gpu_hosts.sh --hosts=HOST[,HOST...] [options] [--] mimojax.main flags...

Starts one jax.distributed job over GPU machines reachable with ssh. Every host must hold
this repository at --repo (same path everywhere) with its environment installed
(`bash launch/run_on_host.sh setup --jax=cuda12`), and --workdir must be a directory all
hosts share (NFS, gs://...), since every process writes its part of each Orbax checkpoint.

Process ids: host h (0-based, in --hosts order) runs processes h*G ... h*G+G-1, where G is
--processes-per-host (1: one process per host seeing all its GPUs; N: one process per GPU,
process h*N+g sees GPU g only through CUDA_VISIBLE_DEVICES). Process 0 hosts the coordinator
at --coordinator (default <first host>:<port>). Each process runs
  ssh HOST 'cd REPO && MIMOJAX_COORDINATOR=... MIMOJAX_NUM_PROCESSES=... MIMOJAX_PROCESS_ID=...
            bash launch/run_on_host.sh train -- <flags>'
The ssh outputs go to <log-dir>/process_<i>.log; the script waits for all of them and exits
non-zero if any process failed.

Options:
  --hosts=H1,H2,...         hosts in process order (required)
  --processes-per-host=G 1: one process per host (default); N: one process per GPU
  --coordinator=HOST:PORT   default: first host, --port
  --port=PORT               coordinator port (default 12355)
  --repo=DIR                repository path on the hosts (default: this checkout's path)
  --ssh=CMD                 ssh command (default: ssh)
  --log-dir=DIR             local directory for per-process logs (default logs/gpu_hosts)
  --heartbeat=SECONDS       MIMOJAX_HEARTBEAT_TIMEOUT for the processes (default 100)
  --dry-run                 print the exact commands, run nothing
  -h, --help                show this help

Example (2 hosts x 8 GPUs, one process per GPU):
  launch/gpu_hosts.sh --hosts=gpu-a,gpu-b --processes-per-host=8 -- \
      --config=experiments/synthetic.py:model=mimoformer,task=ih,seeds=8 --workdir=/nfs/runs/ih
EOF
}


hosts=""
per_host=1
coordinator=""
port=12355
repo="$repo_root"
ssh_cmd="ssh"
log_dir="logs/gpu_hosts"
heartbeat=100
parse_options --hosts=hosts --processes-per-host=per_host --coordinator=coordinator \
  --port=port --repo=repo --ssh=ssh_cmd --log-dir=log_dir --heartbeat=heartbeat -- "$@"

[[ -n "$hosts" ]] || { usage >&2; die "--hosts is required"; }
need_positive --processes-per-host "$per_host"
need_positive --port "$port" "a port number"
need_positive --heartbeat "$heartbeat"
need_main_args "mimojax.main flags are required (--config=... --workdir=...)"
printf '%s\n' "${main_args[@]}" | grep -q -- '^--workdir' \
  || die "--workdir is required and must be shared by all hosts"
IFS=',' read -r -a host_list <<< "$hosts"
coordinator="${coordinator:-${host_list[0]}:${port}}"
count=$((${#host_list[@]} * per_host))
read -r -a ssh_words <<< "$ssh_cmd"

remote_command() {  # remote_command PROCESS_ID GPU -> the shell line run on the host
  local visible=""
  ((per_host == 1)) || visible="CUDA_VISIBLE_DEVICES=$2 "
  echo "cd $(quote "$repo") && ${visible}MIMOJAX_COORDINATOR=$(quote "$coordinator")" \
       "MIMOJAX_NUM_PROCESSES=${count} MIMOJAX_PROCESS_ID=$1" \
       "MIMOJAX_HEARTBEAT_TIMEOUT=${heartbeat}" \
       "bash launch/run_on_host.sh train --log-dir=\"\$HOME/mimojax_logs/process_$1\" --" \
       "$(quote "${main_args[@]}")"
}

commands=()
for h in "${!host_list[@]}"; do
  for ((g = 0; g < per_host; g++)); do
    i=$((h * per_host + g))
    commands+=("$(quote "${ssh_words[@]}" "${host_list[h]}" "$(remote_command "$i" "$g")")")
  done
done

if ((dry_run)); then
  echo "mkdir -p $(quote "$log_dir")"
  for i in "${!commands[@]}"; do
    echo "${commands[i]} > $(quote "${log_dir}/process_${i}.log") 2>&1 &"
  done
  echo "wait  # all ${count} processes; any failure fails the run"
  exit 0
fi

mkdir -p "$log_dir"
pids=()
for i in "${!commands[@]}"; do
  eval "${commands[i]}" > "${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done
echo "gpu_hosts.sh: ${count} processes over ${#host_list[@]} hosts, coordinator ${coordinator}," \
     "logs in ${log_dir}" >&2
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[i]}"; then
    echo "gpu_hosts.sh: process ${i} failed (log: ${log_dir}/process_${i}.log)" >&2
    failed=1
  fi
done
exit "$failed"
