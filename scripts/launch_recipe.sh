# Sourced by scripts/llava-1.5-*/*.sh after they set CONFIG, GLOBAL_BATCH and PER_DEVICE: launches
# `vistune train CONFIG` with deepspeed (default) or accelerate, keeping the published global batch.
# Env: NUM_GPUS (per node, default 8), NUM_NODES (default 1), LAUNCHER=deepspeed|accelerate, HOSTFILE (deepspeed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NUM_GPUS=${NUM_GPUS:-8}
NUM_NODES=${NUM_NODES:-1}
GRAD_ACCUM=$(( GLOBAL_BATCH / (PER_DEVICE * NUM_GPUS * NUM_NODES) ))
if (( GRAD_ACCUM < 1 )); then GRAD_ACCUM=1; fi

if [[ "${LAUNCHER:-deepspeed}" == accelerate ]]; then
  exec accelerate launch --multi_gpu --num_processes $(( NUM_GPUS * NUM_NODES )) --num_machines "$NUM_NODES" \
    -m vistune.cli train "$CONFIG" optim.grad_accum="$GRAD_ACCUM" "$@"
else
  exec deepspeed ${HOSTFILE:+--hostfile "$HOSTFILE"} --num_gpus "$NUM_GPUS" --no_local_rank \
    --module vistune.cli train "$CONFIG" optim.grad_accum="$GRAD_ACCUM" "$@"
fi
