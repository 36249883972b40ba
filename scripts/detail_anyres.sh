#!/usr/bin/env bash
# The AnyRes detail experiment (docs/anyres.md): the same tiny parts, data and steps trained as arch llava (one
# padded square) and as arch llava_next (tower-sized crops + base), then scored on held-out shape / colour questions.
# Usage: scripts/detail_anyres.sh [OUT=runs/detail] [extra key=value overrides for both stages]
# env: N (training images, 2000), HELDOUT (held-out questions, 200), SEED (data and training, 0),
#      ARCHS ("llava llava_next"), SEQUENTIAL=1 (one arm after the other; default: both at once, one torch thread
#      each), VISTUNE, PYTHON
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-runs/detail}; shift || true
VISTUNE=${VISTUNE:-vistune}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # the tiny models gain nothing from more threads; a loaded CPU loses ~10x

[[ -f "$OUT/data/heldout.json" ]] || $VISTUNE data synth --task detail --out "$OUT/data" --n "${N:-2000}" \
  --heldout "${HELDOUT:-200}" --seed "${SEED:-0}"
# pretrained tiny CLIP + Llama, shared by both arms; stops if the tower cannot tell the shapes apart in a crop
[[ -f "$OUT/parts/llm/config.json" ]] || $PYTHON scripts/detail_parts.py "$OUT/data" "$OUT/parts"

arm() {  # align -> instruct -> held-out eval of one arch, logged to $OUT/$1/log.txt
  local arch=$1; shift
  local run="$OUT/$arch" parts="model.arch=$arch model.vision=$OUT/parts/vision model.llm=$OUT/parts/llm seed=${SEED:-0}"
  mkdir -p "$run"
  {
    $VISTUNE train configs/detail/align.yaml $parts data.path="$OUT/data/align.json" data.image_root="$OUT/data" \
      output_dir="$run/align" "$@"
    $VISTUNE train configs/detail/instruct.yaml $parts data.path="$OUT/data/instruct.json" \
      data.image_root="$OUT/data" model.projector="$run/align" output_dir="$run/instruct" "$@"
    $VISTUNE eval run --model "$run/instruct" --benchmark shapes --data "$OUT/data/heldout.json" \
      --image-root "$OUT/data" --out "$run/eval"
  } > "$run/log.txt" 2>&1 || { echo "$arch failed: see $run/log.txt" >&2; return 1; }
  echo "$arch done: $run/eval/metrics.json"
}

pids=()
for arch in ${ARCHS:-llava llava_next}; do
  if [[ -n "${SEQUENTIAL:-}" ]]; then arm "$arch" "$@"; else arm "$arch" "$@" & pids+=($!); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
if [[ -f "$OUT/llava/eval/metrics.json" && -f "$OUT/llava_next/eval/metrics.json" ]]; then
  $VISTUNE eval compare "$OUT/llava/eval" "$OUT/llava_next/eval"  # per question type: shape, colour
fi
