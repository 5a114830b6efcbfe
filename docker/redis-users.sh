#!/bin/sh
# tapgate: writes Redis's ACL file, one user per component, from the environment.
#
#   REDIS_PASSWORD          tapgate-admin: everything (operators, backups, health checks)
#   REDIS_BRIDGE_PASSWORD   tapgate-bridge: decides taps (reads and writes its own keys, runs its
#                           Lua scripts, which Redis checks against the same rules)
#   REDIS_MONITOR_PASSWORD  tapgate-monitor: reads everything tapgate keeps, writes only the block
#                           list, its events, its own sessions, a voided sale (the pass and its
#                           day's revenue, in one script) and a card replacement (a card's pass,
#                           wallet, recent list and block, in one script)
#   REDIS_EMQX_PASSWORD     tapgate-emqx: EMQX's rules, HINCRBY on tapgate:emqx:* only
#   REDIS_GRAFANA_PASSWORD  tapgate-grafana: reads only the keys the Grafana dashboards show
#   REDIS_TAIL_PASSWORD     tapgate-tail: `tapgate-monitor tail` and `report` in a terminal: reads
#                           the event stream, the audit trail, counters, revenue and devices;
#                           writes nothing
#
# The event stream and the audit trail are append-only for every user but tapgate-admin: XADD
# (with its MAXLEN, the only trimming) is the one write anybody else may make to them. Redis
# checks every command a script runs against the same rules, so scripts cannot do more.
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
check REDIS_TAIL_PASSWORD "${REDIS_TAIL_PASSWORD:-}"

# Commands no component needs, on top of the @dangerous category (FLUSHALL, CONFIG, KEYS, DEBUG,
# SHUTDOWN, MIGRATE, ...).
never="-@dangerous -function -script|flush -script|kill -script|debug"
# Stream commands that remove, rewrite or hand out entries. Nobody uses consumer groups.
never="$never -xdel -xtrim -xsetid -xgroup -xreadgroup -xack -xclaim -xautoclaim"
# Listing key names: key patterns do not confine SCAN or RANDOMKEY, and key names hold card
# numbers. Only the admin lists keys, and the bridge with SCAN: its start-up move of card keys
# written before card ids were canonical finds them so (a card blocked under such a key must be
# denied after an upgrade); its credential already writes every pass.
never="$never -scan -randomkey"
# What a program that finds the primary through the sentinels (redis+sentinel://) runs on the
# node they name before using it, to see that it is a primary yet: ROLE (in @dangerous).
sentinel_client="+role"

umask 077
tmp="$out.tmp.$$"
{
  # Off: nobody can log in as it. Its rights stay full because Redis 7.0 replays the append-only
  # file as this user and drops every script write it may not make (redis/redis#14541).
  echo "user default off ~* &* +@all"
  echo "user tapgate-admin on #$(hash "$REDIS_PASSWORD") ~* &* +@all"
  # Keys of protocol/src/keys.rs the bridge uses (a card's wallet: pay as you go charges it at
  # a gate and a top-up fills it at a terminal). A card's blocked hash is only read, but it is
  # a declared key of the bridge's decide function, and Redis asks write access for every key
  # FCALL declares; the block index and the monitor's keys stay out of reach. FUNCTION LOAD
  # installs the bridge's function library at start-up (FCALL is in @scripting); no other
  # FUNCTION subcommand (FLUSH, DELETE, RESTORE, KILL). INFO (in @dangerous) gives the bridge
  # Redis's memory and its limit for its metrics; it reveals no key or value.
  #
  # Append-only streams, with Redis 7 selectors (a command is allowed when the user's root rules
  # or one selector allow all of it): the root rules only read the stream, so DEL, UNLINK, SET,
  # RENAME, EXPIRE or RESTORE cannot replace it; the first selector lets a script or function
  # declare it (the commands it then runs are checked one by one); the second allows XADD on it
  # and nothing else.
  bridge_keys="~tapgate:counters:* ~tapgate:revenue:* ~tapgate:card:*:pass ~tapgate:card:*:recent"
  bridge_keys="$bridge_keys ~tapgate:card:*:wallet"
  bridge_keys="$bridge_keys ~tapgate:sale:* ~tapgate:seen:* ~tapgate:settled:* ~tapgate:device:*"
  bridge_keys="$bridge_keys ~tapgate:devices"
  bridge_keys="$bridge_keys ~tapgate:card:*:blocked %R~tapgate:blocked"
  echo "user tapgate-bridge on #$(hash "$REDIS_BRIDGE_PASSWORD") resetkeys resetchannels" \
    "$bridge_keys %R~tapgate:events" \
    "-@all +@read +@write +@scripting +@transaction +@connection $never $sentinel_client" \
    "+function|load +info +scan" \
    "($bridge_keys ~tapgate:events -@all +fcall +fcall_ro +eval +evalsha)" \
    "(~tapgate:events -@all +xadd)"
  # Reads every tapgate key; writes the block list, voids and card replacements (Lua scripts),
  # its sessions, login throttle and operator list, and appends to the event stream and its
  # audit trail (selectors as for the bridge). A replacement renames the lost card's pass and
  # wallet to the new card's and rewrites both cards' recent lists, so the monitor writes
  # wallets and recent lists too (with this credential one can change a balance: keep it as
  # secret as the admin's). A new key of the monitor's is listed here.
  monitor_own="~tapgate:monitor:session:* ~tapgate:monitor:operator:* ~tapgate:monitor:operators"
  monitor_own="$monitor_own ~tapgate:monitor:login-failures:*"
  monitor_keys="%R~tapgate:* ~tapgate:card:*:blocked ~tapgate:blocked ~tapgate:card:*:pass"
  monitor_keys="$monitor_keys ~tapgate:revenue:* ~tapgate:card:*:wallet ~tapgate:card:*:recent"
  echo "user tapgate-monitor on #$(hash "$REDIS_MONITOR_PASSWORD") resetkeys resetchannels" \
    "$monitor_keys $monitor_own" \
    "-@all +@read +@write +@scripting +@transaction +@connection +@blocking $never" \
    "$sentinel_client ($monitor_keys $monitor_own ~tapgate:events ~tapgate:monitor:audit -@all +eval +evalsha)" \
    "(~tapgate:events ~tapgate:monitor:audit -@all +xadd)"
  echo "user tapgate-emqx on #$(hash "$REDIS_EMQX_PASSWORD") resetkeys resetchannels" \
    "~tapgate:emqx:* -@all +@connection $never +hincrby +select +ping"
  # Reads what the Grafana dashboards show (grafana/dashboards/*.json) and nothing else: never
  # tapgate:monitor:* (sessions, operators, the audit trail) nor a card's keys. Redis ACLs have
  # no "all but" pattern, so the allowed keys are listed. SCAN and RANDOMKEY are refused: key
  # patterns do not confine them, and key names hold card numbers.
  echo "user tapgate-grafana on #$(hash "$REDIS_GRAFANA_PASSWORD") resetkeys resetchannels" \
    "%R~tapgate:counters:* %R~tapgate:revenue:* %R~tapgate:devices %R~tapgate:device:*" \
    "%R~tapgate:events" \
    "%R~tapgate:emqx:* -@all +@read +@connection $never +info"
  # What `tapgate-monitor tail` (events, and the audit trail with --audit) and `report` (revenue)
  # read, and nothing else: not a session, an operator or a card. Read-only, no SCAN.
  echo "user tapgate-tail on #$(hash "$REDIS_TAIL_PASSWORD") resetkeys resetchannels" \
    "%R~tapgate:events %R~tapgate:monitor:audit %R~tapgate:counters:* %R~tapgate:revenue:*" \
    "%R~tapgate:devices %R~tapgate:device:*" \
    "-@all +@read +@connection +@blocking $never $sentinel_client"
} >"$tmp"
mv "$tmp" "$out"
