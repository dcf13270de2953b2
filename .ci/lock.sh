#!/usr/bin/env bash
# Regenerates requirements.lock (exact versions + sha256 hashes) from requirements.in with uv.
# Run after changing dependencies in pyproject.toml; commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
command -v uv >/dev/null 2>&1 && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ] || python3 -m pip install -q "uv==$UV_VERSION"
uv pip compile requirements.in --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --no-emit-package voiceguard \
  --annotation-style line --custom-compile-command "bash .ci/lock.sh" -o requirements.lock -q
python3 .ci/lock_inputs.py >> requirements.lock  # what the lock was compiled from (checked by .ci/setup.sh)
