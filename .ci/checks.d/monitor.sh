#!/usr/bin/env bash
# The monitor binary: every setting is in --help (and no secret is), hash-password makes a hash
# the server accepts, and `serve` refuses a config nobody could log in with or a placeholder
# Redis password.
set -euo pipefail
cargo build -q -p tapgate-monitor
bin="${CARGO_TARGET_DIR:-target}/debug/tapgate-monitor"

help="$("$bin" serve --help)"
for flag in --config --redis --listen --public-read-only --session-ttl --session-key-file \
            --secure-cookies --login-attempts --login-max-delay --login-attempts-per-address \
            --login-window --password-checks --trusted-proxies --allowed-hosts --header-timeout \
            --max-connections-per-address --history --max-body-bytes; do
  grep -q -- "$flag" <<<"$help" || { echo "serve --help lacks $flag"; exit 1; }
done
tail_help="$("$bin" tail --help)"
for flag in --redis --since --last --json --color --audit; do
  grep -q -- "$flag" <<<"$tail_help" || { echo "tail --help lacks $flag"; exit 1; }
done

for sub in serve tail; do
  if TAPGATE_REDIS='redis://monitor:ci-secret-value@redis:6379' "$bin" "$sub" --help | grep -q ci-secret-value; then
    echo "$sub --help shows the Redis password"; exit 1
  fi
done

hash="$(printf 'ci password\n' | "$bin" hash-password)"
case "$hash" in '$argon2id$'*) ;; *) echo "hash-password printed: $hash"; exit 1 ;; esac

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
printf '[[operators]]\nname = "ci"\npassword_hash = "not-a-hash"\n' > "$dir/bad.toml"
if "$bin" serve --config "$dir/bad.toml" 2> "$dir/err"; then
  echo "serve accepted a malformed password hash"; exit 1
fi
grep -q "password_hash" "$dir/err" || { cat "$dir/err"; exit 1; }
printf 'public_read_only = true\n' > "$dir/public.toml"
if TAPGATE_REDIS='redis://:change-me-redis@127.0.0.1:1' "$bin" serve --config "$dir/public.toml" 2> "$dir/err"; then
  echo "serve accepted a placeholder Redis password"; exit 1
fi
grep -q "placeholder" "$dir/err" || { cat "$dir/err"; exit 1; }
echo "monitor checks passed"
