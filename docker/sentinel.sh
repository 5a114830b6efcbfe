#!/bin/sh
# tapgate: starts one Redis Sentinel (docker-compose.ha.yml) watching the primary `redis` as
# "tapgate", logging in as tapgate-admin (password from the environment). The file is written
# only on the first start: Sentinel rewrites it as it learns where the primary moved.
set -eu
conf=/data/sentinel.conf
case "${REDIS_PASSWORD:-}" in
  "" | change-me*) echo "tapgate: set REDIS_PASSWORD (not the change-me placeholder)" >&2; exit 1 ;;
esac
if [ ! -f "$conf" ]; then
  umask 077
  cat >"$conf" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor tapgate redis 6379 2
sentinel auth-user tapgate tapgate-admin
sentinel auth-pass tapgate ${REDIS_PASSWORD}
sentinel down-after-milliseconds tapgate 5000
sentinel failover-timeout tapgate 30000
sentinel parallel-syncs tapgate 1
CONF
fi
exec redis-server "$conf" --sentinel
