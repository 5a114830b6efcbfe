#!/usr/bin/env bash
# Regenerates the spoken prompts a device plays (feature `audio`): 16 kHz mono 16-bit WAV,
# silence trimmed. Needs espeak-ng and sox (Debian: apt-get install -y espeak-ng sox).
# The file names and words must match `Prompt::file_name` and `Prompt::text` in src/prompt.rs
# (the products thanked by name are `THANKS` there; any other product hears the generic thanks);
# the crate's tests check that every prompt has its file here. `./generate.sh thank_you.wav`
# makes only the files named.
set -euo pipefail
cd "$(dirname "$0")"
voice="${TAPGATE_VOICE:-en-gb}"
speed="${TAPGATE_VOICE_SPEED:-150}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

only=" $* "
say() { # file words...
  local out="$1"; shift
  if [ "$only" != "  " ] && [[ "$only" != *" $out "* ]]; then return; fi
  espeak-ng -v "$voice" -s "$speed" -w "$tmp/raw.wav" "$*"
  sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$out" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
  echo "$out: $*"
}

say select_pass.wav "select a pass"
say tap_to_confirm.wav "tap your card to confirm"
say thank_you.wav "thank you for your pass"
say thank_you_single_trip.wav "thank you for your single trip pass"
say thank_you_ten_trip.wav "thank you for your ten trip pass"
say thank_you_two_hour.wav "thank you for your two hour pass"
say already_has_pass.wav "this card already has a pass"
say card_mismatch.wav "different card — transaction cancelled"
say access_granted.wav "access granted"
say access_denied.wav "access denied"
say tap_card_first.wav "tap your card first"
say service_unavailable.wav "service unavailable"
