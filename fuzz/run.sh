#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] -- builds fuzz/fuzz_stream.c (libFuzzer, with
# AddressSanitizer and UBSan) against a libweft.a built the same way with
# clang, all in build-fuzz/, then fuzzes for SECONDS (default 60).
# Exits non-zero on a crash, a check failing against the model, a leak
# or a hang (the input that did it is left in build-fuzz/, crash-* etc.).
#
# Variables: FUZZ_CC (clang), FUZZ_BUILD (build-fuzz), JOBS (2),
# FUZZ_ARGS (more libFuzzer flags, e.g. -seed=1 or -runs=N), FUZZ_CFLAGS
# (e.g. -DFUZZ_NO_TWO_READERS). The inputs in fuzz/regress/ (ones that
# found bugs) are replayed first. FUZZ_TRACE=1 makes a replay print every
# call and its answer.
#   fuzz/run.sh 300                      five minutes
#   build-fuzz/fuzz_stream CRASH-FILE    replays one input
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
CC=${FUZZ_CC:-clang}
B=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-2}

command -v "$CC" >/dev/null || { echo "fuzz/run.sh: $CC not found (FUZZ_CC=...)" >&2; exit 2; }

# The library: Release here is -O2 -g with the internal asserts on.
cmake -S . -B "$B" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release \
  -DWEFT_SANITIZE=address,undefined \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
  -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_BUILD_BENCH=OFF >/dev/null
cmake --build "$B" -j"$JOBS" --target weft_static >/dev/null

# shellcheck disable=SC2086
"$CC" -std=gnu11 -g -O1 -Wall -Wextra -Werror ${FUZZ_CFLAGS:-} \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Iinclude fuzz/fuzz_stream.c "$B/lib/libweft.a" -pthread -o "$B/fuzz_stream"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# Inputs that once failed (fuzz/regress/) first: each must pass.
if [ -n "$(ls -A fuzz/regress 2>/dev/null)" ]; then
  if ! "$B/fuzz_stream" fuzz/regress/* >"$B/regress.log" 2>&1; then
    tail -n 30 "$B/regress.log" >&2
    echo "fuzz/run.sh: an input of fuzz/regress/ fails (replay one with" \
         "FUZZ_TRACE=1 $B/fuzz_stream FILE)" >&2
    exit 1
  fi
fi

# A few seeds: the corpus grows from them (kept in build-fuzz/corpus).
C="$B/corpus"
mkdir -p "$C"
if [ -z "$(ls -A "$C")" ]; then
  # limit 8, alphabet; 200 bytes; socketpair, small buffers, high water
  # 8, 3 chunk sizes; ops.
  printf '\xc7\xc8\x00\x18\x03\x05\x83\x4a' >"$C/seed-lines"
  printf 'ab\nab\r\n\na\rbba\n\n\nabab\r\n' >>"$C/seed-lines"
  printf '\x00\x01\x02\x01\x0a\x01\x0b\x00\x02\x01\x0d\x0a\x03\x10\x04\x80\x05' >>"$C/seed-lines"
  # default limit, raw bytes, pipe, writer closes, writev, small pipe.
  printf '\x00\x40\x00\x0f\x01\x3f\x81\x05hello world\nsecond line\nno newline at end' >"$C/seed-pipe"
  printf '\x00\x00\x00\x83\x20\x04\x40\x01\x00\x0a\x00\x00' >>"$C/seed-pipe"
  # tiny limit, due deadlines on every op and on the writer's drains.
  printf '\xc1\x80\x00\x08\x05\xc1\x01\x01\x81\x80\x81\x00\x01\x83\x05\x82\x02\x0a\x0d\x00\x84\x10\x86\x85' >"$C/seed-due"
fi

cd "$B"
# shellcheck disable=SC2086
exec ./fuzz_stream -max_total_time="$SECS" -max_len=8192 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} corpus
