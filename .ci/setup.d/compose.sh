#!/usr/bin/env bash
# Setup for the compose smoke test (.ci/checks.d/compose.sh, scripts/compose-smoke): a Compose
# tool (docker-compose from Debian's packages where no Compose v2 is installed), debootstrap for
# the Debian base image, and wget, which the Prometheus stand-in carries for the shipped health
# check. Docker's engine comes with the machine; redis, mosquitto and prometheus come from
# servers.sh and deploy.sh.
set -euo pipefail
. "$(dirname "$0")/../apt.sh"
need=()
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v wget >/dev/null 2>&1 || need+=(wget)
apt_install "${need[@]}"
