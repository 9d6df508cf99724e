#!/usr/bin/env bash
# Runs a walt job on every host of a Cloud TPU VM pod slice. jax.distributed is
# auto-detected on TPU, so no process flags are needed. Usage:
#   TPU=my-v5p-64 ZONE=us-east5-a launch/tpu_pod.sh --config=... --workdir=gs://...
# The repository must be at ~/walt on every host (e.g. cloned by a first
# `--command="git clone ... ~/walt && pip install -e ~/walt"`).
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}"
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
  --command="cd ~/walt && python -m walt.main$args 2>&1 | tee -a ~/walt_job.log"
