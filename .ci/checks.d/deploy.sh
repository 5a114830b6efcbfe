#!/usr/bin/env bash
# Deployment checks beyond `cargo test --workspace` (which already runs checks/tests: compose,
# EMQX, Grafana and Prometheus files, the mosquitto ACL on a real broker, the real bridge's
# /metrics): promtool on the Prometheus config, the shell scripts' syntax, and the native demo
# started, used (with a real Prometheus running the dashboards' queries) and stopped for real.
set -euo pipefail
cd "$(dirname "$0")/../.."
promtool check config prometheus/prometheus.yml
bash -n scripts/demo
sh -n emqx/entrypoint.sh
bash checks/demo_smoke.sh
