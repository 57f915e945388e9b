#!/usr/bin/env python3
"""asyncio peer of weft-bench's spawn_proc workload.

Usage: spawn_proc.py [N] [--uvloop]     (N: processes, default 1000)

n runs of /bin/true, 10 at a time: 10 worker tasks in a TaskGroup, each
taking from one counter and doing `await asyncio.create_subprocess_exec(
"/bin/true")` then `await proc.wait()` (stdio inherited, as weft's and
Go's). Prints one JSON line in the format of the peer kit
(shared/bench/peers/README.md); the timed region is the group, from its
opening to the last reap. With --uvloop, uvloop's loop (if importable).
"""
import asyncio
import json
import resource
import sys
from time import perf_counter as now

WORKERS = 10


async def spawn_proc(n):
    left = n

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            proc = await asyncio.create_subprocess_exec("/bin/true")
            if await proc.wait() != 0:
                raise RuntimeError("/bin/true failed")

    t0 = now()
    async with asyncio.TaskGroup() as tg:
        for _ in range(WORKERS):
            tg.create_task(worker())
    return n, now() - t0


def main():
    args = sys.argv[1:]
    use_uvloop = "--uvloop" in args
    rest = [a for a in args if a != "--uvloop"]
    if len(rest) > 1 or (rest and not rest[0].isdigit()):
        sys.exit("usage: spawn_proc.py [N] [--uvloop]")
    n = int(rest[0]) if rest else 1000
    py = "%d.%d" % sys.version_info[:2]
    peer, loop_factory = f"asyncio-{py}", None
    if use_uvloop:
        import uvloop
        uv = ".".join(uvloop.__version__.split(".")[:2])
        peer, loop_factory = f"uvloop-{uv}-py{py}", uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        n, wall = runner.run(spawn_proc(n))
    out = {"peer": peer, "workload": "spawn_proc", "n": n,
           "ns_per_op": round(wall / n * 1e9, 1), "wall_s": round(wall, 4),
           "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
