#!/usr/bin/env bash
# Fuzz the firmware's input path on the host with libFuzzer + ASan + UBSan. Two targets, run one after the other:
#   rx   fuzz_rx.c:  es_proto.c alone (receiver, streaming encoder, dispatch-like checks for every command, LOAD and
#        RUN included), with round-trip properties
#   app  fuzz_app.c: the firmware core es_app.c + es_proto.c + a generated model (a windowed branch with padding and
#        a flat branch, 16 x 2 inputs, generated with a stream of hop 2) + a stub board, with a shadow of the input
#        transfer and of the stream that predicts every LOAD, RUN, DEBUG-of-the-loaded-input and STREAM reply (needs
#        python3 with edgesketch importable to generate the model; skipped with a note otherwise). Its seeds hold whole
#        LOAD / RUN and STREAM exchanges (pieces, resends, gaps, stale ids, frames past the next scores), which the
#        fuzzer splices and mutates.
# Usage: firmware/fuzz/run.sh [LIMIT] [TARGET...]
#   LIMIT: 30 or 30s = seconds per target (default 10); 1000000runs or 1000000r = executions per target
#   TARGET: rx, app (default both)
# Prints one line per target, "fuzz: target=T engine=E executions=N crashes=M seconds=S log=L", and exits non-zero
# on any crash. Needs clang with libFuzzer (Debian: apt-get install -y --no-install-recommends clang-14
# libclang-rt-14-dev); without it falls back to gcc + fuzz_main.c (random mutations, same targets and sanitizers).
# Env: ES_FUZZ_OUT (work dir, default /tmp/edgesketch-fuzz), CC_FUZZ (compiler to try first),
#      ES_FUZZ_NO_LIBFUZZER=1 (use the gcc fallback even if clang is there),
#      ES_FUZZ_MAX_BODY=N (build both targets with -DES_PROTO_MAX_BODY=N, as for a board with little RAM: 160 on the Uno).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CORE="$ROOT/firmware/core"
OUT="${ES_FUZZ_OUT:-/tmp/edgesketch-fuzz}"
LIMIT="${1:-10}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(rx app)
case "$LIMIT" in
  *runs|*r) RUNS="${LIMIT%runs}"; RUNS="${RUNS%r}"; LIMIT_FLAG="-runs=$RUNS" ;;
  *s)       LIMIT_FLAG="-max_total_time=${LIMIT%s}" ;;
  *)        LIMIT_FLAG="-max_total_time=$LIMIT" ;;
esac
[[ "${LIMIT_FLAG#*=}" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS|SECONDSs|RUNSruns] [rx] [app]" >&2; exit 2; }
mkdir -p "$OUT"

WARN=(-Wall -Wextra -Werror -std=c99 -I"$CORE")
[[ -n "${ES_FUZZ_MAX_BODY:-}" ]] && WARN+=(-DES_PROTO_MAX_BODY="$ES_FUZZ_MAX_BODY")
SAN=(-g -O1 -fno-sanitize-recover=undefined)
LIBFUZZER_CC=""
CANDIDATES=(${CC_FUZZ:-} clang clang-18 clang-17 clang-16 clang-15 clang-14)
[[ "${ES_FUZZ_NO_LIBFUZZER:-0}" == 1 ]] && CANDIDATES=()
for cc in "${CANDIDATES[@]}"; do
  command -v "$cc" >/dev/null 2>&1 || continue
  echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    > "$OUT/probe.c"
  if "$cc" -fsanitize=fuzzer,address,undefined "$OUT/probe.c" -o "$OUT/probe" 2>/dev/null; then
    LIBFUZZER_CC="$cc"; break
  fi
done

# seeds (written by the host twin; skipped if it cannot run) and, for app, the generated model
( cd "$ROOT" && "${PYTHON:-python3}" - "$OUT" <<'PY' ) 2>"$OUT/seeds.log" || true
import sys, pathlib
from edgesketch import protocol as p
out = pathlib.Path(sys.argv[1])
for t in ("rx", "app"):
    (out / t / "seeds").mkdir(parents=True, exist_ok=True)
from edgesketch import codegen, sketch
win = sketch.Window.over((16, 2), 3, 1)                      # padding 1: edge read-outs recomputed at every hop
codegen.write(sketch.random_sketch(L=6, K=4, P=16, taps=6, C=4, windows=[(win, 6, 4, 12, 4)], seed=3),
              out / "app" / "model", "compact", hop=2)
D = 32
bodies = {p.ES_CMD_HELLO: b"", p.ES_CMD_INFER: bytes(range(D)), p.ES_CMD_BATCH: bytes([2]) + bytes(2 * D),
          p.ES_CMD_DEBUG: bytes(D), p.ES_CMD_RESET: b"", p.ES_CMD_STACK: b"", p.ES_MSG_NAK: b"\x01", 0x42: b"\x00\x01",
          p.ES_CMD_INFER | p.ES_REPLY: bytes(44), p.ES_CMD_BATCH | p.ES_REPLY: bytes([1]) + bytes(44),
          p.ES_CMD_LOAD: p.pack_load(1, 0, bytes(range(1, 7))), p.ES_CMD_RUN: p.pack_run(1),
          p.ES_CMD_LOAD | p.ES_REPLY: p.pack_load_reply(1, 6), p.ES_CMD_STREAM: p.pack_stream(1, 0, bytes(range(1, 9))),
          p.ES_CMD_STREAM | p.ES_REPLY: p.pack_stream_reply(1, 4, 0, 0, [0, 0, 0, 0])}
for i, (cmd, body) in enumerate(bodies.items()):
    frame = p.encode_frame(cmd, i + 1, body)
    for flags in (0, 1, 2, 4, 6):
        (out / "rx" / "seeds" / f"seed-{i}-{flags}").write_bytes(bytes([flags, 0]) + frame)
    (out / "app" / "seeds" / f"seed-{i}").write_bytes(b"\x00" + frame)
(out / "rx" / "seeds" / "seed-big").write_bytes(b"\x01" + p.encode_frame(p.ES_CMD_BATCH, 9, bytes([15]) + bytes(range(1, 241)) * 4))
(out / "rx" / "seeds" / "seed-max").write_bytes(b"\x01" + p.encode_frame(p.ES_CMD_INFER, 9, bytes(1024)))
(out / "app" / "seeds" / "seed-batch").write_bytes(b"\x00" + p.encode_frame(p.ES_CMD_BATCH, 9, bytes([30]) + bytes(i % 251 for i in range(30 * D))))
(out / "app" / "seeds" / "seed-many").write_bytes(b"\x00" + b"".join(p.encode_frame(c, 3, b) for c, b in bodies.items()))
# input transfers: an input in pieces then RUN, with a resent piece, a gap, a stale transfer, DEBUG of the loaded input
x = bytes((7 * i + 3) % 256 for i in range(D))
load = lambda xf, off, n, s: p.encode_frame(p.ES_CMD_LOAD, s, p.pack_load(xf, off, x[off:off + n]))
for i, frames in enumerate([
        [load(1, 0, 5, 1), load(1, 5, 6, 2), load(1, 11, 5, 3), p.encode_frame(p.ES_CMD_RUN, 4, p.pack_run(1))],
        [load(2, 0, 8, 1), load(2, 0, 8, 1), load(2, 8, 4, 2), load(2, 8, 4, 2), load(2, 12, 4, 3),
         load(2, 4, 4, 3), p.encode_frame(p.ES_CMD_DEBUG, 3, b""),
         p.encode_frame(p.ES_CMD_RUN, 4, p.pack_run(2)), p.encode_frame(p.ES_CMD_RUN, 4, p.pack_run(2))],
        [load(3, 0, 4, 1), load(3, 9, 4, 2), load(4, 4, 4, 3), load(3, 4, 13, 4), p.encode_frame(p.ES_CMD_RUN, 5, p.pack_run(3)),
         load(5, 0, 16, 6), load(3, 0, 4, 7), p.encode_frame(p.ES_CMD_RUN, 8, p.pack_run(5))],
        [load(6, 0, 16, 1), p.encode_frame(p.ES_CMD_RESET, 2), b"\x00", p.encode_frame(p.ES_CMD_RUN, 3, p.pack_run(6)),
         p.encode_frame(p.ES_CMD_DEBUG, 4, b"")]]):
    (out / "app" / "seeds" / f"seed-load-{i}").write_bytes(b"\x00" + b"".join(frames))
    for flags in (1, 5):
        (out / "rx" / "seeds" / f"seed-load-{i}-{flags}").write_bytes(bytes([flags]) + b"".join(frames))
# streams: a window of 16 samples of 2 values, scores every 2: frames up to the scores, resends, a late copy, a gap, a
# frame past the scores, a new stream mid-way, a RESET
xs = bytes((5 * i + 1) % 256 for i in range(2 * 64))
st = lambda sid, pos, n, s: p.encode_frame(p.ES_CMD_STREAM, s, p.pack_stream(sid, pos, xs[2 * pos:2 * (pos + n)]))
for i, frames in enumerate([
        [st(1, 0, 10, 1), st(1, 10, 6, 2), st(1, 16, 2, 3), st(1, 18, 2, 4), st(1, 20, 2, 5)],
        [st(2, 0, 16, 1), st(2, 0, 16, 1), st(2, 16, 2, 2), st(2, 10, 6, 3), st(2, 18, 3, 4), st(2, 20, 2, 5),
         st(2, 18, 2, 6), st(3, 30, 16, 7), st(3, 46, 2, 8), st(2, 48, 2, 9)],
        [st(4, 0, 16, 1), p.encode_frame(p.ES_CMD_RESET, 2), b"\x00", st(4, 16, 2, 3), st(4, 0, 16, 4), st(4, 16, 2, 5)]]):
    (out / "app" / "seeds" / f"seed-stream-{i}").write_bytes(b"\x00" + b"".join(frames))
    for flags in (1, 3):
        (out / "rx" / "seeds" / f"seed-stream-{i}-{flags}").write_bytes(bytes([flags]) + b"".join(frames))
PY

FAILED=0
for T in "${TARGETS[@]}"; do
  W="$OUT/$T"
  mkdir -p "$W/corpus" "$W/seeds" "$W/crashes"
  rm -f "$W"/crashes/*
  case "$T" in
    rx)  SRC=("$HERE/fuzz_rx.c" "$CORE/es_proto.c"); EXTRA=() ;;
    app) if [[ ! -f "$W/model/es_model.c" ]]; then
           echo "fuzz: target=app skipped: could not generate the model (see $OUT/seeds.log)"; continue
         fi
         SRC=("$HERE/fuzz_app.c" "$CORE/es_app.c" "$CORE/es_proto.c" "$W"/model/*.c)   # the model and its sources
         EXTRA=(-I"$W/model" -DES_CORE_NAME='"fuzz-host"') ;;
    *)   echo "unknown target $T (rx, app)" >&2; exit 2 ;;
  esac
  if [[ -n "$LIBFUZZER_CC" ]]; then
    ENGINE="libFuzzer($LIBFUZZER_CC)"
    "$LIBFUZZER_CC" "${SAN[@]}" -fsanitize=fuzzer,address,undefined "${WARN[@]}" "${EXTRA[@]}" "${SRC[@]}" \
      -o "$W/fuzz" 2>"$W/build.log" || { cat "$W/build.log" >&2; exit 2; }
  else
    ENGINE="random-mutation-driver(gcc)"
    gcc "${SAN[@]}" -fsanitize=address,undefined "${WARN[@]}" "${EXTRA[@]}" "${SRC[@]}" "$HERE/fuzz_main.c" \
      -o "$W/fuzz" 2>"$W/build.log" || { cat "$W/build.log" >&2; exit 2; }
  fi
  START=$(date +%s)
  set +e
  if [[ -n "$LIBFUZZER_CC" ]]; then
    "$W/fuzz" "$LIMIT_FLAG" -print_final_stats=1 -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$W/crashes/" "$W/corpus" "$W/seeds" >"$W/fuzz.log" 2>&1
  else
    "$W/fuzz" "$LIMIT_FLAG" >"$W/fuzz.log" 2>&1
  fi
  RC=$?
  set -e
  SECS=$(( $(date +%s) - START ))
  EXECS=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$W/fuzz.log" | grep -o '[0-9]*$' | tail -1 || true)
  CRASHES=$(find "$W/crashes" -type f | wc -l)
  if [[ $RC -ne 0 && $CRASHES -eq 0 ]]; then CRASHES=1; fi   # e.g. a sanitizer abort in the fallback driver
  echo "fuzz: target=$T engine=$ENGINE executions=${EXECS:-0} crashes=$CRASHES seconds=$SECS log=$W/fuzz.log"
  if [[ $CRASHES -ne 0 ]]; then
    tail -40 "$W/fuzz.log" >&2
    ls "$W/crashes" >&2 || true
    FAILED=1
  fi
done
exit $FAILED
