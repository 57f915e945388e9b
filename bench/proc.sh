#!/usr/bin/env bash
# weft's subprocesses against Go's os/exec and asyncio's
# create_subprocess_exec: the spawn_proc workload (n runs of /bin/true,
# 10 at a time, each waited for and reaped; ns per process).
#
# Builds weft-bench (Release, in its own build directory, as bench/run.sh
# does) and the Go peer (bench/peers/spawn_proc.go), then runs weft, Go
# (GOMAXPROCS=1 and 2, as the peer kit), asyncio (Debian's python3, and
# CPython 3.13 if present), uvloop (if importable) and the floor (a plain
# C loop of posix_spawn + waitpid, bench/peers/spawn_floor.c) alternately REPS
# times, one process per run, every raw JSON line to stderr, and prints a
# Markdown table of the medians and each peer's time over weft's.
#
# Usage: bench/proc.sh
# Env:   REPS=3         runs per peer; the median run is reported
#        N=1000         processes per run
#        PIN=CPU        run every peer but go-mp2 under `taskset -c CPU`
#        PY313=...      CPython 3.13 (default: pyenv's, skipped if missing)
#        WEFT_BENCH=... a weft-bench binary to use instead of building one
#        BUILD_DIR=...  where to build it (default: build-bench/)
#        RAW=file       also keep the raw JSON lines in this file
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
reps=${REPS:-3}
n=${N:-1000}
py313=${PY313:-/root/.pyenv/versions/3.13.0/bin/python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw=${RAW:-$tmp/raw.jsonl}
: >"$raw"

# --- build ---------------------------------------------------------------
if [ -n "${WEFT_BENCH:-}" ]; then
  weft=$WEFT_BENCH
else
  bdir=${BUILD_DIR:-$root/build-bench}
  cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DWEFT_SANITIZE= \
    -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF >&2
  cmake --build "$bdir" --target weft-bench -j2 >&2
  weft=$bdir/bin/weft-bench
fi
[ -x "$weft" ] || { echo "proc.sh: no weft-bench binary at $weft" >&2; exit 1; }

peers=(weft)
cc -O2 -o "$tmp/spawn_floor" "$here/peers/spawn_floor.c" >&2
peers+=(floor)
if command -v go >/dev/null; then
  (cd "$here/peers" && GOCACHE=${GOCACHE:-$tmp/gocache} go build -o "$tmp/spawn_proc_go" spawn_proc.go) >&2
  peers+=(go go-mp2)
else
  echo "proc.sh: no go: Go peer not run" >&2
fi
peers+=(asyncio)
if [ -x "$py313" ]; then peers+=(asyncio-3.13); fi
if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
  peers+=(uvloop)
else
  echo "proc.sh: uvloop not importable: not run" >&2
fi

pin=()
[ -z "${PIN:-}" ] || pin=(taskset -c "$PIN")

run_one() {  # PEER -> one JSON line
  case $1 in
    weft)         env -u WEFT_DEBUG "${pin[@]}" "$weft" spawn_proc --n "$n" ;;
    floor)        "${pin[@]}" "$tmp/spawn_floor" "$n" ;;
    go)           GOMAXPROCS=1 "${pin[@]}" "$tmp/spawn_proc_go" "$n" ;;
    go-mp2)       GOMAXPROCS=2 "$tmp/spawn_proc_go" "$n" ;;  # never pinned
    asyncio)      "${pin[@]}" /usr/bin/python3 "$here/peers/spawn_proc.py" "$n" ;;
    asyncio-3.13) "${pin[@]}" "$py313" "$here/peers/spawn_proc.py" "$n" ;;
    uvloop)       "${pin[@]}" /usr/bin/python3 "$here/peers/spawn_proc.py" "$n" --uvloop ;;
  esac
}

{
  echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); peers: ${peers[*]}${PIN:+; pinned to CPU $PIN}"
} >&2

for rep in $(seq "$reps"); do  # repetitions outermost: drift hits every peer alike
  for peer in "${peers[@]}"; do
    out=$(run_one "$peer") || { echo "FAILED: $peer (rep $rep)" >&2; continue; }
    echo "$out" | tee -a "$raw" >&2
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$raw" <<'EOF'
import json, sys
runs = {}
for text in open(sys.argv[1]):
    r = json.loads(text)
    runs.setdefault(r["peer"], []).append(r)
med = {k: sorted(v, key=lambda r: r["ns_per_op"])[len(v) // 2] for k, v in runs.items()}
weft = next((r for k, r in med.items() if k.startswith("weft")), None)
reps = max((len(v) for v in runs.values()), default=0)
n = weft["n"] if weft else next(iter(med.values()))["n"]
print(f"spawn_proc: {n:,} runs of /bin/true, 10 at a time; median of {reps} runs per peer.\n")
print("| peer | µs/process | processes/s | peer / weft | peak RSS MiB |")
print("|---|---|---|---|---|")
for k, r in med.items():
    ratio = f"{r['ns_per_op'] / weft['ns_per_op']:.2f}" if weft else "—"
    print(f"| {k} | {r['ns_per_op'] / 1000:,.0f} | {1e9 / r['ns_per_op']:,.0f} | {ratio} | {r['peak_rss_kib'] / 1024:.1f} |")
EOF
