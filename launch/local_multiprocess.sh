#!/usr/bin/env bash
# Runs a walt job as N processes on this machine (each with its own fake CPU
# devices), the way a multi-host pod runs it. Usage:
#   launch/local_multiprocess.sh N --config=... --workdir=... [flags]
set -euo pipefail
n=${1:?number of processes}; shift
port=${WALT_COORDINATOR_PORT:-12355}
devices=${WALT_DEVICES_PER_PROCESS:-4}
pids=()
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$devices" \
    python -m walt.main "$@" --coordinator_address="localhost:$port" \
      --num_processes="$n" --process_id="$i" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
