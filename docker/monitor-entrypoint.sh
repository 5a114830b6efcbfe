#!/bin/sh
# tapgate: the monitor's entrypoint in compose. Writes the operator login of .env
# (TAPGATE_MONITOR_OPERATOR and TAPGATE_MONITOR_PASSWORD_HASH, handed in as MONITOR_OPERATOR and
# MONITOR_PASSWORD_HASH) to the file TAPGATE_MONITOR_CONFIG names, readable by the monitor's user
# only, then runs tapgate-monitor with the compose command's arguments. A file written here
# rather than a compose `configs:` entry with `content:`, which docker-compose 1.29 cannot read.
set -eu

conf="${TAPGATE_MONITOR_CONFIG:?set TAPGATE_MONITOR_CONFIG}"
name="${MONITOR_OPERATOR:-operator}"
hash="${MONITOR_PASSWORD_HASH:-}"

case "$hash" in
  '$argon2'*) ;;
  change-me*) echo "tapgate: TAPGATE_MONITOR_PASSWORD_HASH is still the change-me placeholder of .env.example; make a hash with tapgate-monitor hash-password" >&2; exit 1 ;;
  *) echo "tapgate: TAPGATE_MONITOR_PASSWORD_HASH is not an argon2 hash; make one with tapgate-monitor hash-password (and put it between single quotes in .env)" >&2; exit 1 ;;
esac
# Both go between TOML double quotes: nothing that could end the string or start a new line.
case "$name$hash" in
  *[\"\\[:cntrl:]]*) echo "tapgate: TAPGATE_MONITOR_OPERATOR and the hash may not contain quotes, backslashes or control characters" >&2; exit 1 ;;
esac
[ -n "$name" ] || { echo "tapgate: TAPGATE_MONITOR_OPERATOR is empty" >&2; exit 1; }

umask 077
tmp="$conf.tmp.$$"
{
  echo "# Written at each start by docker/monitor-entrypoint.sh from .env: the operator login."
  echo "[[operators]]"
  echo "name = \"$name\""
  echo "password_hash = \"$hash\""
} >"$tmp"
mv "$tmp" "$conf"
exec /usr/local/bin/tapgate-monitor "$@"
