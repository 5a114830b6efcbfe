#!/bin/sh
# tapgate: a private CA and a server certificate for the broker's TLS listener (8883), and
# optionally client certificates whose CN is a device id. For trials and small sites; use your
# own PKI where you have one.
#
#   docker/make-certs.sh DIR HOSTNAME [DEVICE_ID...]
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key and DIR/<id>.crt/.key per
# device. Devices trust DIR/ca.crt; keep ca.key offline.
#
# Devices' certificates are better made with `tapgate-admin cert issue ID --ca-dir DIR`, which
# records them so that `tapgate-admin cert revoke ID` can put them on the broker's CRL; one made
# here is revoked with `tapgate-admin cert revoke ID --cert DIR/ID.crt` (docs/deploy.md, "A
# stolen device").
#
# The broker reads server.key as its own user inside its container: uid 1000 in EMQX's image
# (and in the mosquitto stand-in of docker-compose.smoke.yml). Run as root, this gives the key
# to that uid, still readable by its owner only; TAPGATE_BROKER_UID names another uid, and an
# empty one leaves the key to whoever ran this.
set -eu
dir="${1:?usage: make-certs.sh DIR HOSTNAME [DEVICE_ID...]}"
host="${2:?usage: make-certs.sh DIR HOSTNAME [DEVICE_ID...]}"
shift 2
mkdir -p "$dir"
umask 077
cd "$dir"
[ -s ca.key ] || openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=tapgate CA" \
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout server.key -out server.csr
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile server.ext -out server.crt
for id in "$@"; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$id" -keyout "$id.key" -out "$id.csr"
  printf 'extendedKeyUsage=clientAuth\n' >"$id.ext"
  openssl x509 -req -in "$id.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$id.ext" -out "$id.crt"
  rm -f "$id.csr" "$id.ext"
done
rm -f server.csr server.ext
chmod 644 ca.crt server.crt
broker_uid="${TAPGATE_BROKER_UID-1000}"
if [ -n "$broker_uid" ] && [ "$(id -u)" != "$broker_uid" ]; then
  if [ "$(id -u)" = 0 ]; then
    chown "$broker_uid" server.key
  else
    echo "tapgate: the broker runs as uid $broker_uid in its container and cannot read server.key;" \
      "give it the key: sudo chown $broker_uid $dir/server.key" >&2
  fi
fi
echo "tapgate: certificates in $dir (server CN $host)"
