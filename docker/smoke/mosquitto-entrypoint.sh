#!/bin/sh
# tapgate (docker-compose.smoke.yml): mosquitto in EMQX's place, with the project's policy.
# Writes mosquitto's configuration from mosquitto/tapgate.conf and mosquitto/tls.conf (mounted
# under /tapgate/mosquitto), makes the dynamic-security file on the first start (admin password:
# TAPGATE_EMQX_API_SECRET), starts mosquitto, and gives the bridges and the monitor their logins
# with tapgate-admin from the same variables emqx/entrypoint.sh reads (an older login of the
# same name is removed first, so a changed password takes effect). /tmp/tapgate-ready, which the
# health check looks for, exists once they do. The command of the base file is ignored.
set -eu

: "${TAPGATE_MQTT_BRIDGE_PASSWORD:?set TAPGATE_MQTT_BRIDGE_PASSWORD}"
: "${TAPGATE_MQTT_MONITOR_PASSWORD:?set TAPGATE_MQTT_MONITOR_PASSWORD}"
: "${TAPGATE_EMQX_API_SECRET:?set TAPGATE_EMQX_API_SECRET}"
for name in TAPGATE_MQTT_BRIDGE_PASSWORD TAPGATE_MQTT_MONITOR_PASSWORD TAPGATE_EMQX_API_SECRET; do
  eval "value=\${$name}"
  case "$value" in
    change-me*) echo "tapgate: $name is still the change-me placeholder of .env.example; set a real secret" >&2; exit 1 ;;
  esac
done

rm -f /tmp/tapgate-ready
data=/opt/emqx/data/mosquitto
dynsec="$data/dynamic-security.json"
mkdir -p "$data"
umask 077
if [ ! -s "$dynsec" ]; then
  # The password goes in on stdin, never on a command line.
  printf '%s\n%s\n' "$TAPGATE_EMQX_API_SECRET" "$TAPGATE_EMQX_API_SECRET" \
    | mosquitto_ctrl dynsec init "$dynsec" admin >/dev/null
fi
conf=/tmp/mosquitto.conf
{
  echo "# Written by docker/smoke/mosquitto-entrypoint.sh."
  echo "listener 1883"
  echo "persistence_location $data/"
  echo "log_dest stdout"
  echo "plugin /usr/lib/mosquitto_dynamic_security.so"
  echo "plugin_opt_config_file $dynsec"
  cat /tapgate/mosquitto/tapgate.conf
  cat /tapgate/mosquitto/tls.conf
} >"$conf"
# mosquitto reads its configuration and certificates as root, then runs as the mosquitto user.
chown -R mosquitto:mosquitto "$data"

mosquitto -c "$conf" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT

n=0
until bash -c 'exec 3<>/dev/tcp/127.0.0.1/1883' 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { echo "tapgate: mosquitto exited during start-up" >&2; exit 1; }
  n=$((n + 1))
  [ "$n" -lt 300 ] || { echo "tapgate: mosquitto did not listen on 1883 within 30 s" >&2; exit 1; }
  sleep 0.1
done

export TAPGATE_MQTT=mqtt://127.0.0.1:1883 TAPGATE_ADMIN_PASSWORD="$TAPGATE_EMQX_API_SECRET"
login() { # name role password
  tapgate-admin service remove "$1" >/dev/null 2>&1 || true
  TAPGATE_SERVICE_PASSWORD="$3" tapgate-admin service add "$1" --role "$2" >/dev/null
}
login tapgate-bridge bridge "$TAPGATE_MQTT_BRIDGE_PASSWORD"
login tapgate-monitor monitor "$TAPGATE_MQTT_MONITOR_PASSWORD"
# The high-availability layout's other bridges (docker-compose.ha.yml), when it sets them.
if [ -n "${TAPGATE_MQTT_BRIDGE2_PASSWORD:-}" ]; then
  login tapgate-bridge-2 bridge "$TAPGATE_MQTT_BRIDGE2_PASSWORD"
fi
if [ -n "${TAPGATE_MQTT_BRIDGE3_PASSWORD:-}" ]; then
  login tapgate-bridge-3 bridge "$TAPGATE_MQTT_BRIDGE3_PASSWORD"
fi
echo "tapgate: mosquitto stands in for EMQX; the services' logins are ready"
: >/tmp/tapgate-ready

# Until mosquitto ends; a TERM from docker stop runs the trap, then this waits again.
set +e
wait "$pid"
status=$?
if kill -0 "$pid" 2>/dev/null; then
  wait "$pid"
  status=$?
fi
exit "$status"
