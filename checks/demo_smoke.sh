#!/usr/bin/env bash
# Smoke test of scripts/demo, run by .ci/checks.d/deploy.sh: start the demo on free ports in a
# temporary state folder, wait for the dashboard to answer, log in, see taps counted, run the tail
# command the banner prints, check that a second demo refuses to start, stop it, and check that
# every process the demo started is gone. Nothing is skipped: a missing binary or subcommand
# fails the test with its name.
#
# The demo must stop however it was started, so it is started and stopped four ways (the build
# happens once, in the first):
#   terminal  own process group with SIGINT at its default, as a shell prompt starts it:
#             stopped by Ctrl-C (SIGINT to the whole group), and by SIGTERM
#   script    started with & from a non-interactive script, where bash ignores SIGINT in the
#             child and the demo cannot trap it (its banner must then not offer Ctrl-C): stopped
#             by the command its "already running" message gives (kill -TERM), and, started
#             through env --default-signal=INT, by SIGINT
#   group     its own session (setsid), the whole process group signalled at once, as a service
#             manager or a CI runner stops a job: SIGTERM to the group, which may end the demo's
#             own children (its sleep) before the demo's handler runs
# This test may itself run with SIGINT ignored (a CI runner's background shell): env
# --default-signal=INT gives the terminal cases a SIGINT they can receive whatever the parent did.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$(mktemp -d /tmp/tapgate-demo-test.XXXXXX)"
OUT="$STATE.out"
export TAPGATE_DEMO_DIR="$STATE"
# The binaries `cargo test` built (dev profile), unless told otherwise: a cold release build of
# four crates would double CI's build time for no check of its own.
export TAPGATE_DEMO_PROFILE="${TAPGATE_DEMO_PROFILE:-dev}"
# Ports the system says are free now (a fixed port fails the test whenever anything holds it);
# a TAPGATE_DEMO_*_PORT already set is kept.
free=()
while read -r p; do free+=("$p"); done < <(cd "$ROOT" && cargo run -q --example free_ports -p tapgate-checks -- 5)
[ ${#free[@]} = 5 ] || { echo "FAIL: cannot find 5 free ports on 127.0.0.1"; rm -rf "$STATE"; exit 1; }
export TAPGATE_DEMO_REDIS_PORT="${TAPGATE_DEMO_REDIS_PORT:-${free[0]}}"
export TAPGATE_DEMO_MQTT_PORT="${TAPGATE_DEMO_MQTT_PORT:-${free[1]}}"
export TAPGATE_DEMO_HTTP_PORT="${TAPGATE_DEMO_HTTP_PORT:-${free[2]}}"
export TAPGATE_DEMO_METRICS_PORT="${TAPGATE_DEMO_METRICS_PORT:-${free[3]}}"
PROM_PORT="${TAPGATE_DEMO_PROM_PORT:-${free[4]}}"
export TAPGATE_DEMO_PASSWORD="smoke-test-pw"
# Riders back within seconds, so the blocked rider taps again well inside the test's wait.
export TAPGATE_DEMO_REST=10s
export TAPGATE_DEMO_NO_INSTALL=1
URL="http://127.0.0.1:$TAPGATE_DEMO_HTTP_PORT"

passed=0
failed=0
demo_pid=""
prom_pid=""
tail_pid=""
fail() {
  echo "FAIL: $*"
  echo "----- demo output -----"; cat "$OUT" 2>/dev/null || true
  for f in "$STATE"/*.log; do [ -e "$f" ] && { echo "----- $f (last 30 lines) -----"; tail -n 30 "$f"; }; done
  failed=$((failed + 1))
  finish
}
ok() { echo "ok: $*"; passed=$((passed + 1)); }
finish() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null
  [ -n "$tail_pid" ] && kill -TERM -- "-$tail_pid" 2>/dev/null
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$demo_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$demo_pid" 2>/dev/null || true
  fi
  # Anything still listed is killed by pid (only what this demo started).
  if [ -f "$STATE/pids" ]; then
    while read -r _ pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$STATE/pids"
  fi
  echo "demo: $passed passed, $failed failed"
  rm -rf "$STATE" "$OUT"
  [ "$failed" = 0 ]
  exit
}

command -v curl >/dev/null || { echo "FAIL: curl is needed (apt-get install -y curl)"; exit 1; }
command -v redis-cli >/dev/null || { echo "FAIL: redis-cli is needed (apt-get install -y redis-tools)"; exit 1; }
env --default-signal=INT true 2>/dev/null || { echo "FAIL: env --default-signal is needed (GNU coreutils 8.31 or later)"; exit 1; }

# start_demo terminal|script|script-int [demo arguments]: starts the demo as described at the top,
# sets demo_pid, and waits for its banner (the first start may build: allow time).
start_demo() {
  local how="$1"
  shift
  : >"$OUT"
  case "$how" in
    terminal) set -m; env --default-signal=INT "$ROOT/scripts/demo" "$@" >"$OUT" 2>&1 & demo_pid=$!; set +m ;;
    script) "$ROOT/scripts/demo" "$@" >"$OUT" 2>&1 & demo_pid=$! ;;
    script-int) env --default-signal=INT "$ROOT/scripts/demo" "$@" >"$OUT" 2>&1 & demo_pid=$! ;;
    # setsid runs the demo itself (a background child is no group leader, so it does not fork):
    # its pid is its process group's id.
    group) setsid env --default-signal=INT "$ROOT/scripts/demo" "$@" >"$OUT" 2>&1 & demo_pid=$! ;;
  esac
  local deadline=$((SECONDS + 1500))
  until grep -q "tapgate demo is running" "$OUT" 2>/dev/null && grep -q "kill -TERM $demo_pid" "$OUT"; do
    kill -0 "$demo_pid" 2>/dev/null || fail "the demo ($how) exited before printing its banner"
    [ $SECONDS -lt $deadline ] || fail "no banner within 25 minutes ($how)"
    sleep 1
  done
  # The banner offers Ctrl-C only where Ctrl-C can stop the demo.
  if [ "$how" = script ]; then
    if grep -q "Press Ctrl-C" "$OUT"; then fail "the demo, started with SIGINT ignored, offers Ctrl-C"; fi
    grep -q "Stop it with: kill -TERM $demo_pid " "$OUT" || fail "the demo, started with SIGINT ignored, does not say to stop it with kill -TERM $demo_pid"
  else
    grep -q "Press Ctrl-C" "$OUT" || fail "the demo ($how) does not say Ctrl-C stops it"
  fi
}

# stop_demo HOW: sends the signal (int-group: SIGINT to the demo's whole process group, as Ctrl-C
# in a terminal; int, term: to the demo alone; or a command given as the argument) and checks that
# the demo and every process it started are gone within 30 s.
stop_demo() {
  local how="$1" started
  started="$(cat "$STATE/pids")"
  case "$how" in
    int-group) kill -INT -- "-$demo_pid" ;;
    int) kill -INT "$demo_pid" ;;
    term-group) kill -TERM -- "-$demo_pid" ;;
    term) kill -TERM "$demo_pid" ;;
    *) bash -c "$how" ;;
  esac
  local deadline=$((SECONDS + 30))
  while kill -0 "$demo_pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "the demo did not exit within 30 s of $how"
    sleep 0.2
  done
  wait "$demo_pid" 2>/dev/null || true
  demo_pid=""
  local left=""
  while read -r name pid; do
    kill -0 "$pid" 2>/dev/null && left="$left $name($pid)"
  done <<<"$started"
  [ -z "$left" ] || fail "still running after $how:$left"
  grep -q "demo: stopped" "$OUT" || fail "the demo did not report stopping after $how"
  [ ! -e "$STATE/demo.pid" ] || fail "the demo left $STATE/demo.pid behind after $how"
}

# Passes sold so far, read from the demo's Redis as its admin user (password from the state
# folder, passed in the environment).
issued_total() {
  (
    . "$STATE/credentials"
    REDISCLI_AUTH="$REDIS_ADMIN_PASSWORD" redis-cli -p "$TAPGATE_DEMO_REDIS_PORT" --user tapgate-admin \
      hvals tapgate:counters:issued 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
  )
}

start_demo terminal
grep -q "Dashboard:  $URL/" "$OUT" || fail "the demo printed another dashboard URL"
ok "the demo printed $URL/"

code="$(curl -s -o /dev/null -w '%{http_code}' "$URL/login")"
[ "$code" = 200 ] || fail "GET $URL/login answered $code"
ok "the dashboard answers ($URL/login: 200)"

# Log in as the demo operator with the printed password.
grep -q "Login:      demo / $TAPGATE_DEMO_PASSWORD" "$OUT" || fail "the demo did not print the login"
jar="$STATE/cookies"
page="$(curl -s -c "$jar" "$URL/login")"
csrf="$(sed -n 's/.*name="csrf"[^>]*value="\([^"]*\)".*/\1/p' <<<"$page" | head -n 1)"
[ -n "$csrf" ] || fail "no csrf token in the login page"
code="$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" \
  --data-urlencode "name=demo" --data-urlencode "password=$TAPGATE_DEMO_PASSWORD" \
  --data-urlencode "csrf=$csrf" "$URL/login")"
case "$code" in 200|302|303) ;; *) fail "login answered $code" ;; esac
code="$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" "$URL/api/counters")"
[ "$code" = 200 ] || fail "GET /api/counters after login answered $code"
ok "logged in as demo; /api/counters answers 200"

# Every process is listed, and the simulator runs (so riders are tapping).
for name in redis mosquitto bridge monitor simulator; do
  grep -q "^$name " "$STATE/pids" || fail "the demo did not start $name (pids: $(tr '\n' ' ' <"$STATE/pids"))"
done
ok "the demo started redis, mosquitto, bridge, monitor and simulator"

# Every simulated device has its own login, in a file only this user can read.
[ "$(stat -c %a "$STATE/devices.toml")" = 600 ] || fail "devices.toml is not private (mode $(stat -c %a "$STATE/devices.toml"))"
n="$(grep -c '^\[\[devices\]\]' "$STATE/devices.toml")"
[ "$n" = 5 ] || fail "devices.toml lists $n devices, not 3 gates and 2 terminals"
ok "the demo provisioned 5 devices with their own logins (devices.toml, mode 600)"
# Redis has no default login: without a user, nothing is allowed.
{
  reply="$(redis-cli -p "$TAPGATE_DEMO_REDIS_PORT" get tapgate:events 2>&1 || true)"
  case "$reply" in *NOAUTH*|*NOPERM*|*"Authentication required"*) ;; *) fail "Redis answered a client without a login: $reply" ;; esac
  ok "Redis refuses a client without a login"
}

deadline=$((SECONDS + 60))
taps=0
until [ "${taps%.*}" -gt 0 ] 2>/dev/null; do
  taps="$(curl -s "http://127.0.0.1:$TAPGATE_DEMO_METRICS_PORT/metrics" \
    | awk '/^tapgate_messages_total\{message="tap"\}/ {print $2}')"
  taps="${taps:-0}"
  [ $SECONDS -lt $deadline ] || fail "no tap reached the bridge within 60 s"
  sleep 1
done
ok "simulated riders' taps reach the bridge through mosquitto (tapgate_messages_total{message=\"tap\"} = $taps)"

# An operator blocks a rider's card from the dashboard. The simulator sees the bridge deny it as
# blocked; that is an operator's action, not a rules mismatch (checked in its summary at the end).
deadline=$((SECONDS + 30))
rider=""
until [ -n "$rider" ]; do
  rider="$(curl -s -b "$jar" "$URL/api/events" | grep -o '"card":"[0-9A-Z]*R[0-9]*"' | head -n 1 | cut -d'"' -f4 || true)"
  [ -n "$rider" ] || [ $SECONDS -lt $deadline ] || fail "no rider's card in /api/events within 30 s"
  [ -n "$rider" ] || sleep 1
done
csrf="$(curl -s -b "$jar" "$URL/api/session" | sed -n 's/.*"csrf":"\([^"]*\)".*/\1/p')"
code="$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -H "X-CSRF-Token: $csrf" \
  -H 'Content-Type: application/json' --data '{"reason":"lost"}' "$URL/api/cards/$rider/block")"
case "$code" in 200|204) ;; *) fail "blocking $rider answered $code" ;; esac
ok "blocked rider card $rider from the dashboard's API"

# Every TAPGATE_* variable and flag docker-compose.yml gives the bridge, the monitor and the
# simulator is one the real binary knows (its --help lists it).
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$([ "$TAPGATE_DEMO_PROFILE" = dev ] && echo debug || echo release)"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
settings="$(cd "$ROOT" && cargo run -q --example compose_settings -p tapgate-checks)" \
  || fail "cannot list the compose settings"
checked=0
while IFS=$'\t' read -r service what name; do
  case "$service" in
    bridge) help="$("$BIN/tapgate-bridge" --help)" ;;
    monitor) help="$("$BIN/tapgate-monitor" serve --help)" ;;
    simulator) help="$("$BIN/tapgate-device" simulate --help)" ;;
    # The provisioning job: tapgate-admin's settings, or docker/provision.sh's own.
    provision) help="$("$BIN/tapgate-admin" --help; sed 's/\${\([A-Z_]*\)[:}].*/[env: \1]/' "$ROOT/docker/provision.sh")" ;;
    *) continue ;;
  esac
  case "$what" in
    env) { grep -q -- "\[env: $name[]=]" <<<"$help" || grep -q -- "^  $name " <<<"$help"; } \
      || fail "compose gives $service $name, which its --help does not list" ;;
    flag) grep -q -- "^ *$name " <<<"$help" || grep -q -- " $name " <<<"$help" || fail "compose gives $service $name, which its --help does not list" ;;
    subcommand) ;;
  esac
  checked=$((checked + 1))
done <<<"$settings"
[ "$checked" -ge 10 ] || fail "only $checked compose settings found for the tapgate services"
ok "all $checked TAPGATE_* variables and flags compose gives bridge, monitor and simulator are in their --help"

# The compose health checks of the bridge and the monitor, run against the demo's processes
# (same binaries; only the port differs).
for spec in "9464:$TAPGATE_DEMO_METRICS_PORT:bridge" "8080:$TAPGATE_DEMO_HTTP_PORT:monitor"; do
  IFS=: read -r inside here name <<<"$spec"
  check="$(sed -n "s|^ *- \(exec 3<>/dev/tcp/127.0.0.1/$inside .*\)$|\1|p" "$ROOT/docker-compose.yml")"
  [ -n "$check" ] || fail "no /dev/tcp health check for $name in docker-compose.yml"
  check="${check//\/$inside /\/$here }"
  bash -c "$check" || fail "the compose health check of $name fails against the demo: $check"
  # And it fails when nothing listens there, so it can tell.
  if bash -c "${check//\/$here /\/1 }" 2>/dev/null; then fail "the $name health check passes with nothing listening"; fi
done
ok "the compose health checks of bridge and monitor pass against the real binaries"

# A real Prometheus scrapes the demo's bridge, and every PromQL expression of the Grafana
# dashboards runs against it; the tap rate and the latency percentiles must return data.
command -v prometheus >/dev/null || fail "prometheus is missing (apt-get install -y prometheus; .ci/setup.d/deploy.sh does it)"
cat >"$STATE/prometheus.yml" <<PROM
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tapgate-bridge
    static_configs:
      - targets: ["127.0.0.1:$TAPGATE_DEMO_METRICS_PORT"]
PROM
prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/prom" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$STATE/prometheus.log" 2>&1 &
prom_pid=$!
deadline=$((SECONDS + 30))
until curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null; do
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited: $(tail -n 5 "$STATE/prometheus.log")"
  [ $SECONDS -lt $deadline ] || fail "prometheus not ready within 30 s"
  sleep 0.5
done
sleep 8 # a few scrapes, so rate() has points
exprs=()
while IFS= read -r e; do exprs+=("$e"); done < <(sed -n 's/^ *"expr": "\(.*\)",\{0,1\}$/\1/p' "$ROOT"/grafana/dashboards/*.json)
[ ${#exprs[@]} -ge 5 ] || { fail "found only ${#exprs[@]} PromQL expressions in the dashboards"; }
for e in "${exprs[@]}"; do
  answer="$(curl -s -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$e")"
  grep -q '"status":"success"' <<<"$answer" || { fail "Prometheus refused the dashboard query $e: $answer"; }
  case "$e" in
    *tapgate_messages_total*|*"histogram_quantile(0.99"*)
      grep -q '"result":\[{' <<<"$answer" || { fail "no data for $e: $answer"; } ;;
  esac
done
p99="$(curl -s -G "http://127.0.0.1:$PROM_PORT/api/v1/query" \
  --data-urlencode 'query=histogram_quantile(0.99, sum by (le) (rate(tapgate_decision_latency_seconds_bucket[5m])))' \
  | sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p')"
kill "$prom_pid"
wait "$prom_pid" 2>/dev/null || true
prom_pid=""
ok "a real Prometheus ran all ${#exprs[@]} dashboard queries against the demo bridge (decision latency p99 ${p99:-?} s)"

# The two-hour window is short, and the bridge and the simulator (which checks every decision
# against the rules) use the same one.
grep -q "Two-hour:   passes last 5m" "$OUT" || fail "the banner does not say how long a two-hour pass lasts"
bridge_pid="$(awk '$1 == "bridge" {print $2}' "$STATE/pids")"
sim_pid="$(awk '$1 == "simulator" {print $2}' "$STATE/pids")"
tr '\0' '\n' <"/proc/$bridge_pid/environ" | grep -qx "TAPGATE_TWO_HOUR_DURATION=5m" \
  || fail "the bridge does not run with TAPGATE_TWO_HOUR_DURATION=5m"
tr '\0' ' ' <"/proc/$sim_pid/cmdline" | grep -q -- "--two-hour-duration 5m " \
  || fail "the simulator does not run with --two-hour-duration 5m: $(tr '\0' ' ' <"/proc/$sim_pid/cmdline")"
ok "two-hour passes last 5m in the bridge and the simulator, and the banner says so"

# The tail command the banner prints works as printed: it logs in as tapgate-tail and shows
# the latest events, and no password appears on the banner or on any command line.
tail_cmd="$(sed -n 's/^  Tail:       //p' "$OUT")"
[ -n "$tail_cmd" ] || fail "the banner prints no tail command"
grep -q "REDIS_TAIL_PASSWORD=" "$STATE/credentials" || fail "no Redis password for tapgate-tail in the credentials"
case "$tail_cmd" in *tapgate-tail:*) ;; *) fail "the tail command does not log in as tapgate-tail: $tail_cmd" ;; esac
tail_pw="$(sed -n 's/^REDIS_TAIL_PASSWORD=//p' "$STATE/credentials")"
if grep -qF "$tail_pw" "$OUT"; then fail "the banner shows the Redis password"; fi
set -m
bash -c "$tail_cmd" >"$STATE/tail.out" 2>"$STATE/tail.err" &
tail_pid=$!
set +m
deadline=$((SECONDS + 15))
until grep -qE 'ENTRY|ISSUED|DENIED' "$STATE/tail.out"; do
  kill -0 "$tail_pid" 2>/dev/null || fail "the printed tail command exited: $(cat "$STATE/tail.err")"
  [ $SECONDS -lt $deadline ] || fail "the printed tail command showed no event within 15 s: $(cat "$STATE/tail.out" "$STATE/tail.err")"
  sleep 0.2
done
if pgrep -a -g "$tail_pid" | grep -qF "$tail_pw"; then fail "the Redis password is on a command line"; fi
kill -TERM -- "-$tail_pid"
wait "$tail_pid" 2>/dev/null || true
tail_pid=""
ok "the printed tail command shows events: $(head -n 1 "$STATE/tail.out" | cut -c1-80)"

# The Devices line is a command that works as printed: tapgate-admin with the broker's URL and
# its admin password (from the credentials file, never on the banner) lists the demo's devices.
admin_cmd="$(sed -n 's/^  Devices:    //p' "$OUT")"
case "$admin_cmd" in *TAPGATE_MQTT=mqtt://127.0.0.1:$TAPGATE_DEMO_MQTT_PORT*TAPGATE_ADMIN_PASSWORD=*) ;;
  *) fail "the Devices line does not give TAPGATE_MQTT and TAPGATE_ADMIN_PASSWORD values: $admin_cmd" ;; esac
admin_pw="$(sed -n 's/^ADMIN_PASSWORD=//p' "$STATE/credentials")"
if grep -qF "$admin_pw" "$OUT"; then fail "the banner shows the broker's admin password"; fi
listed="$(bash -c "$admin_cmd" 2>&1)" || fail "the Devices command failed: $listed"
grep -qw g1 <<<"$listed" && grep -qw t1 <<<"$listed" || fail "the Devices command does not list g1 and t1: $listed"
ok "the banner's Devices command lists the demo's devices: $(tr '\n' ' ' <<<"$listed" | cut -c1-60)"

# A second demo refuses to start, and names a command that stops the first however it was
# started.
if out2="$("$ROOT/scripts/demo" 2>&1)"; then
  fail "a second demo started while one runs"
fi
grep -q "already running" <<<"$out2" || fail "a second demo did not say one is already running: $out2"
grep -q "kill -TERM $demo_pid\$" <<<"$out2" || fail "the second demo does not say kill -TERM $demo_pid: $out2"
ok "a second demo says one is already running and how to stop it (kill -TERM $demo_pid)"

# The blocked rider has tapped since, and the bridge denied it as blocked.
deadline=$((SECONDS + 90))
until curl -s -b "$jar" "$URL/api/cards/$rider" | grep -q '"reason":"blocked"'; do
  [ $SECONDS -lt $deadline ] || fail "the blocked card $rider was not denied as blocked within 90 s"
  sleep 1
done
ok "the blocked card $rider was denied as blocked"

# Ctrl-C in the terminal stops everything it started, and shows the simulator's summary.
stop_demo int-group
ok "Ctrl-C (SIGINT to the terminal's process group) stopped every process the demo started"
grep -q "the simulator's summary" "$OUT" || fail "the demo did not show the simulator's summary"
grep -qE "^    lost [0-9]+ \| mismatches 0 \| operator blocks/unblocks seen [1-9]" "$OUT" || fail "the simulator's summary shows mismatches, or no operator action: $(grep -E '^    ' "$OUT")"
ok "the demo showed the simulator's summary, 0 mismatches with a blocked card: $(grep -E '^    lost ' "$OUT" | cut -c5-90)"

# Started from a terminal again, with --reset: fresh secrets; stopped by SIGTERM.
old_pw="$(sed -n 's/^BRIDGE_PASSWORD=//p' "$STATE/credentials")"
start_demo terminal --reset
new_pw="$(sed -n 's/^BRIDGE_PASSWORD=//p' "$STATE/credentials")"
[ -n "$new_pw" ] && [ "$new_pw" != "$old_pw" ] || fail "--reset kept the old credentials"
grep -q "checking the build" "$OUT" || fail "the second start did not say it only checks the build"
if grep -q "first build" "$OUT"; then fail "the second start said the first build takes minutes"; fi
# Some passes sold, so there is state to keep.
deadline=$((SECONDS + 60))
until [ "$(issued_total)" -ge 3 ]; do
  [ $SECONDS -lt $deadline ] || fail "fewer than 3 passes sold within 60 s of the restart"
  sleep 1
done
sold="$(issued_total)"
stop_demo term
ok "--reset started afresh (new credentials, no 'first build' line); SIGTERM stopped it after $sold passes were sold"

# Started in the background by a script: SIGINT is ignored there, so the command the
# "already running" message gives must work. The state of the last run is all there.
start_demo script
[ "$(issued_total)" -ge "$sold" ] || fail "the restarted demo counts $(issued_total) passes sold, not the $sold sold before"
ok "the restarted demo kept its state: at least the $sold passes sold before"
out2="$("$ROOT/scripts/demo" 2>&1 || true)"
stop_cmd="$(grep -o 'kill -TERM [0-9]*$' <<<"$out2" || true)"
[ "$stop_cmd" = "kill -TERM $demo_pid" ] || fail "no kill -TERM $demo_pid in: $out2"
stop_demo "$stop_cmd"
ok "started by a script in the background: '$stop_cmd', as the demo says, stopped it"

start_demo script-int
stop_demo int
ok "started by a script with SIGINT restored (env --default-signal=INT): SIGINT stopped it"

start_demo group
stop_demo term-group
ok "in its own session, SIGTERM to its whole process group stopped every process the demo started"
finish
