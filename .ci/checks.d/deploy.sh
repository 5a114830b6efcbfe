#!/usr/bin/env bash
# Deployment checks beyond `cargo test --workspace` (which already runs checks/tests: compose,
# EMQX, Grafana and Prometheus files, the mosquitto policy and attack suite on a real broker,
# Redis users, TLS, the real bridge's /metrics, promtool on the Prometheus config and the
# bridge's metrics, tapgate-admin): the shell scripts' syntax, and the native demo started,
# used (with a real Prometheus running the dashboards' queries, the tail command its banner prints, a card blocked from the
# dashboard) and stopped for real: from a terminal by Ctrl-C and SIGTERM, from a background
# script by kill -TERM and, with SIGINT restored, by SIGINT. One release build serves them all.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash -n scripts/demo
bash -n checks/demo_smoke.sh
sh -n emqx/entrypoint.sh
for f in docker/*.sh; do sh -n "$f"; done
# The certificate helper makes a CA, a server and a client certificate that verify.
certs="$(mktemp -d)"
trap 'rm -rf "$certs"' EXIT
sh docker/make-certs.sh "$certs" localhost g1 >/dev/null 2>&1
openssl verify -CAfile "$certs/ca.crt" "$certs/server.crt" "$certs/g1.crt"
bash checks/demo_smoke.sh
