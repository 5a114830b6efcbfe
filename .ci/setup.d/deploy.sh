#!/usr/bin/env bash
# Setup for the deployment checks: curl for the demo smoke test (redis-server and mosquitto,
# which ships mosquitto_passwd, are installed by .ci/run).
set -euo pipefail
if ! command -v curl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq curl
fi
command -v mosquitto_passwd >/dev/null 2>&1 || { echo "mosquitto_passwd missing (apt-get install -y mosquitto)"; exit 1; }
