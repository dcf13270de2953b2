#!/usr/bin/env bash
# Installs everything voiceguard needs on a fresh Debian/Ubuntu machine: system tools, a venv, the package.
# Python packages come from requirements.lock (exact versions + sha256 hashes; regenerate with
# `bash .ci/lock.sh`). Under CI (CI=true) the venv is always made anew; elsewhere an existing .venv is
# reused only when it was built from the same lock file and still imports torch + torchaudio.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS="ffmpeg espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium chromium-driver"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
PY=${PYTHON:-python3}
"$PY" .ci/lock_inputs.py --check  # the lock matches pyproject.toml's dependencies and requirements.in
LOCK_SHA=$(sha256sum requirements.lock | cut -d' ' -f1)
fresh=1
if [ "${CI:-}" != "true" ] && [ -x .venv/bin/python ] && [ "$(cat .venv/.lock-sha256 2>/dev/null)" = "$LOCK_SHA" ] \
   && .venv/bin/python -c "import torch, torchaudio" >/dev/null 2>&1; then
  fresh=0
fi
if [ "$fresh" = 1 ]; then
  rm -rf .venv
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r .ci/uv.lock
  .venv/bin/uv pip install -q --python .venv/bin/python --require-hashes -r requirements.lock
  echo "$LOCK_SHA" > .venv/.lock-sha256
fi
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
.venv/bin/python -m voiceguard.selfcheck
.venv/bin/voiceguard --version
