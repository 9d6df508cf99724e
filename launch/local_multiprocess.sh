#!/usr/bin/env bash
# Runs a walt job as N processes on this machine (each with its own fake CPU
# devices), the way a multi-host pod runs it. Usage:
#   launch/local_multiprocess.sh [--dry-run] N --config=... --workdir=... [flags]
# WALT_DEVICES_PER_PROCESS (default 4), WALT_COORDINATOR_PORT (12355).
# --dry-run prints the N commands instead of running them.
set -euo pipefail
dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
n=${1:?usage: launch/local_multiprocess.sh [--dry-run] N --config=... --workdir=...}
shift
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
  echo "local_multiprocess.sh: N must be a positive integer, got '$n'" >&2
  exit 2
fi
port=${WALT_COORDINATOR_PORT:-12355}
devices=${WALT_DEVICES_PER_PROCESS:-4}
pids=()
for ((i = 0; i < n; i++)); do
  cmd=(env "XLA_FLAGS=--xla_force_host_platform_device_count=$devices"
       python -m walt.main "$@" --coordinator_address="localhost:$port"
       --num_processes="$n" --process_id="$i")
  if ((dry_run)); then
    printf '%q ' "${cmd[@]}"
    printf '\n'
    continue
  fi
  "${cmd[@]}" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
