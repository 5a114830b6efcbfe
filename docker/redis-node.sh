#!/bin/sh
# tapgate: starts one Redis node of a replicated set (docker-compose.ha.yml). Writes the ACL file
# (docker/redis-users.sh) and the node's settings: docker/redis.conf, the login it replicates
# with (tapgate-admin, password from the environment, never on a command line) and, for a node
# that starts as a replica, whom it follows. Sentinel moves the primary later; a node keeps the
# settings Sentinel rewrote in /data/node.conf across restarts.
#
# Usage: redis-node.sh [PRIMARY_HOST]   (no argument: start as the primary)
set -eu
sh /tapgate/redis-users.sh /data/users.acl
conf=/data/node.conf
if [ ! -f "$conf" ]; then
  umask 077
  {
    echo "include /tapgate/redis.conf"
    echo "masteruser tapgate-admin"
    echo "masterauth ${REDIS_PASSWORD}"
    echo "replica-announce-ip $(hostname)"
    if [ -n "${1:-}" ]; then echo "replicaof $1 6379"; fi
  } >"$conf"
fi
# Its memory limit and policy come from docker/redis.conf (noeviction: a full primary refuses
# writes rather than evict a pass). Replicas keep Redis's replica-ignore-maxmemory yes: they
# hold whatever the primary wrote, so give every node the same memory as the primary.
# Every write reaches the disk before it is acknowledged: a primary killed and started again
# before the sentinels notice (a supervisor's quick restart) is still the primary, and its
# replicas resynchronise from it; with less on its disk than it acknowledged, they would drop
# decisions the bridges had confirmed (docs/scaling.md, "Network partitions").
# A node that returns is resynchronised at once, not after Redis's default 5 s wait for other
# replicas to share the transfer: until it holds the data, the bridges confirm nothing.
exec docker-entrypoint.sh redis-server "$conf" --appendonly yes --appendfsync always \
  --repl-diskless-sync-delay 0
