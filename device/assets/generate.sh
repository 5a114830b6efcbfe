#!/usr/bin/env bash
# Regenerates the spoken prompts a device plays (feature `audio`): 16 kHz mono 16-bit WAV,
# silence trimmed. Needs espeak-ng and sox (Debian: apt-get install -y espeak-ng sox).
# The file names and words must match `Prompt::file_name` and `Prompt::text` in src/prompt.rs
# (the products thanked by name are `THANKS` there; any other product hears the generic thanks);
# the crate's tests check that every prompt has its file here. The words prices are spoken with
# go to words/; they are the table in src/words.rs, and the tests check that this script lists
# the same words, that every word has its file and every file its word.
# `./generate.sh thank_you.wav words/seven.wav` makes only the files named.
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
  mkdir -p "$(dirname "$out")"
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

# The words prices are spoken with, one short clip each, at a brisker pace: the same files and
# texts as the table in src/words.rs (the tests compare the two).
speed="${TAPGATE_WORD_SPEED:-170}"
word() { # file-stem text
  say "words/$1.wav" "$2"
}
word zero "zero"
word one "one"
word two "two"
word three "three"
word four "four"
word five "five"
word six "six"
word seven "seven"
word eight "eight"
word nine "nine"
word ten "ten"
word eleven "eleven"
word twelve "twelve"
word thirteen "thirteen"
word fourteen "fourteen"
word fifteen "fifteen"
word sixteen "sixteen"
word seventeen "seventeen"
word eighteen "eighteen"
word nineteen "nineteen"
word twenty "twenty"
word thirty "thirty"
word forty "forty"
word fifty "fifty"
word sixty "sixty"
word seventy "seventy"
word eighty "eighty"
word ninety "ninety"
word hundred "hundred"
word thousand "thousand"
word million "million"
word billion "billion"
word trillion "trillion"
word quadrillion "quadrillion"
word quintillion "quintillion"
word point "point"
word free "free"
word euro "euro"
word euros "euros"
word cent "cent"
word cents "cents"
word dollar "dollar"
word dollars "dollars"
word pound "pound"
word pounds "pounds"
word penny "penny"
word pence "pence"
word franc "franc"
word francs "francs"
word centime "centime"
word centimes "centimes"
word yen "yen"
word letter_a "A"
word letter_b "B"
word letter_c "C"
word letter_d "D"
word letter_e "E"
word letter_f "F"
word letter_g "G"
word letter_h "H"
word letter_i "I"
word letter_j "J"
word letter_k "K"
word letter_l "L"
word letter_m "M"
word letter_n "N"
word letter_o "O"
word letter_p "P"
word letter_q "Q"
word letter_r "R"
word letter_s "S"
word letter_t "T"
word letter_u "U"
word letter_v "V"
word letter_w "W"
word letter_x "X"
word letter_y "Y"
word letter_z "Z"
