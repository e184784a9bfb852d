#!/usr/bin/env bash
# Fuzz the frame receiver and encoder (firmware/core/es_proto.c) with libFuzzer + ASan + UBSan.
#   firmware/fuzz/run.sh [LIMIT]     LIMIT: 30 or 30s = seconds (default 10); 1000000runs or 1000000r = executions
# Prints one line "fuzz: engine=... executions=N crashes=M seconds=S" and exits non-zero on any crash.
# Needs clang with libFuzzer (Debian: apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev);
# without it, falls back to gcc + fuzz_main.c (random mutations, same target and sanitizers).
# Env: ES_FUZZ_OUT (work dir, default /tmp/edgesketch-fuzz: binary, corpus, crashes/, fuzz.log), CC_FUZZ (compiler).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CORE="$ROOT/firmware/core"
OUT="${ES_FUZZ_OUT:-/tmp/edgesketch-fuzz}"
LIMIT="${1:-10}"
case "$LIMIT" in
  *runs|*r) RUNS="${LIMIT%runs}"; RUNS="${RUNS%r}"; LIMIT_FLAG="-runs=$RUNS" ;;
  *s)       LIMIT_FLAG="-max_total_time=${LIMIT%s}" ;;
  *)        LIMIT_FLAG="-max_total_time=$LIMIT" ;;
esac
[[ "${LIMIT_FLAG#*=}" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS|SECONDSs|RUNSruns]" >&2; exit 2; }
mkdir -p "$OUT/corpus" "$OUT/seeds" "$OUT/crashes"
rm -f "$OUT"/crashes/*

SRC=("$HERE/fuzz_rx.c" "$CORE/es_proto.c")
WARN=(-Wall -Wextra -Werror -std=c99 -I"$CORE")
ENGINE=""
for cc in ${CC_FUZZ:-} clang clang-18 clang-17 clang-16 clang-15 clang-14; do
  command -v "$cc" >/dev/null 2>&1 || continue
  if "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined "${WARN[@]}" \
       "${SRC[@]}" -o "$OUT/fuzz_rx" 2>"$OUT/build.log"; then
    ENGINE="libFuzzer ($cc)"; break
  fi
done
if [[ -z "$ENGINE" ]]; then
  gcc -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined "${WARN[@]}" \
      "${SRC[@]}" "$HERE/fuzz_main.c" -o "$OUT/fuzz_rx" 2>"$OUT/build.log" || { cat "$OUT/build.log" >&2; exit 2; }
  ENGINE="random-mutation driver (gcc; install clang for libFuzzer)"
fi

# seeds: one valid frame of every command and reply, written by the host twin (skipped if it cannot run)
( cd "$ROOT" && python3 - "$OUT/seeds" <<'PY' ) 2>/dev/null || true
import sys, pathlib
from edgesketch import protocol as p
out = pathlib.Path(sys.argv[1])
bodies = {p.ES_CMD_HELLO: b"", p.ES_CMD_INFER: bytes(range(64)), p.ES_CMD_BATCH: bytes([2]) + bytes(128),
          p.ES_CMD_DEBUG: bytes(64), p.ES_CMD_RESET: b"", p.ES_MSG_NAK: b"\x01", 0x42: b"\x00\x01",
          p.ES_CMD_INFER | p.ES_REPLY: bytes(44), p.ES_CMD_BATCH | p.ES_REPLY: bytes([1]) + bytes(44)}
for i, (cmd, body) in enumerate(bodies.items()):
    for flags in (0, 1, 2, 4, 6):
        (out / f"seed-{i}-{flags}").write_bytes(bytes([flags, 0]) + p.encode_frame(cmd, i + 1, body))
(out / "seed-big").write_bytes(b"\x01" + p.encode_frame(p.ES_CMD_BATCH, 9, bytes([15]) + bytes(range(1, 241)) * 4))
(out / "seed-max").write_bytes(b"\x01" + p.encode_frame(p.ES_CMD_INFER, 9, bytes(1024)))
PY

START=$(date +%s)
set +e
if [[ "$ENGINE" == libFuzzer* ]]; then
  "$OUT/fuzz_rx" "$LIMIT_FLAG" -print_final_stats=1 -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$OUT/crashes/" "$OUT/corpus" "$OUT/seeds" >"$OUT/fuzz.log" 2>&1
else
  "$OUT/fuzz_rx" "$LIMIT_FLAG" >"$OUT/fuzz.log" 2>&1
fi
RC=$?
set -e
SECS=$(( $(date +%s) - START ))
EXECS=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/fuzz.log" | grep -o '[0-9]*$' | tail -1)
CRASHES=$(find "$OUT/crashes" -type f | wc -l)
if [[ $RC -ne 0 && $CRASHES -eq 0 ]]; then CRASHES=1; fi   # a sanitizer abort in the fallback driver leaves no file
echo "fuzz: engine=$ENGINE executions=${EXECS:-0} crashes=$CRASHES seconds=$SECS log=$OUT/fuzz.log"
if [[ $CRASHES -ne 0 ]]; then
  tail -40 "$OUT/fuzz.log" >&2
  ls "$OUT/crashes" >&2 || true
  exit 1
fi
