#!/usr/bin/env bash
# Multi-node `vistune train` with the DeepSpeed launcher.
#   Head node only, over ssh (pdsh):   HOSTFILE=hostfile scripts/multinode/deepspeed.sh CONFIG [key=value ...]
#   Every node, no ssh (SLURM, k8s):   NODE_RANK=0..N-1 MASTER_ADDR=<node 0 ip> HOSTFILE=hostfile scripts/multinode/deepspeed.sh ...
# Env: HOSTFILE (required; "hostname slots=GPUS" per line, node 0 first), NODE_RANK, MASTER_ADDR, MASTER_PORT
#      (default 29500), GLOBAL_BATCH (optional; sets optim.grad_accum to keep it across all GPUs).
# The recipe names the DeepSpeed JSON (deepspeed: configs/deepspeed/zero3.json); output_dir must be on storage
# every node sees (rank 0 writes checkpoints, all ranks read them to resume).
source "$(dirname "$0")/common.sh"
: "${HOSTFILE:?set HOSTFILE to a hostfile (see scripts/multinode/hostfile.example)}"
WORLD=$(awk '!/^[[:space:]]*(#|$)/ { n = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) n = substr($i, 7); s += n } END { print s }' "$HOSTFILE")
ACCUM=$(grad_accum_for "$WORLD")
LAUNCH=(deepspeed --hostfile "$HOSTFILE" --master_port "${MASTER_PORT:-29500}" --no_local_rank)
if [[ -n ${NODE_RANK:-} ]]; then
  : "${MASTER_ADDR:?with NODE_RANK, set MASTER_ADDR to the address of node 0}"
  LAUNCH+=(--no_ssh --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR")
elif [[ -n ${MASTER_ADDR:-} ]]; then
  LAUNCH+=(--master_addr "$MASTER_ADDR")
fi
exec "${LAUNCH[@]}" --module vistune.cli train "$CONFIG" ${ACCUM:+"$ACCUM"} "${OVERRIDES[@]}"
