#!/usr/bin/env bash
# weft against Go (GOMAXPROCS=1) on the peer kit's micro-workloads.
#
# Builds weft-bench and the Go peer, runs weft and go alternately REPS times
# per workload (one process per run, launched from bash so peak RSS is the
# program's own), prints every raw JSON line to stderr and a Markdown table of
# medians, ratios and the targets to stdout.
#
# Usage: bench/run.sh [WORKLOAD...]   (default: all; `submit`, `call_later`,
#        `sleeper_task` and `fdwait` are weft only)
# Env:   REPS=3         runs per (peer, workload); the median run is reported
#        PIN=1          run both under `taskset -c 1` (PIN=CPU picks another CPU)
#        PEERS_DIR=...  the peer kit (default: ../../shared/bench/peers from this script's folder)
#        WEFT_BENCH=... a weft-bench binary to use instead of building one
#        BUILD_DIR=...  where to build it (default: build-bench/, always Release)
#        RAW=file       also keep the raw JSON lines in this file
#        NO_GO=1        weft only: neither install, build nor run the Go peer
#                       (also what happens, with a warning, when `go` is
#                       missing and installing golang-go fails)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers_dir=${PEERS_DIR:-$here/../../shared/bench/peers}  # /work/main/bench -> /work/shared/bench/peers
reps=${REPS:-3}
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] ||
  workloads=(spawn switch sleepers idle timeout queue semaphore gather to_thread submit
             call_later sleeper_task fdwait)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw=${RAW:-$tmp/raw.jsonl}
: >"$raw"

# --- build ---------------------------------------------------------------
# A Release build of its own in BUILD_DIR (default build-bench/): a build/
# configured for Debug (or with sanitizers) would measure the wrong thing.
if [ -n "${WEFT_BENCH:-}" ]; then
  weft=$WEFT_BENCH
else
  bdir=${BUILD_DIR:-$root/build-bench}
  cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DWEFT_SANITIZE= \
    -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF >&2
  cmake --build "$bdir" --target weft-bench -j"$(nproc)" >&2
  weft=$bdir/bin/weft-bench
fi
[ -n "${weft:-}" ] && [ -x "$weft" ] || { echo "run.sh: no weft-bench binary found" >&2; exit 1; }

go_peer=1
if [ -n "${NO_GO:-}" ]; then
  go_peer=
elif ! command -v go >/dev/null &&
     ! { apt-get update >&2 && apt-get install -y golang-go >&2; }; then
  echo "run.sh: WARNING: no go and golang-go would not install: weft only" >&2
  go_peer=
fi
if [ -n "$go_peer" ]; then
  [ -f "$peers_dir/go/micro.go" ] || { echo "run.sh: no peer kit at $peers_dir (set PEERS_DIR)" >&2; exit 1; }
  (cd "$peers_dir/go" && GOCACHE=${GOCACHE:-$tmp/gocache} go build -o "$tmp/micro-go" micro.go) >&2
fi

pin=()
[ -z "${PIN:-}" ] || pin=(taskset -c "$PIN")

run_one() {  # PEER WORKLOAD -> one JSON line
  case $1 in
    weft) env -u WEFT_DEBUG "${pin[@]}" "$weft" "$2" ;;  # debug mode would measure its checks
    go)   [ -n "$go_peer" ] || return 0  # NO_GO: no Go line
          case $2 in  # weft-only workloads: no Go line
            submit | call_later | sleeper_task | fdwait) ;;
            *) GOMAXPROCS=1 "${pin[@]}" "$tmp/micro-go" "$2" ;;
          esac ;;
  esac
}

{
  echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(if [ -n "$go_peer" ]; then go version; else echo "Go peer not run"; fi); weft-bench: $weft${PIN:+; pinned to CPU $PIN}"
} >&2

for rep in $(seq "$reps"); do  # repetitions outermost, so slow drift hits both alike
  for w in "${workloads[@]}"; do
    for peer in weft go; do
      out=$(run_one "$peer" "$w") || { echo "FAILED: $peer $w (rep $rep)" >&2; continue; }
      [ -z "$out" ] || echo "$out" | tee -a "$raw" >&2
    done
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$raw" "${workloads[@]}" <<'EOF'
import json, os, sys
runs = {}
for text in open(sys.argv[1]):
    r = json.loads(text)
    peer = "weft" if r["peer"].startswith("weft") else "go"
    runs.setdefault((peer, r["workload"]), []).append(r)
# the median run by ns_per_op (for sleepers that is the median wall time too)
med = {k: sorted(v, key=lambda r: r["ns_per_op"])[len(v) // 2] for k, v in runs.items()}

# (absolute ns/op bound, bound on weft/go) from the issue
targets = {
    "switch":   (10, 1 / 5, "<= 10 ns and <= 1/5 of Go"),
    "spawn":    (25, 1 / 30, "<= 25 ns and <= 1/30 of Go"),
    "timeout":  (20, 1 / 15, "<= 20 ns and <= 1/15 of Go"),
    "sleepers": (1600, 1 / 2, "overhead <= 1.6 µs and <= 1/2 of Go"),
    "idle":     (2000, 0.6, "<= 2 µs and <= 0.6 of Go; <= 4.5 KiB/task"),
    "queue":    (15, 1 / 2, "<= 15 ns and <= 1/2 of Go"),
    "semaphore": (40, 1 / 6, "<= 40 ns and <= 1/6 of Go"),
    "gather":   (60, 1 / 3, "<= 60 ns and <= 1/3 of Go"),
    "to_thread": (2000 if os.environ.get("PIN") else float("inf"), 1.0,
                  "no slower than Go; <= 2 µs pinned"),
    "submit":   (200, float("inf"), ">= 5 M jobs/s (<= 200 ns)"),
}
def ns(x): return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"
reps = max((len(v) for v in runs.values()), default=0)
print(f"Median of {reps} runs per cell; ns/op = wall / n (sleepers: (wall - 1 s) / n).\n")
if not any(peer == "go" for peer, _ in runs):
    print("Go peer not run (NO_GO=1, or no Go): weft only.\n")
print("| workload | weft ns/op | go ns/op | weft/go | target | met |")
print("|---|---|---|---|---|---|")
for w in sys.argv[2:]:
    a, b = med.get(("weft", w)), med.get(("go", w))
    cells = [ns(a["ns_per_op"]) if a else "—", ns(b["ns_per_op"]) if b else "—"]
    ratio = a["ns_per_op"] / b["ns_per_op"] if a and b and b["ns_per_op"] > 0 else None
    cells.append(f"{ratio:.3f}" if ratio is not None else "—")
    t = targets.get(w)
    met = "—"
    if t and a and (ratio is not None or t[1] == float("inf")):
        ok = a["ns_per_op"] <= t[0] and (ratio is None or ratio <= t[1])
        if w == "idle":
            ok = ok and a.get("bytes_per_task", 1 << 30) <= 4.5 * 1024
        met = "yes" if ok else "no"
    cells += [t[2] if t else "", met]
    print(f"| {w} | " + " | ".join(cells) + " |")
if ("weft", "idle") in med or ("go", "idle") in med:
    a, b = med.get(("weft", "idle")), med.get(("go", "idle"))
    f = lambda r, k, g: g(r[k]) if r and k in r else "—"
    print()
    print("| idle | weft | go |")
    print("|---|---|---|")
    print(f"| bytes/task | {f(a, 'bytes_per_task', lambda x: f'{x:,}')} | {f(b, 'bytes_per_task', lambda x: f'{x:,}')} |")
    print(f"| peak RSS MiB | {f(a, 'peak_rss_kib', lambda x: f'{x / 1024:.0f}')} | {f(b, 'peak_rss_kib', lambda x: f'{x / 1024:.0f}')} |")
# Timer callbacks against tasks that sleep and then do the same work.
a, b = med.get(("weft", "call_later")), med.get(("weft", "sleeper_task"))
if a and b and b["ns_per_op"] > 0:
    print()
    print(f"call_later / sleeper_task: {ns(a['ns_per_op'])} / {ns(b['ns_per_op'])} ns"
          f" = {a['ns_per_op'] / b['ns_per_op']:.3f}"
          f" (1/{b['ns_per_op'] / a['ns_per_op']:.0f})")
EOF
