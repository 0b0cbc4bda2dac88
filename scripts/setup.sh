#!/usr/bin/env bash
# Create ./.venv (or $VENV) with the pinned stack and install recbole-hnlm in editable mode, building the C++
# extension recbole_hnlm._C. Idempotent: dependencies are reinstalled only when requirements/*.txt change, and the
# extension is rebuilt only when csrc/, setup.py, pyproject.toml or the pinned stack change.
#
# Why not a plain `pip install -e .`: recbole 1.2.1's own requirements pull ray, numpy 2, pandas 3, scipy >= 1.13
# and a multi-GB CUDA torch, which break RecBole (docs/install.md). So torch is pinned (the CPU wheel where pip's
# index has it, as on our machines; plain PyPI serves the CUDA build: choose with TORCH_SPEC, e.g.
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"), recbole is installed with
# --no-deps, and its real runtime dependencies come from requirements/runtime.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

stamp="$VENV/.recbole_hnlm_requirements"
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)-$TORCH_SPEC
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing the pinned stack (torch, recbole --no-deps, requirements/*.txt)"
  "${PIP[@]}" install -q --upgrade "pip<25"
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q $TORCH_SPEC
  "${PIP[@]}" install -q --no-deps recbole==1.2.1
  "${PIP[@]}" install -q -r requirements/runtime.txt -r requirements/llm.txt -r requirements/test.txt
  "${PIP[@]}" install -q --no-deps -r requirements/llm-nodeps.txt
  echo "$want" > "$stamp"
fi

# The editable install rebuilds the extension from scratch (minutes): skip it when the build inputs are those of the
# last successful build and the installed package imports from outside the repository.
ext_stamp="$VENV/.recbole_hnlm_extension"
# (the stack's stamp is part of it: a new torch needs a rebuild even when the import happens to succeed)
ext_want=$( (echo "$want"; cat setup.py pyproject.toml; find csrc -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -d' ' -f1)
venv_python="$(cd "$VENV" && pwd)/bin/python"
if [ "$(cat "$ext_stamp" 2>/dev/null)" = "$ext_want" ] && (cd / && "$venv_python" -c "import torch, recbole_hnlm._C") 2>/dev/null; then
  echo "[setup] recbole_hnlm._C is up to date (csrc/, setup.py and the stack unchanged since the last build)"
else
  echo "[setup] building recbole_hnlm._C and installing recbole-hnlm (editable)"
  # the venv's bin first: torch builds with ninja (parallel, MAX_JOBS) only when it finds the venv's ninja on PATH
  PATH="$(cd "$VENV" && pwd)/bin:$PATH" MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" install -q --no-build-isolation --no-deps -e .
  echo "$ext_want" > "$ext_stamp"
fi
"$VENV/bin/python" -c "import recbole_hnlm.ops as ops; print('[setup] C++ extension loaded:', ops.WITH_EXT)"
