#!/usr/bin/env bash
# Cloud TPU VM pod slices: create, copy the code, install, train on all workers, logs, delete.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh COMMAND [options] [--] [mimojax.main flags...]

Commands (each runs gcloud; --dry-run prints the exact commands instead):
  create   gcloud compute tpus tpu-vm create NAME (accelerator type, zone, runtime version)
  copy     pack this checkout (no .git, .venv, runs/), scp it to every worker, unpack into
           ~/mimojax
  setup    on every worker: launch/run_on_host.sh setup --jax=tpu (venv + jax[tpu] + mimojax)
  kill     on every worker: kill a stale training process left by an earlier run
  train    kill, then run the same `python -m mimojax.main <flags> --distributed` on every
           worker at once (launch/run_on_host.sh train; JAX detects the pod itself); blocks
           until all workers finish; each worker logs to ~/mimojax_logs/train-<host>.log
  logs     every worker uploads its log to <workdir>/logs/, then they are copied to --log-dir
  delete   delete the TPU VM
  all      create, copy, setup, train, logs (and delete with --delete-at-end)

Options:
  --name=NAME               TPU VM name (default: mimojax-$USER)
  --zone=ZONE               default us-central2-b
  --accelerator-type=TYPE   default v4-32 (4 hosts x 4 chips)
  --version=RUNTIME         TPU VM runtime version (default tpu-ubuntu2204-base)
  --project=PROJECT         gcloud project (default: gcloud's configured project)
  --spot                    create a Spot VM (cheaper, preemptible; see Resuming below)
  --workdir=gs://BUCKET/DIR shared run directory (train, logs); passed to mimojax.main
  --data-dir=DIR            tfds data dir on the workers (gs://... or a local path; default:
                            ~/tensorflow_datasets on each worker, where generated tasks are
                            built locally and identically)
  --log-dir=DIR             local directory for the collected logs (default tpu_logs/NAME)
  --delete-at-end           with `all`: delete the TPU VM after the logs are collected
  --dry-run                 print the exact commands, run nothing
  -h, --help                show this help

Resuming: a preempted or killed run continues from the last checkpoint in
<workdir>/checkpoints when the same train command runs again with the same --workdir:
  launch/tpu_vm.sh delete --name=NAME --zone=ZONE      # a preempted VM must be recreated
  launch/tpu_vm.sh all --name=NAME --zone=ZONE --workdir=gs://BUCKET/DIR -- --config=...

Example:
  launch/tpu_vm.sh all --accelerator-type=v4-32 --zone=us-central2-b \
      --workdir=gs://my-bucket/mimojax/ih -- \
      --config=experiments/synthetic.py:model=mimoformer,task=ih,seeds=5
EOF
}


(($#)) || { usage >&2; exit 2; }
case "$1" in
  -h|--help) usage; exit 0 ;;
  create|copy|setup|kill|train|logs|delete|all) action="$1"; shift ;;
  *) usage >&2; die "unknown command '$1'" ;;
esac

name="mimojax-${USER:-user}"
zone="us-central2-b"
accelerator="v4-32"
version="tpu-ubuntu2204-base"
project=""
spot=0
workdir=""
data_dir=""
log_dir=""
delete_at_end=0
parse_options --name=name --zone=zone --accelerator-type=accelerator --version=version \
  --project=project --spot --workdir=workdir --data-dir=data_dir --log-dir=log_dir \
  --delete-at-end -- "$@"
log_dir="${log_dir:-tpu_logs/${name}}"
rest=()  # a --workdir among the mimojax flags counts as the option
for arg in "${main_args[@]+"${main_args[@]}"}"; do
  case "$arg" in
    --workdir=*) workdir="${workdir:-${arg#*=}}" ;;
    *) rest+=("$arg") ;;
  esac
done
main_args=("${rest[@]+"${rest[@]}"}")
repo="$repo_root"
archive="${TMPDIR:-/tmp}/mimojax-${name}.tar.gz"

gcloud_common=(--zone="$zone")
[[ -z "$project" ]] || gcloud_common+=(--project="$project")

run() {  # run CMD...: print it (stdout) under --dry-run, else echo it (stderr) and run it
  if ((dry_run)); then
    quote "$@"
    return 0
  fi
  echo "+ $(quote "$@")" >&2
  "$@"
}
on_all_workers() {  # on_all_workers 'remote shell line'
  run gcloud compute tpus tpu-vm ssh "$name" "${gcloud_common[@]}" --worker=all --command "$1"
}
need_workdir() {
  [[ -n "$workdir" ]] || die "$1 needs --workdir=gs://BUCKET/DIR (shared by all workers)"
}

do_create() {
  local spot_flag=()
  ((spot == 0)) || spot_flag=(--spot)
  run gcloud compute tpus tpu-vm create "$name" "${gcloud_common[@]}" \
    --accelerator-type="$accelerator" --version="$version" "${spot_flag[@]+"${spot_flag[@]}"}"
}
do_copy() {
  run tar -czf "$archive" -C "$repo" --exclude=./.git --exclude=./.venv --exclude=./runs \
    --exclude=./tpu_logs --exclude='*/__pycache__' .
  run gcloud compute tpus tpu-vm scp "$archive" "${name}:mimojax.tar.gz" "${gcloud_common[@]}" \
    --worker=all
  on_all_workers 'rm -rf ~/mimojax && mkdir -p ~/mimojax && tar -xzf ~/mimojax.tar.gz -C ~/mimojax'
}
do_setup() { on_all_workers 'bash ~/mimojax/launch/run_on_host.sh setup --jax=tpu'; }
do_kill() { on_all_workers 'bash ~/mimojax/launch/run_on_host.sh kill'; }
do_train() {
  need_workdir train
  need_main_args "train needs mimojax.main flags after -- (--config=...)"
  local data_flag=""
  [[ -z "$data_dir" ]] || data_flag=" --data-dir=$(quote "$data_dir")"
  do_kill
  local flags
  flags="$(quote "${main_args[@]}" "--workdir=${workdir}")"
  on_all_workers "bash ~/mimojax/launch/run_on_host.sh train${data_flag} -- ${flags}"
}
do_logs() {
  need_workdir logs
  on_all_workers "gcloud storage cp ~/mimojax_logs/train-*.log $(quote "${workdir}/logs/")"
  run mkdir -p "$log_dir"
  run gcloud storage cp "${workdir}/logs/*" "$log_dir/"
}
do_delete() { run gcloud compute tpus tpu-vm delete "$name" "${gcloud_common[@]}" --quiet; }

case "$action" in
  create) do_create ;;
  copy) do_copy ;;
  setup) do_setup ;;
  kill) do_kill ;;
  train) do_train ;;
  logs) do_logs ;;
  delete) do_delete ;;
  all)
    need_workdir all
    do_create
    do_copy
    do_setup
    status=0
    do_train || status=$?
    do_logs || true
    if ((delete_at_end)); then do_delete; fi
    exit "$status"
    ;;
esac
