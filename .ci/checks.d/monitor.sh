#!/usr/bin/env bash
# The monitor binary: every setting is in --help, hash-password makes a hash the server accepts,
# and `serve` refuses a config nobody could log in with.
set -euo pipefail
cargo build -q -p tapgate-monitor
bin="${CARGO_TARGET_DIR:-target}/debug/tapgate-monitor"

help="$("$bin" serve --help)"
for flag in --config --redis --listen --public-read-only --session-ttl --secure-cookies \
            --login-attempts --login-window --history --max-body-bytes; do
  grep -q -- "$flag" <<<"$help" || { echo "serve --help lacks $flag"; exit 1; }
done
tail_help="$("$bin" tail --help)"
for flag in --redis --since --last --json --color; do
  grep -q -- "$flag" <<<"$tail_help" || { echo "tail --help lacks $flag"; exit 1; }
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
echo "monitor checks passed"
