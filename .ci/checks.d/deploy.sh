#!/usr/bin/env bash
# Deployment checks beyond `cargo test --workspace` (which already runs checks/tests: compose,
# EMQX, Grafana and Prometheus files, the mosquitto ACL on a real broker, the real bridge's
# /metrics): the native demo, started, used and stopped for real.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash -n scripts/demo
bash checks/demo_smoke.sh
