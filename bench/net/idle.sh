#!/usr/bin/env bash
# Memory per idle connection: each echo server in turn gets N connections
# (10,000 by default) that each echo one 64-byte message and then stay
# open and idle; bytes per connection = (VmRSS after - VmRSS before) / N.
# weft's echo server beside the kit's Go (goroutine per connection), libuv
# and epoll limit servers, in one run.
#
# Usage: bench/net/idle.sh            Env: N=10000 BASE_PORT=19300 ONLY=regex
#        NET_KIT=... (default ../../../shared/bench/net from this folder)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kit=$(cd "${NET_KIT:-$here/../../../shared/bench/net}" && pwd)
n=${N:-10000} port=${BASE_PORT:-19300} only=${ONLY:-.}
B=$(mktemp -d "${TMPDIR:-/tmp}/idlebench.XXXXXX")
export GOMAXPROCS=1
log() { printf '%s\n' "$*" >&2; }

ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((n + 100)) ] || { log "RLIMIT_NOFILE $(ulimit -n) is below N + 100"; exit 1; }

log "building into $B"
cc -O2 -Wall -Wextra -o "$B/idle_conns" "$here/idle_conns.c"
make -s -C "$kit" O="$B" epoll_echo
for p in libuv_echo go_echo; do
  make -s -C "$kit" O="$B" "$p" >"$B/build-$p.log" 2>&1 || log "warning: $p did not build"
done
cmake -S "$root" -B "$B/weft" -DCMAKE_BUILD_TYPE=Release -DWEFT_SANITIZE= \
  -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_BENCH=OFF >"$B/build-weft.log" 2>&1
cmake --build "$B/weft" -j"$(nproc)" --target example-echo_server >>"$B/build-weft.log" 2>&1

servers=(
  "weft        $B/weft/bin/example-echo_server"
  "go          $B/go_echo"
  "libuv       $B/libuv_echo"
  "epoll-limit $B/epoll_echo"
)

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

echo "| server | connections | RSS before KiB | RSS after KiB | bytes per connection |"
echo "|---|--:|--:|--:|--:|"
for entry in "${servers[@]}"; do
  read -r name cmd <<<"$entry"
  [[ $name =~ $only ]] || continue
  # shellcheck disable=SC2086
  set -- $cmd
  [ -x "$1" ] || { log "skipped $name: $1 not built"; continue; }
  port=$((port + 1))
  taskset -c 0 "$@" "$port" >"$B/$name.log" 2>&1 &
  srv=$!
  for _ in $(seq 100); do listening "$port" && break; sleep 0.1; done
  sleep 0.5
  out=$(taskset -c 1 "$B/idle_conns" "$srv" "$port" "$n" || echo '{}')
  kill -TERM "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  python3 - "$name" "$out" <<'EOF'
import json, sys
name, line = sys.argv[1], sys.argv[2]
try:
    r = json.loads(line)
    print(f"| {name} | {r['conns']:,} | {r['rss_before_kib']:,} | {r['rss_after_kib']:,} | {r['bytes_per_conn']:,.0f} |")
except Exception:
    print(f"| {name} | failed: {line} | | | |")
EOF
done
rm -rf "$B"
