#!/usr/bin/env bash
# Set up whatever is missing, then run the main job: LightGCN trained with HNLMRec negatives on the embedded
# ml-100k (python run_recbole_hnlm.py --model=LightGCN --sampler=HNLMRec --dataset=ml-100k). When its artifacts are
# missing, the run first builds them, each stage resumable and cached under saved/hnlm/ml-100k/: the MixGCF teacher
# (LightGCN + MixGCF on the training split), the LoRA fine-tuning of SmolLM2-135M-Instruct on the hybrid prompt, and
# one [EOS] negative embedding for every training pair (docs/llm.md). Extra arguments are passed to the run script
# (e.g. scripts/main.sh --show_progress=False --epochs=50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/python" run_recbole_hnlm.py --model=LightGCN --sampler=HNLMRec --dataset=ml-100k "$@"
