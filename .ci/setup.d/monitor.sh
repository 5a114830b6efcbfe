#!/usr/bin/env bash
# The monitor's browser tests drive real headless Chromium through chromedriver.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver
command -v chromium && command -v chromedriver
