#!/usr/bin/env bash
# Deployment checks beyond `cargo test --workspace` (which already runs checks/tests: compose,
# EMQX, Grafana and Prometheus files, the mosquitto policy and attack suite on a real broker,
# Redis users, TLS, the real bridge's /metrics, tapgate-admin): promtool on the Prometheus config, the shell scripts' syntax, and the native demo
# started, used (with a real Prometheus running the dashboards' queries) and stopped for real.
set -euo pipefail
cd "$(dirname "$0")/../.."
promtool check config prometheus/prometheus.yml
bash -n scripts/demo
sh -n emqx/entrypoint.sh
for f in docker/*.sh; do sh -n "$f"; done
# The certificate helper makes a CA, a server and a client certificate that verify.
certs="$(mktemp -d)"
trap 'rm -rf "$certs"' EXIT
sh docker/make-certs.sh "$certs" localhost g1 >/dev/null 2>&1
openssl verify -CAfile "$certs/ca.crt" "$certs/server.crt" "$certs/g1.crt"
bash checks/demo_smoke.sh
