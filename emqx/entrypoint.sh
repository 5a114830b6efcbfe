#!/bin/sh
# tapgate: EMQX entrypoint wrapper. Writes the first-start user list for the built-in
# authentication database from the environment (so no password is kept in the repository),
# passes the Redis password to the rule engine's connector, then starts EMQX as the image would.
set -eu

: "${TAPGATE_MQTT_DEVICE_PASSWORD:?set TAPGATE_MQTT_DEVICE_PASSWORD}"
: "${TAPGATE_MQTT_BRIDGE_PASSWORD:?set TAPGATE_MQTT_BRIDGE_PASSWORD}"
: "${TAPGATE_MQTT_MONITOR_PASSWORD:?set TAPGATE_MQTT_MONITOR_PASSWORD}"

for value in "$TAPGATE_MQTT_DEVICE_PASSWORD" "$TAPGATE_MQTT_BRIDGE_PASSWORD" \
    "$TAPGATE_MQTT_MONITOR_PASSWORD" "${REDIS_PASSWORD:-}"; do
  case "$value" in
    *[,\"\\]*) echo "tapgate: passwords may not contain ',', '\"' or '\\'" >&2; exit 1 ;;
  esac
done

users=/opt/emqx/data/tapgate-users.csv
umask 077
{
  echo "user_id,password,is_superuser"
  echo "device,${TAPGATE_MQTT_DEVICE_PASSWORD},false"
  echo "bridge,${TAPGATE_MQTT_BRIDGE_PASSWORD},false"
  echo "monitor,${TAPGATE_MQTT_MONITOR_PASSWORD},false"
} > "$users"

if grep -q '^connectors' /opt/emqx/etc/tapgate-rules.hocon 2>/dev/null; then
  : "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
  export EMQX_CONNECTORS__REDIS__TAPGATE_REDIS__PARAMETERS__PASSWORD="\"${REDIS_PASSWORD}\""
fi

exec /usr/bin/docker-entrypoint.sh "$@"
