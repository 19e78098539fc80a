#!/usr/bin/env bash
# Install a headless browser for tests/test_docs.py (the documentation site is opened in a real
# browser). Debian/Ubuntu: the `chromium` package (and its driver, for anyone using selenium).
# Does nothing when a chromium is already on PATH. Needs root (or sudo) and the package mirror.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "chromium present: $(command -v chromium || command -v chromium-browser)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium chromium-driver
chromium --version
