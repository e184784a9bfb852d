#!/usr/bin/env bash
# The gesture example end to end: two Keras teachers of 64 x 3 accelerometer windows (a Conv1D and a GRU), each
# distilled into the cheapest sketch that keeps it (edgesketch distill's default: it prints the candidates it tried
# and why it kept one), then verified bit for bit on the emulated Cortex-M0 (micro:bit) and Arduino Uno.
#   bash examples/gestures/run.sh                  (after .ci/setup; OUT=build/gestures, SEED=0)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gestures}
SEED=${SEED:-0}
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for arch in conv1d gru; do
  step "teacher: $arch on synthetic:gestures (3,000 train / 1,000 test windows)"
  [ -f "$OUT/$arch.keras" ] || python examples/gestures/teachers.py "$arch" -o "$OUT/$arch.keras"

  step "distil it: the cheapest candidate within 1 point of the teacher (validation split of the training set)"
  time edgesketch distill "$OUT/$arch.keras" --data synthetic:gestures -o "$OUT/$arch.esk" --seed "$SEED" --force

  step "what it holds, and its accuracy on the test set"
  edgesketch info "$OUT/$arch.esk"
  edgesketch eval "$OUT/$arch.esk"

  for board in qemu-m0 qemu-uno; do
    step "build for $board, run under QEMU, verify the whole test set bit for bit"
    edgesketch verify "$OUT/$arch.esk" --board "$board" --json "$OUT/verify-$arch-$board.json"
  done
done
