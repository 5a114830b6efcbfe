#!/bin/sh
# tapgate: a private CA and a server certificate for the broker's TLS listener (8883), and
# optionally client certificates whose CN is a device id. For trials and small sites; use your
# own PKI where you have one.
#
#   docker/make-certs.sh DIR HOSTNAME [DEVICE_ID...]
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key and DIR/<id>.crt/.key per
# device. Devices trust DIR/ca.crt; keep ca.key offline.
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
echo "tapgate: certificates in $dir (server CN $host)"
