#!/bin/sh
# tapgate (docker-compose.smoke.yml): stand-in for the official redis image's
# docker-entrypoint.sh, installed as /usr/local/bin/docker-entrypoint.sh in
# tapgate-smoke/redis:7-bookworm. As that one does: arguments that start with '-' or name a .conf
# file go to redis-server; redis-server started as root gets the files in its working folder
# (/data) handed to the redis user, and runs as that user with umask 0077.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um="$(umask)"
if [ "$um" = 0022 ]; then
  umask 0077
fi
exec "$@"
