#!/usr/bin/env bash
# What one decision costs Redis, counted in instructions rather than timed: the same workload as
# the `script_cost` example (stamped gate taps pipelined into an idle Redis, the decide function
# as it is now against the baseline script), with every redis-server it starts run under
# valgrind's callgrind. The timed figure moves by a third between runs on a shared machine; this
# one is the same every run.
#
#   bridge/examples/script_instructions.sh [taps]     (default 2000; needs valgrind)
#
# Prints, per version, the instructions redis-server executed inside the command (`FCALL` of the
# function library, `EVALSHA` of the baseline script), per call, over every call of the run
# (the taps and the taps that first activate each card's pass), and their ratio.
set -euo pipefail

taps=${1:-2000}
root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in valgrind callgrind_annotate; do
  command -v "$tool" >/dev/null || {
    echo "$tool is not installed (Debian/Ubuntu: apt-get install -y valgrind)" >&2
    exit 1
  }
done
real=$(command -v redis-server) || {
  echo "redis-server is not installed (Debian/Ubuntu: apt-get install -y redis-server)" >&2
  exit 1
}

work=$(mktemp -d)
# Stops the servers' callgrind processes cleanly, so that they write their counts.
stop_servers() {
  pkill -TERM -f -- "--callgrind-out-file=$work/" 2>/dev/null || true
  for _ in $(seq 1 100); do
    pgrep -f -- "--callgrind-out-file=$work/" >/dev/null || return 0
    sleep 0.2
  done
  echo "callgrind did not stop" >&2
  return 1
}
trap 'stop_servers || true; rm -rf "$work"' EXIT

mkdir -p "$work/bin"
# Not exec'd: the example kills the server it started with SIGKILL, which would lose the counts;
# it kills this wrapper instead, and stop_servers ends callgrind with SIGTERM.
cat >"$work/bin/redis-server" <<EOF
#!/usr/bin/env bash
valgrind --tool=callgrind --callgrind-out-file=$work/cg.%p "$real" "\$@" &
child=\$!
trap 'kill -TERM \$child' TERM INT
wait \$child
EOF
chmod +x "$work/bin/redis-server"

# The example only feeds Redis: its own speed does not change what Redis counts, so the dev
# build (no release build of the workspace needed) gives the same figures.
cargo build --quiet -p tapgate-bridge --example script_cost --manifest-path "$root/Cargo.toml"
if ! PATH="$work/bin:$PATH" "$root/target/debug/examples/script_cost" "$taps" 500 0 1 \
  >"$work/log" 2>&1; then
  cat "$work/log" >&2
  exit 1
fi
stop_servers

# "<instructions> (<share>)  >   <file>:<command> (<calls>x) [<binary>]" in the calling tree.
per_call() {
  local line
  line=$(callgrind_annotate --tree=calling --inclusive=yes "$1" 2>/dev/null |
    grep -E "> +[^ ]*:$2 \(" | head -n 1) || return 1
  awk -v cmd="$2" '{
    gsub(",", "", $1); calls = $0; sub(/.*\(/, "", calls); sub(/x\).*/, "", calls); gsub(",", "", calls)
    printf "%s %d %.0f\n", cmd, calls, $1 / calls
  }' <<<"$line"
}

now="" baseline=""
for f in "$work"/cg.*; do
  if r=$(per_call "$f" fcallCommand); then now=$r; fi
  if r=$(per_call "$f" evalShaCommand); then baseline=$r; fi
done
if [[ -z "$now" || -z "$baseline" ]]; then
  echo "no FCALL or EVALSHA counted; the example said:" >&2
  cat "$work/log" >&2
  exit 1
fi
read -r _ now_calls now_per <<<"$now"
read -r _ base_calls base_per <<<"$baseline"
echo "redis-server instructions inside the command, per decide call ($taps stamped gate taps, 500 cards):"
printf '  baseline  %9d per call (EVALSHA, %d calls)\n' "$base_per" "$base_calls"
printf '  now       %9d per call (FCALL, %d calls)\n' "$now_per" "$now_calls"
awk -v n="$now_per" -v b="$base_per" 'BEGIN { printf "  ratio now / baseline: %.3f\n", n / b }'
