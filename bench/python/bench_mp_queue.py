"""CPython baseline for bench_lockfree: multiprocessing.Queue between two
processes (fork), what a Python user would reach for. Prints one JSON object.

    bench_mp_queue.py ITEMS ROUND_TRIPS

tput_ns_per_item: a producer process puts ITEMS ints, this process gets
    them; wall time per item from the first put to the last get.
rtt_ns: ROUND_TRIPS ping-pongs through two queues (child echoes).
"""
import json
import os
import sys
import time
from multiprocessing import get_context


# The CPUs this run may use, read once before anyone pins: a child forked
# after the parent pinned itself would otherwise read the parent's single CPU
# and pin itself there too.
try:
    CPUS = sorted(os.sched_getaffinity(0))
except (AttributeError, OSError):
    CPUS = []


def pin(i):
    if not CPUS:
        return
    try:
        os.sched_setaffinity(0, {CPUS[i % len(CPUS)]})
    except OSError:
        pass


def producer(q, n, go):
    pin(1)
    go.wait()
    for i in range(n):
        q.put(i)


def echo(a, b, n):
    pin(1)
    for _ in range(n):
        b.put(a.get())


def main():
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    trips = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    ctx = get_context("fork")
    pin(0)
    q, go = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=producer, args=(q, items, go))
    p.start()
    time.sleep(0.05)
    t0 = time.perf_counter_ns()
    go.set()
    for _ in range(items):
        q.get()
    tput = (time.perf_counter_ns() - t0) / items
    p.join()

    a, b = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo, args=(a, b, trips + 100))
    p.start()
    for i in range(100):  # warm up both processes
        a.put(i)
        b.get()
    t0 = time.perf_counter_ns()
    for i in range(trips):
        a.put(i)
        b.get()
    rtt = (time.perf_counter_ns() - t0) / trips
    p.join()
    print(json.dumps({"tput_ns_per_item": tput, "rtt_ns": rtt}))


if __name__ == "__main__":
    main()
