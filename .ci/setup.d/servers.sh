#!/usr/bin/env bash
# The real servers the tests spawn: redis-server (and redis-cli), mosquitto (with mosquitto_ctrl
# and its dynamic-security plugin), and nats-server, a broker whose MQTT gateway cannot share
# subscriptions, for the bridge's start-up check.
set -euo pipefail
. "$(dirname "$0")/../apt.sh"
need=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/sbin/redis-server ] || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
  && command -v mosquitto_ctrl >/dev/null 2>&1 || need+=(mosquitto)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
apt_install "${need[@]}"
