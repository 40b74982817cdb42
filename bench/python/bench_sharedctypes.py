"""CPython baselines for bench_sharedctypes; prints one JSON object.

    bench_sharedctypes.py SECONDS

locked_increment_2p_ops_per_s: two processes (pinned to CPUs 0 and 1 when
    there are two), each running `with v.get_lock(): v.value += 1` on one
    Value('q') (CPython's default lock, an RLock) for SECONDS; total ops/s
    counted while both run.
array_slice_bytes_per_s: `a[:]` of an Array('d', 1 << 20) (8 MiB), the
    synchronized wrapper's slice read, repeated.
"""
import json
import os
import sys
import time
from multiprocessing import get_context
from multiprocessing.sharedctypes import Array, Value


def worker(v, start, stop, counts, index):
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    except (AttributeError, OSError):
        pass
    with start.get_lock():
        start.value += 1
    while start.value < 2:
        pass
    n = 0
    while not stop.value:
        with v.get_lock():
            v.value += 1
        n += 1
    counts[index] = n


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    ctx = get_context("fork")
    v = ctx.Value("q", 0)
    start = ctx.Value("i", 0)
    stop = ctx.Value("i", 0, lock=False)
    counts = ctx.Array("q", 2, lock=False)
    procs = [ctx.Process(target=worker, args=(v, start, stop, counts, i)) for i in range(2)]
    for p in procs:
        p.start()
    while start.value < 2:
        time.sleep(0.001)
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.value = 1
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    ops = counts[0] + counts[1]

    a = Array("d", 1 << 20)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        a[:]
    slice_s = (time.perf_counter() - t0) / reps
    print(json.dumps({
        "locked_increment_2p_ops_per_s": ops / elapsed,
        "array_slice_bytes_per_s": 8 * (1 << 20) / slice_s,
    }))


if __name__ == "__main__":
    main()
