#!/usr/bin/env bash
# The bridge's integration tests again, with Redis and mosquitto in containers started through
# testcontainers (TAPGATE_TEST_SERVERS=containers), from the stand-in images scripts/test-images
# builds here from Debian's packages (seconds, and skipped when they are up to date). Selected
# with --workspace, so cargo reuses what scripts/test built instead of building again.
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(scripts/test-images | tail -n 1)"
echo "TAPGATE_TEST_SERVERS=$TAPGATE_TEST_SERVERS redis=$TAPGATE_REDIS_IMAGE mosquitto=$TAPGATE_MOSQUITTO_IMAGE"
tests=()
# Not run twice: the partition suite (its servers run in network namespaces it makes, never in
# containers); and the suites that measure timing rather than how servers are started, each a
# long run already made in the test step: failover (a minute of faults, its sentinels are local
# processes), rate_limit (floods of 20,000 taps), burst (one gate's 120,000 taps beside a calm
# one), bounded (a 300,000-message flood) and model
# (the rules property test). Every other bridge target, and so every way the test kit starts
# Redis and mosquitto, runs against containers.
for f in bridge/tests/*.rs; do
  case "$(basename "$f" .rs)" in
    partition | failover | rate_limit | burst | bounded | model) continue ;;
  esac
  tests+=(--test "$(basename "$f" .rs)")
done
cargo test --workspace "${tests[@]}" --no-fail-fast
# Nothing is left behind.
left="$(docker ps -aq --filter ancestor="$TAPGATE_REDIS_IMAGE" --filter ancestor="$TAPGATE_MOSQUITTO_IMAGE")"
[ -z "$left" ] || { echo "containers left running: $left"; exit 1; }
echo "container checks passed"
