#!/usr/bin/env bash
# Snakemake runs this once in the new environment, right after creating it from the .yaml beside it
# (`--use-conda`), in the working directory, which is the repository root. The .yaml holds what this stage needs,
# so the asearcher package goes in without its own dependencies (the full list is in pyproject.toml).
set -euo pipefail
if [[ ! -f pyproject.toml ]]; then
  echo "post-deploy: run snakemake from the repository root (no pyproject.toml in $PWD)" >&2
  exit 1
fi
python -m pip install --no-deps -e .
