#!/usr/bin/env bash
# Cloud TPU VM slices for walt: create, set up, run a job, read its log,
# delete. Every host of the slice runs the same command (--worker=all);
# jax.distributed finds its peers on its own on TPU VMs.
#
#   launch/tpu_vm.sh [--dry-run] create           # TPU ZONE ACCELERATOR
#   launch/tpu_vm.sh [--dry-run] setup            # TPU ZONE REPO [BRANCH]
#   launch/tpu_vm.sh [--dry-run] run --config=configs/walt/k600.py \
#       --workdir=/mnt/bucket/k600   # TPU ZONE (gcsfuse mount; gs:// later)
#   launch/tpu_vm.sh [--dry-run] logs             # TPU ZONE [WORKER] [LOG_LINES]
#   launch/tpu_vm.sh [--dry-run] delete           # TPU ZONE
#
# Variables: TPU (VM name), ZONE, ACCELERATOR (e.g. v5p-64), RUNTIME (TPU
# software version, default v2-alpha-tpuv5), PROJECT (optional), SPOT=1 (spot
# capacity), REPO (git URL of walt to clone), BRANCH (default main). No
# credentials are read or written here: gcloud uses the caller's login.
# --dry-run prints the gcloud commands instead of running them.
set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
action="${1:-}"
shift || true

usage() {
  sed -n '2,18p' "$0" >&2
  exit 2
}

need() {
  local name
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      echo "tpu_vm.sh $action: set $name (see launch/tpu_vm.sh)" >&2
      exit 2
    fi
  done
}

run() {
  if ((dry_run)); then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

project=()
if [[ -n "${PROJECT:-}" ]]; then
  project=(--project="$PROJECT")
fi

ssh_all() {
  run gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" "${project[@]}" \
    --worker="${WORKER:-all}" --command="$1"
}

case "$action" in
  create)
    need TPU ZONE ACCELERATOR
    spot=()
    if [[ "${SPOT:-0}" == 1 ]]; then
      spot=(--spot)
    fi
    run gcloud compute tpus tpu-vm create "$TPU" --zone="$ZONE" \
      "${project[@]}" --accelerator-type="$ACCELERATOR" \
      --version="${RUNTIME:-v2-alpha-tpuv5}" "${spot[@]}"
    ;;
  setup)
    # Idempotent: clones or fast-forwards ~/walt, (re)uses ~/walt_venv.
    need TPU ZONE REPO
    branch="${BRANCH:-main}"
    ssh_all "set -e
if [ -d ~/walt/.git ]; then
  git -C ~/walt fetch origin $(printf '%q' "$branch")
  git -C ~/walt checkout $(printf '%q' "$branch")
  git -C ~/walt merge --ff-only FETCH_HEAD
else
  git clone --branch $(printf '%q' "$branch") $(printf '%q' "$REPO") ~/walt
fi
[ -d ~/walt_venv ] || python3 -m venv ~/walt_venv
~/walt_venv/bin/pip install --quiet -e ~/walt 'jax[tpu]'"
    ;;
  run)
    need TPU ZONE
    if (($# == 0)); then
      echo 'tpu_vm.sh run: give the walt.main flags (--config=... --workdir=...)' >&2
      exit 2
    fi
    # nohup: the job outlives the ssh session; `logs` reads its output.
    ssh_all "cd ~/walt && nohup ~/walt_venv/bin/python -m walt.main$(printf ' %q' "$@") > ~/walt_job.log 2>&1 < /dev/null &"
    ;;
  logs)
    need TPU ZONE
    WORKER="${WORKER:-0}" ssh_all "tail -n ${LOG_LINES:-100} ~/walt_job.log"
    ;;
  delete)
    need TPU ZONE
    run gcloud compute tpus tpu-vm delete "$TPU" --zone="$ZONE" \
      "${project[@]}" --quiet
    ;;
  *)
    usage
    ;;
esac
