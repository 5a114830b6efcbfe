#!/bin/sh
# tapgate: writes Redis's ACL file, one user per component, from the environment.
#
#   REDIS_PASSWORD          tapgate-admin: everything (operators, backups, health checks)
#   REDIS_BRIDGE_PASSWORD   tapgate-bridge: decides taps (reads and writes its own keys, runs its
#                           Lua scripts, which Redis checks against the same rules)
#   REDIS_MONITOR_PASSWORD  tapgate-monitor: reads everything tapgate keeps, writes only the block
#                           list, its events, its own sessions, and a voided sale (the pass and
#                           its day's revenue, in one script)
#   REDIS_EMQX_PASSWORD     tapgate-emqx: EMQX's rules, HINCRBY on tapgate:emqx:* only
#   REDIS_GRAFANA_PASSWORD  tapgate-grafana: reads only the keys the Grafana dashboards show
#
# Usage: redis-users.sh OUTPUT_FILE (Redis ACL files hold no comments). Only SHA-256 hashes of the passwords are written; the file
# is made readable by its owner only. The default user is switched off. Placeholders that start
# with change-me (see .env.example) and passwords with spaces are refused.
set -eu

out="${1:?usage: redis-users.sh OUTPUT_FILE}"

hash() {
  printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

check() { # variable-name value
  case "$2" in
    "") echo "tapgate: set $1" >&2; exit 1 ;;
    change-me*) echo "tapgate: $1 is still the change-me placeholder of .env.example; set a real secret" >&2; exit 1 ;;
    *[[:space:]]*) echo "tapgate: $1 may not contain spaces" >&2; exit 1 ;;
  esac
  if [ "${#2}" -lt 16 ]; then
    echo "tapgate: $1 must be at least 16 characters" >&2
    exit 1
  fi
}

check REDIS_PASSWORD "${REDIS_PASSWORD:-}"
check REDIS_BRIDGE_PASSWORD "${REDIS_BRIDGE_PASSWORD:-}"
check REDIS_MONITOR_PASSWORD "${REDIS_MONITOR_PASSWORD:-}"
check REDIS_EMQX_PASSWORD "${REDIS_EMQX_PASSWORD:-}"
check REDIS_GRAFANA_PASSWORD "${REDIS_GRAFANA_PASSWORD:-}"

# Commands no component needs, on top of the @dangerous category (FLUSHALL, CONFIG, KEYS, DEBUG,
# SHUTDOWN, MIGRATE, ...).
never="-@dangerous -function -script|flush -script|kill -script|debug"

umask 077
tmp="$out.tmp.$$"
{
  # Off: nobody can log in as it. Its rights stay full because Redis 7.0 replays the append-only
  # file as this user and drops every script write it may not make (redis/redis#14541).
  echo "user default off ~* &* +@all"
  echo "user tapgate-admin on #$(hash "$REDIS_PASSWORD") ~* &* +@all"
  # Keys of protocol/src/keys.rs the bridge uses. A card's blocked hash is only read, but it is
  # a declared key of the bridge's decide function, and Redis asks write access for every key
  # FCALL declares; the block index and the monitor's keys stay out of reach. FUNCTION LOAD
  # installs the bridge's function library at start-up (FCALL is in @scripting); no other
  # FUNCTION subcommand (FLUSH, DELETE, RESTORE, KILL).
  echo "user tapgate-bridge on #$(hash "$REDIS_BRIDGE_PASSWORD") resetkeys resetchannels" \
    "~tapgate:counters:* ~tapgate:revenue:* ~tapgate:events ~tapgate:card:*:pass ~tapgate:card:*:recent" \
    "~tapgate:sale:* ~tapgate:seen:* ~tapgate:device:* ~tapgate:devices" \
    "~tapgate:card:*:blocked %R~tapgate:blocked" \
    "-@all +@read +@write +@scripting +@transaction +@connection $never +function|load"
  # Reads every tapgate key; writes the block list and voids (Lua scripts), their events and its
  # sessions.
  echo "user tapgate-monitor on #$(hash "$REDIS_MONITOR_PASSWORD") resetkeys resetchannels" \
    "%R~tapgate:* ~tapgate:card:*:blocked ~tapgate:blocked ~tapgate:events ~tapgate:monitor:*" \
    "~tapgate:card:*:pass ~tapgate:revenue:*" \
    "-@all +@read +@write +@scripting +@transaction +@connection +@blocking $never"
  echo "user tapgate-emqx on #$(hash "$REDIS_EMQX_PASSWORD") resetkeys resetchannels" \
    "~tapgate:emqx:* -@all +@connection $never +hincrby +select +ping"
  # Reads what the Grafana dashboards show (grafana/dashboards/*.json) and nothing else: never
  # tapgate:monitor:* (sessions, operators, the audit trail) nor a card's keys. Redis ACLs have
  # no "all but" pattern, so the allowed keys are listed. SCAN and RANDOMKEY are refused: key
  # patterns do not confine them, and key names hold card numbers.
  echo "user tapgate-grafana on #$(hash "$REDIS_GRAFANA_PASSWORD") resetkeys resetchannels" \
    "%R~tapgate:counters:* %R~tapgate:revenue:* %R~tapgate:devices %R~tapgate:device:*" \
    "%R~tapgate:events" \
    "%R~tapgate:emqx:* -@all +@read +@connection $never +info -scan -randomkey"
} >"$tmp"
mv "$tmp" "$out"
