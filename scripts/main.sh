#!/usr/bin/env bash
# Set up whatever is missing, then run the main job: LightGCN trained with HNLMRec negatives on the embedded
# ml-100k. The LLM precompute (SmolLM2-135M writes user profiles and hard negatives, MiniLM embeds them) runs first
# when its cache is missing. On 2 CPU cores the semantic pipeline writes about 0.3-0.4 negatives per second, so the
# default main job precomputes a seeded subset of 32 training pairs and trains the other pairs with the random
# negative (hnlm_missing=random); raise hnlm_max_pairs on a GPU. Extra arguments are passed to run_recbole_hnlm.py
# (e.g. scripts/main.sh --show_progress=False); RecBole refuses a key given twice with different values, so to
# change the settings below run .venv/bin/python run_recbole_hnlm.py with your own.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/python" run_recbole_hnlm.py --model=LightGCN --sampler=HNLMRec --dataset=ml-100k \
  --hnlm_max_pairs=32 --hnlm_missing=random --hnlm_item_profiles=False --epochs=20 "$@"
