#!/usr/bin/env bash
# The monitor's browser tests drive real headless Chromium through chromedriver.
set -euo pipefail
. "$(dirname "$0")/../apt.sh"
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
apt_install "${need[@]}"
command -v chromium >/dev/null && command -v chromedriver >/dev/null
