#!/usr/bin/env bash
# weft's copy of the network kit's run.sh (../shared/bench/net/run.sh; its
# README defines every test), with weft's echo and HTTP servers added: the
# examples echo_server and http_hello, built Release into the temp dir. The
# kit itself (load generator, limit servers, peers, report) is used from
# NET_KIT (default: ../../../shared/bench/net from this folder).
#
# run.sh: build the kit into a temp dir, then benchmark every echo and HTTP
# server in turn -- server pinned to CPU 0, load generator pinned to CPU 1,
# each measurement REPS times -- and print Markdown tables of the medians.
# Traffic goes to 127.0.0.1 only; every client run is bounded in time.
#
# Environment: DURATION=5  REPS=3  ONLY=<regex on server name>  BASE_PORT=19100
#              PY=/usr/bin/python3 (the Python that has uvloop)
#              MAX_FOREIGN=10: a run during which other processes used more
#              than this % of a CPU is repeated (up to 2 more tries, after
#              waiting up to 60 s for the machine to go quiet).
# weft-2loops is examples/echo_multicore.c: one loop per core, two loops
# with SO_REUSEPORT, allowed on both CPUs (so it shares CPU 1 with the
# load generator: on this 2-CPU rig it shows the mechanism, not a gain).
# Adding a server: one line in echo_servers/http_servers; it gets the port as
# its last argument and must listen on 127.0.0.1 with a single thread.
# shellcheck disable=SC2034  # the server/test arrays are used via `local -n`
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kit=$(cd "${NET_KIT:-$here/../../../shared/bench/net}" && pwd)
dur=${DURATION:-5} reps=${REPS:-3} only=${ONLY:-.} max_foreign=${MAX_FOREIGN:-10}
py=${PY:-/usr/bin/python3}
port=${BASE_PORT:-19100}
B=$(mktemp -d "${TMPDIR:-/tmp}/netbench.XXXXXX")
res=$B/results.jsonl
hz=$(getconf CLK_TCK)
TIMEFORMAT='%R %U %S'   # `time`: wall, user, sys seconds of the client run
export TMPDIR=$B GOMAXPROCS=1
log() { printf '%s\n' "$*" >&2; }

for tool in taskset timeout wrk curl "$py"; do
  command -v "$tool" >/dev/null || { log "missing: $tool (see README.md)"; exit 1; }
done

# ---- build (echo-load and the limit servers are required, peers optional)
log "building into $B"
make -s -C "$kit" O="$B" echo-load epoll_echo epoll_http
for p in libuv_echo go_echo go_http; do
  make -s -C "$kit" O="$B" "$p" >"$B/build-$p.log" 2>&1 || log "warning: $p did not build ($B/build-$p.log)"
done
# weft's servers: the examples, from this checkout, Release.
cmake -S "$root" -B "$B/weft" -DCMAKE_BUILD_TYPE=Release -DWEFT_SANITIZE= \
  -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_BENCH=OFF >"$B/build-weft.log" 2>&1 &&
  cmake --build "$B/weft" -j"$(nproc)" --target example-echo_server example-echo_multicore example-http_hello \
    >>"$B/build-weft.log" 2>&1 || log "warning: weft did not build ($B/build-weft.log)"

echo_servers=(
  "epoll-limit     $B/epoll_echo"
  "epoll-busy-poll $B/epoll_echo --busy-poll"
  "weft            $B/weft/bin/example-echo_server"
  "weft-2loops     taskset -c 0,1 $B/weft/bin/example-echo_multicore 2"
  "libuv           $B/libuv_echo"
  "asyncio         $py $kit/peers/asyncio_echo.py"
  "asyncio+uvloop  $py $kit/peers/asyncio_echo.py --uvloop"
  "go              $B/go_echo"
  "node            node $kit/peers/node_echo.js"
)
http_servers=(
  "epoll-limit     $B/epoll_http"
  "epoll-busy-poll $B/epoll_http --busy-poll"
  "weft            $B/weft/bin/example-http_hello"
  "asyncio         $py $kit/peers/asyncio_http.py"
  "asyncio+uvloop  $py $kit/peers/asyncio_http.py --uvloop"
  "go              $B/go_http"
  "node            node $kit/peers/node_http.js"
  "nginx           $kit/peers/nginx_http.sh"
)
echo_tests=("c1-64B 1 64" "c100-64B 100 64" "c100-16KiB 100 16384")
http_tests=("c100 100" "c1 1")

# ---- server lifecycle
srv=
stop_server() {  # SIGTERM our server, SIGKILL it if it is still there after 5 s
  [ -n "$srv" ] || return 0
  kill -TERM "$srv" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  srv=
}
trap stop_server EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_server() {  # logname cmd...
  local logname=$1; shift
  port=$((port + 1))
  if listening "$port"; then log "  port $port is taken by someone else"; return 1; fi
  command -v "$1" >/dev/null || { log "  skipped: $1 not found"; return 1; }
  taskset -c 0 "$@" "$port" >"$B/$logname.log" 2>&1 &
  srv=$!
  for _ in $(seq 100); do
    listening "$port" && return 0
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
  done
  log "  skipped: not listening on $port (see $B/$logname.log)"
  stop_server
  return 1
}

# ---- CPU accounting around one client run
proc_ticks() {  # utime+stime of the server and its children (nginx worker)
  local t=0 p v
  for p in $1 $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    v=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}') || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
cpu_stat() {  # per CPU 0,1: processes (user+nice+system), irq+softirq, total
  awk '/^cpu[01] /{printf "%d %d %d ", $2+$3+$4, $7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

quiet_wait() {  # wait up to 60 s for a second in which other processes use < max_foreign
  local a b s0 s1
  for _ in $(seq 60); do
    s0=$(proc_ticks "${srv:-0}") a=$(cpu_stat); sleep 1; s1=$(proc_ticks "${srv:-0}") b=$(cpu_stat)
    awk -v a="$a" -v b="$b" -v s="$((s1 - s0))" -v hz="$hz" -v max="$max_foreign" 'BEGIN {
      split(a, x); split(b, y)
      exit !((y[1] - x[1] + y[4] - x[4]) / (y[3] - x[3] + y[6] - x[6]) * 200 - s / hz * 100 < max) }' && return 0
  done
  log "  machine still busy after 60 s; measuring anyway"
}

measure() {  # kind server test run attempt client-cmd...; fails if foreign load was high
  local kind=$1 name=$2 test=$3 run=$4 attempt=$5 s0 s1 c0 c1 out cpu; shift 5
  s0=$(proc_ticks "$srv") c0=$(cpu_stat)
  { time timeout $((dur + 30)) taskset -c 1 "$@" >"$B/out" 2>>"$B/client.log"; } 2>"$B/time" || true
  s1=$(proc_ticks "$srv") c1=$(cpu_stat)
  out=$(grep -m1 '^{' "$B/out" || echo '{"failed":1}')
  # srv/cli: our processes; busy0: all of CPU 0 (incl. softirq);
  # foreign: other processes on both CPUs -- all in % of one CPU.
  cpu=$(awk -v a="$c0" -v b="$c1" -v s="$((s1 - s0))" -v hz="$hz" -v t="$(cat "$B/time")" 'BEGIN {
    split(a, x); split(b, y); split(t, w); wall = w[1]; cli = (w[2] + w[3]) / wall * 100
    srv = s / hz / wall * 100; t0 = y[3] - x[3]; t1 = y[6] - x[6]
    busy0 = (y[1] - x[1] + y[2] - x[2]) / t0 * 100
    procs = (y[1] - x[1]) / t0 * 100 + (y[4] - x[4]) / t1 * 100
    f = procs - srv - cli; if (f < 0) f = 0
    printf "\"srv_cpu\":%.0f,\"cli_cpu\":%.0f,\"busy0\":%.0f,\"foreign_cpu\":%.0f", srv, cli, busy0, f }')
  printf '%s,"kind":"%s","server":"%s","test":"%s","run":%d,"attempt":%d,%s}\n' \
    "${out%\}}" "$kind" "$name" "$test" "$run" "$attempt" "$cpu" | tee -a "$res" >&2
  [ "${cpu##*\"foreign_cpu\":}" -le "$max_foreign" ]
}

measure_reps() {  # kind server test client-cmd...: REPS runs, noisy ones repeated
  local r a
  for r in $(seq "$reps"); do
    for a in 1 2 3; do
      measure "$1" "$2" "$3" "$r" "$a" "${@:4}" && break
      [ "$a" = 3 ] || { log "  other processes were busy: repeating run $r"; quiet_wait; }
    done
  done
}

bench() {  # kind
  local kind=$1 entry name cmd test c s body load url wrk
  local -n servers=${kind}_servers tests=${kind}_tests
  for entry in "${servers[@]}"; do
    read -r name cmd <<<"$entry"
    [[ $name =~ $only ]] || continue
    log "== $kind: $name"
    quiet_wait
    # shellcheck disable=SC2086  # cmd is a word list
    start_server "$kind-$name" $cmd || continue
    load=("$B/echo-load" -h 127.0.0.1 -p "$port")
    url=http://127.0.0.1:$port/ wrk=(wrk -t1 -s "$kit/tools/wrk-json.lua")
    if [ "$kind" = echo ]; then
      timeout 30 taskset -c 1 "${load[@]}" -c 100 -s 64 -d 1 >/dev/null 2>&1 || log "  warning: errors in warm-up"
      for test in "${tests[@]}"; do
        read -r test c s <<<"$test"
        measure_reps echo "$name" "$test" "${load[@]}" -c "$c" -s "$s" -d "$dur"
      done
    else
      body=$(curl -s --max-time 3 "$url" || true)
      if [ "$body" != "Hello, World!" ]; then log "  skipped: wrong response: $body"; stop_server; continue; fi
      timeout 30 taskset -c 1 "${wrk[@]}" -c100 -d1s "$url" >/dev/null 2>&1 || true
      for test in "${tests[@]}"; do
        read -r test c <<<"$test"
        measure_reps http "$name" "$test" "${wrk[@]}" -c"$c" -d"${dur}s" "$url"
      done
    fi
    kill -0 "$srv" 2>/dev/null || log "  warning: server exited during the runs (see $B/$kind-$name.log)"
    stop_server
  done
}

bench echo
bench http

{
  echo "## Results $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) vCPUs," \
       "$(free -g | awk '/^Mem:/{print $2}') GiB RAM, Linux $(uname -r)," \
       "cpuidle $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo -);" \
       "server on CPU 0, client on CPU 1; ${dur}s per run, median of $reps."
  echo "Versions: $("$py" --version 2>&1), uvloop $("$py" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo -)," \
       "$(go version 2>/dev/null | awk '{print $3}' || echo go -), node $(node --version 2>/dev/null || echo -)," \
       "libuv $(pkg-config --modversion libuv 2>/dev/null || echo -), $(nginx -v 2>&1 | sed 's/.*: //')," \
       "$(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')."
  echo
  "$py" "$kit/tools/report.py" "$res"
} | tee "$B/report.md"
log "raw results: $res"
