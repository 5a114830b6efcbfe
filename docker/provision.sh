#!/bin/sh
# tapgate: compose's provisioning job. Gives each simulated device its own EMQX login through
# tapgate-admin (removing an older login of the same id first, so every start issues fresh
# passwords) and writes the simulator's --devices file, readable by its owner only.
#
#   TAPGATE_SIM_GATES, TAPGATE_SIM_TERMINALS   how many of each        [default: 3, 2]
#   TAPGATE_ADMIN_BROKER=emqx, TAPGATE_EMQX_API, TAPGATE_EMQX_API_KEY, TAPGATE_EMQX_API_SECRET
set -eu

out=/provision/devices.toml
umask 077
tmp="$out.tmp"
: >"$tmp"

add() { # kind id
  tapgate-admin device remove "$2" >/dev/null 2>&1 || true
  tapgate-admin device add "$2" --kind "$1" --format simulator >>"$tmp"
}

n=1
while [ "$n" -le "${TAPGATE_SIM_GATES:-3}" ]; do
  add gate "g$n"
  n=$((n + 1))
done
n=1
while [ "$n" -le "${TAPGATE_SIM_TERMINALS:-2}" ]; do
  add terminal "t$n"
  n=$((n + 1))
done
mv "$tmp" "$out"
echo "tapgate: provisioned $(grep -c '^\[\[devices\]\]' "$out") devices"
