#!/usr/bin/env bash
# The compose stack run for real (scripts/compose-smoke): the project's images built from their
# Dockerfiles' runtime stages around the debug binaries scripts/test already built (no release
# build), docker-compose.yml brought up with the stand-ins of docker-compose.smoke.yml for the
# images no registry can give here, a gate provisioned and its tap decided over TLS, a dashboard
# login, Prometheus scraping the bridge, and everything taken down (down -v) with nothing left.
# About 1.5 minutes (a minute or two more on a machine that has no Debian base image yet).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash -n scripts/compose-smoke
for f in docker/smoke/*.sh docker/monitor-entrypoint.sh; do sh -n "$f"; done
scripts/compose-smoke </dev/null
