#!/usr/bin/env bash
# Extra checks for the device crate: the Raspberry Pi build (`--features rpi`) cross-compiles
# for aarch64, the hardware features pass clippy, and the prompt recordings can be regenerated
# from device/assets/generate.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The dev profile: whether it compiles and links for the Pi is the same question, answered
# minutes sooner than by an optimised build (docs/devices.md builds the release one).
echo "--- cross-build tapgate-device --features rpi for aarch64-unknown-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
cargo build -p tapgate-device --features rpi --target aarch64-unknown-linux-gnu
bin="${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/debug/tapgate-device"
file "$bin" 2>/dev/null \
  || ls -l "$bin"

echo "--- clippy with --features rpi,audio (host)"
cargo clippy -p tapgate-device --features rpi,audio --all-targets -- -D warnings

echo "--- regenerate the spoken prompts"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp device/assets/generate.sh "$tmp/"
bash "$tmp/generate.sh" >/dev/null
for f in device/assets/*.wav; do
  [ -s "$tmp/$(basename "$f")" ] || { echo "generate.sh did not make $(basename "$f")"; exit 1; }
done
echo "device checks passed"
