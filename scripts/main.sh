#!/usr/bin/env bash
# Set up whatever is missing, then run the main job: LightGCN trained with HNLMRec negatives on the embedded
# ml-100k (the LLM precompute runs first when its cache is missing). Extra arguments are passed to
# run_recbole_hnlm.py, e.g. scripts/main.sh --epochs=5 or scripts/main.sh --sampler=MixGCF.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/python" run_recbole_hnlm.py --model=LightGCN --sampler=HNLMRec --dataset=ml-100k "$@"
