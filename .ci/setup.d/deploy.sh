#!/usr/bin/env bash
# Setup for the deployment checks: curl, pgrep and setsid for the demo smoke test, erlang-base for
# erl, and Debian's prometheus package for promtool and a real Prometheus that runs the
# dashboards' queries against the demo, and openssl for the certificate helper. Redis and
# mosquitto (which ships mosquitto_ctrl and the dynamic-security plugin) are installed by
# servers.sh.
set -euo pipefail
. "$(dirname "$0")/../apt.sh"
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# erl reads EMQX's acl.conf for the policy checks (file:consult, as EMQX does).
command -v erl >/dev/null 2>&1 || need+=(erlang-base)
# The smoke test lists a process group's command lines (pgrep) and starts the demo in its own
# session (setsid) with SIGINT restored (env --default-signal, coreutils 8.31 or later).
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v setsid >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
apt_install "${need[@]}"
command -v mosquitto_ctrl >/dev/null 2>&1 || { echo "mosquitto_ctrl missing (apt-get install -y mosquitto)"; exit 1; }
plugin=""
for f in /usr/lib/*/mosquitto_dynamic_security.so /usr/lib/mosquitto_dynamic_security.so; do
  [ -e "$f" ] && plugin="$f"
done
[ -n "$plugin" ] || { echo "mosquitto's dynamic-security plugin is missing (apt-get install -y mosquitto)"; exit 1; }
