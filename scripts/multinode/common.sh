# Sourced by the multi-node launch scripts: repo root, recipe argument, and the grad_accum that keeps a
# global batch. GLOBAL_BATCH (optional) = per_device_batch_size x grad_accum x all processes of all nodes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if (( $# < 1 )); then
  echo "usage: $0 CONFIG [key=value ...]" >&2
  exit 2
fi
CONFIG=$1
shift
OVERRIDES=("$@")

# grad_accum_for WORLD: prints "optim.grad_accum=N" keeping GLOBAL_BATCH for WORLD processes (nothing if unset)
grad_accum_for() {
  [[ -z ${GLOBAL_BATCH:-} ]] && return 0
  python - "$CONFIG" "$GLOBAL_BATCH" "$1" "${OVERRIDES[@]}" <<'PY'
import sys
from vistune.train.run.config import load_config
config = load_config(sys.argv[1], sys.argv[4:])
per_step = config.optim.per_device_batch_size * int(sys.argv[3])
accum, rest = divmod(int(sys.argv[2]), per_step)
if accum < 1 or rest:
    sys.exit(f"GLOBAL_BATCH {sys.argv[2]} is not a multiple of {per_step} (per-device batch x processes)")
print(f"optim.grad_accum={accum}")
PY
}
