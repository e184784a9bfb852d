#!/usr/bin/env bash
# The bundled example, end to end on the default emulated board (an Arm Cortex-M4 under QEMU):
# train a Keras teacher on sklearn digits, distil it, evaluate, export C + a PlatformIO project,
# build it with PlatformIO, run it under QEMU and verify it over serial, bit for bit.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/digits}
BOARD=${BOARD:-qemu-m4}
bash .ci/setup
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/5 teacher: a Keras MLP 64-256-256-10 on sklearn digits (stratified 80/20, seed 0)"
[ -f "$OUT/teacher.keras" ] || python -m edgesketch.bench.teachers digits-mlp -o "$OUT/teacher.keras"

step "2/5 distil it into a sketch (learned mode, L=16 tables, K=6 bits, P=48 hyperplanes, 8 taps)"
time edgesketch distill "$OUT/teacher.keras" --data sklearn:digits -o "$OUT/digits.esk" --force

step "3/5 evaluate on the test set"
edgesketch eval "$OUT/digits.esk"

step "4/5 export C and a PlatformIO project for $BOARD"
edgesketch export "$OUT/digits.esk" --board "$BOARD" -o "$OUT/fw-$BOARD" --force

step "5/5 build it with PlatformIO, run it under QEMU, verify the whole test set over serial"
edgesketch verify "$OUT/digits.esk" --board "$BOARD" --project "$OUT/fw-$BOARD" --json "$OUT/verify-$BOARD.json"
