#!/bin/sh
# tapgate: EMQX entrypoint wrapper. Writes, from the environment (so no secret is kept in the
# repository), the first-start user list of the service logins, the API key tapgate-admin uses to
# provision devices, and the Redis password of the rule engine's connector; then starts EMQX as
# the image would. Placeholders that start with change-me (.env.example) are refused.
set -eu

: "${TAPGATE_MQTT_BRIDGE_PASSWORD:?set TAPGATE_MQTT_BRIDGE_PASSWORD}"
: "${TAPGATE_MQTT_MONITOR_PASSWORD:?set TAPGATE_MQTT_MONITOR_PASSWORD}"
: "${TAPGATE_EMQX_API_KEY:?set TAPGATE_EMQX_API_KEY}"
: "${TAPGATE_EMQX_API_SECRET:?set TAPGATE_EMQX_API_SECRET}"

for name in TAPGATE_MQTT_BRIDGE_PASSWORD TAPGATE_MQTT_MONITOR_PASSWORD TAPGATE_EMQX_API_KEY \
    TAPGATE_EMQX_API_SECRET REDIS_EMQX_PASSWORD EMQX_NODE__COOKIE EMQX_DASHBOARD__DEFAULT_PASSWORD \
    TAPGATE_MQTT_BRIDGE2_PASSWORD TAPGATE_MQTT_BRIDGE3_PASSWORD; do
  eval "value=\${$name:-}"
  case "$value" in
    change-me*) echo "tapgate: $name is still the change-me placeholder of .env.example; set a real secret" >&2; exit 1 ;;
    *[,\"\\:[:space:]]*) echo "tapgate: $name may not contain ',', '\"', '\\', ':' or spaces" >&2; exit 1 ;;
  esac
done

umask 077
users=/opt/emqx/data/tapgate-users.csv
{
  echo "user_id,password,is_superuser"
  echo "tapgate-bridge,${TAPGATE_MQTT_BRIDGE_PASSWORD},false"
  echo "tapgate-monitor,${TAPGATE_MQTT_MONITOR_PASSWORD},false"
  # More bridges, each with its own login (docker-compose.ha.yml).
  [ -n "${TAPGATE_MQTT_BRIDGE2_PASSWORD:-}" ] && echo "tapgate-bridge-2,${TAPGATE_MQTT_BRIDGE2_PASSWORD},false"
  [ -n "${TAPGATE_MQTT_BRIDGE3_PASSWORD:-}" ] && echo "tapgate-bridge-3,${TAPGATE_MQTT_BRIDGE3_PASSWORD},false"
  true
} > "$users"
# key:secret:role, read by api_key.bootstrap_file.
echo "${TAPGATE_EMQX_API_KEY}:${TAPGATE_EMQX_API_SECRET}:administrator" > /opt/emqx/data/tapgate-api-keys

if grep -q '^connectors' /opt/emqx/etc/tapgate-rules.hocon 2>/dev/null; then
  : "${REDIS_EMQX_PASSWORD:?set REDIS_EMQX_PASSWORD}"
  export EMQX_CONNECTORS__REDIS__TAPGATE_REDIS__PARAMETERS__PASSWORD="\"${REDIS_EMQX_PASSWORD}\""
fi

exec /usr/bin/docker-entrypoint.sh "$@"
