#!/usr/bin/env bash
# The GPU check: on a CUDA machine with a fresh clone, installs what it needs, then checks and measures vistune on
# one GPU in at most 8 minutes (vistune/bench/gpu_check.py: bf16 LoRA / QLoRA on SmolLM2-135M + a tiny tower, packed
# flash-attention vs padded SDPA, Liger on vs off, the memory model vs max_memory_allocated, MFU vs the datasheet,
# stage rl with transformers vs vLLM rollouts when vLLM is installed).
# Writes runs/gpu_check/gpu_check.json and runs/gpu_check/table.md; record the table in docs/performance.md.
#   bash scripts/gpu_check.sh                 # on the GPU machine
#   bash scripts/gpu_check.sh --dry-run       # anywhere (or GPU_CHECK_DRY=1): says what it would run, runs nothing
# Extra arguments go to the Python module (e.g. --only lora --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY:-0}
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then DRY=1; fi
done
if [ "$DRY" = 1 ]; then
  PY=${GPU_CHECK_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
  echo "gpu_check (dry run): would install: scripts/setup_env.sh (keeps a CUDA torch), pip install -e '.[liger]',"
  echo "  flash-attn only as a prebuilt wheel (--only-binary: never compiled here); then, limited to 480 s:"
  args=()
  for arg in "$@"; do [ "$arg" = "--dry-run" ] || args+=("$arg"); done
  exec "$PY" -m vistune.bench.gpu_check --dry-run ${args[@]+"${args[@]}"}
fi
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no CUDA GPU here; run with --dry-run to see the plan" >&2
  exit 2
fi
nvidia-smi -L
if ! .venv/bin/python -c "import vistune, torch; assert torch.cuda.is_available()" 2>/dev/null; then
  bash scripts/setup_env.sh   # a fresh clone (keeps a CUDA torch already in .venv); needs the package index
fi
.venv/bin/python -m pip install -q -e ".[liger]" || echo "gpu_check: liger-kernel not installed: its variants are skipped"
.venv/bin/python -m pip install -q --only-binary=:all: flash-attn \
  || echo "gpu_check: no prebuilt flash-attn wheel for this torch / CUDA: the packed runs use vistune_packed"
.venv/bin/python -c "import vllm" 2>/dev/null \
  || echo "gpu_check: vLLM is not in .venv: the rl-vllm check records that (pip install vllm, matching .venv's torch)"
exec timeout 480 .venv/bin/python -m vistune.bench.gpu_check "$@"
