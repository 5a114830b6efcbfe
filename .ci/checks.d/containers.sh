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
# The partition suite runs its servers in network namespaces it makes, never in containers, so
# it is not run twice.
for f in bridge/tests/*.rs; do
  [ "$(basename "$f")" = partition.rs ] && continue
  tests+=(--test "$(basename "$f" .rs)")
done
cargo test --workspace "${tests[@]}" --no-fail-fast
# Nothing is left behind.
left="$(docker ps -aq --filter ancestor="$TAPGATE_REDIS_IMAGE" --filter ancestor="$TAPGATE_MOSQUITTO_IMAGE")"
[ -z "$left" ] || { echo "containers left running: $left"; exit 1; }
echo "container checks passed"
