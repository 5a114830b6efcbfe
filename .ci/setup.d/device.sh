#!/usr/bin/env bash
# Setup for the device crate's extra check: the aarch64 target and cross linker used to build
# the Raspberry Pi binary (`--features rpi`), ALSA headers for `--features audio`, and
# espeak-ng/sox, which regenerate the spoken prompts (device/assets/generate.sh).
set -euo pipefail
. "$(dirname "$0")/../apt.sh"

need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s libasound2-dev >/dev/null 2>&1 || need_apt+=(libasound2-dev)
apt_install "${need_apt[@]}"

for attempt in 1 2 3; do
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu && break
  rustup target add aarch64-unknown-linux-gnu || sleep $((attempt * 5))
done
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu
