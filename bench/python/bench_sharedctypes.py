"""CPython baselines for bench_sharedctypes; prints one JSON object.

    bench_sharedctypes.py SECONDS

locked_increment_2p_ops_per_s: two processes (pinned to CPUs 0 and 1 when
    there are two), each running `with v.get_lock(): v.value += 1` on one
    Value('q') (CPython's default lock, an RLock) for SECONDS; total ops/s
    counted while both run.
array_slice_bytes_per_s: `a[:]` of an Array('d', 1 << 20) (8 MiB), the
    synchronized wrapper's slice read, repeated. It builds a list of Python
    floats: not the same work as a copy of the bytes.
array_copy_bytes_per_s: the same array's bytes copied under its lock,
    `with a.get_lock(): bytes(memoryview(a.get_obj()))`: the like-for-like
    baseline of a locked copy.
SECONDS 0 skips the two-process part (its figure is then absent).
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


def two_processes(seconds):
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
    return (counts[0] + counts[1]) / elapsed


def per_second(fn, nbytes, reps=5):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return nbytes / ((time.perf_counter() - t0) / reps)


def locked_copy(a):
    with a.get_lock():
        return bytes(memoryview(a.get_obj()))


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    out = {}
    if seconds > 0:
        out["locked_increment_2p_ops_per_s"] = two_processes(seconds)
    a = Array("d", 1 << 20)
    nbytes = 8 * (1 << 20)
    out["array_slice_bytes_per_s"] = per_second(lambda: a[:], nbytes)
    out["array_copy_bytes_per_s"] = per_second(lambda: locked_copy(a), nbytes)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
