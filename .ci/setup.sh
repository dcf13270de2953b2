#!/usr/bin/env bash
# Installs everything voiceguard needs on a fresh Debian/Ubuntu machine: system tools, a venv, the package.
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
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/voiceguard --version
