#!/usr/bin/env bash
# What a trace file (WEFT_TRACE, src/core/trace.c) costs the loop: a
# weft-bench workload with many events per operation, run with tracing
# off and on (WEFT_TRACE_MAX large enough that nothing is dropped for
# size), interleaved, ROUNDS times. Reports the median of each, and the
# cost per event = (median on - median off) / events, where events is
# otherData.events of the trace file plus dropped_slow_writer (events the
# loop recorded but the writer had no room for: they cost the loop nearly
# the same). With OLD_BENCH=path (a weft-bench built from a commit before
# tracing existed), also runs it, to show that tracing off costs nothing
# measurable.
#
# The time is weft-bench's wall_s (the timed region of the workload: the
# loop's own cost) and, beside it, the process's elapsed time (which adds
# the file's last writes and the writer thread's join at the loop's end).
#
# Usage: bench/trace.sh
# Env:   WORKLOAD=switch  a weft-bench workload (see `weft-bench --help`)
#        N=...            its operation count (default: the workload's)
#        ROUNDS=5         runs of each variant; the median is reported
#        OLD_BENCH=...    a weft-bench of a commit before tracing existed
#        WEFT_BENCH=...   a weft-bench binary to use instead of building one
#        BUILD_DIR=...    where to build it (default: build-bench/)
#        PIN=CPU          run every variant under `taskset -c CPU`
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
workload=${WORKLOAD:-switch}
rounds=${ROUNDS:-5}
nargs=()
[ -z "${N:-}" ] || nargs=(--n "$N")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw=$tmp/raw.txt
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
[ -x "$weft" ] || { echo "trace.sh: no weft-bench binary at $weft" >&2; exit 1; }
variants=(off on)
if [ -n "${OLD_BENCH:-}" ]; then
  [ -x "$OLD_BENCH" ] || { echo "trace.sh: OLD_BENCH=$OLD_BENCH is not executable" >&2; exit 1; }
  variants+=(old)
fi

pin=()
[ -z "${PIN:-}" ] || pin=(taskset -c "$PIN")

# One run: prints "VARIANT wall_s elapsed_s events dropped_slow".
run_one() {
  local v=$1 bin=$weft out t0 t1 events=0 slow=0
  [ "$v" = old ] && bin=$OLD_BENCH
  local env_=(env -u WEFT_DEBUG -u WEFT_PS -u WEFT_TRACE -u WEFT_TRACE_MAX)
  if [ "$v" = on ]; then
    rm -f "$tmp/trace.json"
    env_+=(WEFT_TRACE="$tmp/trace.json" WEFT_TRACE_MAX=$((1 << 40)))
  fi
  t0=$(date +%s%N)
  out=$("${env_[@]}" "${pin[@]}" "$bin" "$workload" "${nargs[@]}")
  t1=$(date +%s%N)
  echo "$out" >&2
  if [ "$v" = on ]; then
    read -r events slow < <(python3 - "$tmp/trace.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["otherData"]
if d["dropped_for_size"]:
    sys.exit("trace.sh: %d events dropped for size" % d["dropped_for_size"])
print(d["events"], d["dropped_slow_writer"])
EOF
)
    ls -l "$tmp/trace.json" >&2
  fi
  local wall
  wall=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["wall_s"])' "$out")
  echo "$v $wall $(( (t1 - t0) / 1000 )) $events $slow"
}

{
  echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); workload $workload ${nargs[*]}; variants: ${variants[*]}"
} >&2

for r in $(seq "$rounds"); do  # rounds outermost: drift hits every variant alike
  for v in "${variants[@]}"; do
    run_one "$v" | tee -a "$raw" >&2
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$raw" "$workload" "$rounds" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    v, wall, el_us, ev, slow = line.split()
    runs.setdefault(v, []).append((float(wall), int(el_us) / 1e6, int(ev), int(slow)))
med = lambda xs: statistics.median(xs)
w = {v: med([r[0] for r in rs]) for v, rs in runs.items()}
e = {v: med([r[1] for r in rs]) for v, rs in runs.items()}
on = runs["on"]
events = med([r[2] + r[3] for r in on])
slow = max(r[3] for r in on)
print(f"{sys.argv[2]}: median of {sys.argv[3]} interleaved runs per variant; "
      f"{events:,.0f} events per traced run"
      + (f" (up to {slow:,} dropped by a slow writer, counted)" if slow else
         " (none dropped)") + ".\n")
print("| variant | wall_s (timed region) | process elapsed s | vs off |")
print("|---|---|---|---|")
names = {"off": "tracing off", "on": "WEFT_TRACE on", "old": "before tracing (OLD_BENCH)"}
for v in ("off", "on", "old"):
    if v in w:
        print(f"| {names[v]} | {w[v]:.4f} | {e[v]:.3f} | {w[v] / w['off']:.3f} |")
per = (w["on"] - w["off"]) * 1e9 / events if events else float("nan")
per_el = (e["on"] - e["off"]) * 1e9 / events if events else float("nan")
print(f"\ncost per event: {per:.1f} ns on the loop (timed region), "
      f"{per_el:.1f} ns of process elapsed time (with the file's end)")
if "old" in w:
    print(f"tracing off vs before tracing: {100 * (w['off'] / w['old'] - 1):+.1f} % "
          f"(timed region; spread of off runs: "
          f"{min(r[0] for r in runs['off']):.4f}..{max(r[0] for r in runs['off']):.4f} s, "
          f"of old runs: {min(r[0] for r in runs['old']):.4f}..{max(r[0] for r in runs['old']):.4f} s)")
EOF
