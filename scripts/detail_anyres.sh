#!/usr/bin/env bash
# The AnyRes detail experiment (docs/anyres.md): the same tiny parts, data and steps trained as arch llava (one
# padded square) and as arch llava_next (tower-sized crops + base), then scored on held-out shape / colour questions.
# Usage: scripts/detail_anyres.sh [OUT=runs/detail] [extra key=value overrides for both stages]; env N, ARCHS
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-runs/detail}; shift || true
VISTUNE=${VISTUNE:-vistune}

PYTHON=${PYTHON:-python}

[[ -f "$OUT/data/heldout.json" ]] || $VISTUNE data synth --task detail --out "$OUT/data" --n "${N:-1000}" --seed 0
# pretrained tiny CLIP + Llama (the quickstart's pretraining), shared by both arms
[[ -f "$OUT/parts/llm/config.json" ]] || $PYTHON scripts/detail_parts.py "$OUT/data" "$OUT/parts" 300 200
for arch in ${ARCHS:-llava llava_next}; do   # ARCHS=llava_next runs one arm (e.g. both arms in parallel)
  run="$OUT/$arch"
  $VISTUNE train configs/detail/align.yaml model.arch=$arch model.vision="$OUT/parts/vision" \
    model.llm="$OUT/parts/llm" data.path="$OUT/data/align.json" \
    data.image_root="$OUT/data" output_dir="$run/align" "$@"
  $VISTUNE train configs/detail/instruct.yaml model.arch=$arch model.vision="$OUT/parts/vision" \
    model.llm="$OUT/parts/llm" data.path="$OUT/data/instruct.json" \
    data.image_root="$OUT/data" model.projector="$run/align" output_dir="$run/instruct" "$@"
  $VISTUNE eval run --model "$run/instruct" --benchmark shapes --data "$OUT/data/heldout.json" \
    --image-root "$OUT/data" --out "$run/eval"
done
