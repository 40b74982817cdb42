"""Speed of shmkit's Python locks, atomics and queues against CPython's, each
ratio measured in the same run:

  python3 python/bench/bench_sync.py [--quick]

with the package on PYTHONPATH (build/release/python/site-main). Rows:
  lock           Lock acquire+release, uncontended      target <= 1.0x CPython's time
  lock_2p        2 processes contending for one lock    target >= 2x CPython's throughput
  fetch_add      Value('q').fetch_add (AtomicRef)       target >= 10x `with v.get_lock(): v.value += 1`
  queue_8b       8-byte items streamed from one pinned process to another
                 (SpscQueue 'q' vs multiprocessing.Queue)  target >= 50x
  queue_8b_rtt   8-byte round trip between two pinned processes through two
                 queues (reported, no target)
Times are the best of several repeats (ns per operation); the 2-process rows
are operations per second of both processes together, pinned to two CPUs,
counted while both run, the median of 7 alternating runs.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import timeit

from shmkit import _sync
from shmkit import synchronize as S
from shmkit.queues import SpscQueue


def per_op(stmt, glb, number, repeat=7):
    return min(timeit.repeat(stmt, globals=glb, number=number, repeat=repeat)) / number * 1e9


def paired(a, b, rounds=9):
    """(best ns/op of a, of b), measured alternately so that a burst of load
    on the machine hits both: a and b are (stmt, globals, number)."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(per_op(*a, repeat=1))
        tb.append(per_op(*b, repeat=1))
    return min(ta), min(tb)


def _contend(lock, start, stop, n, out, cpu):
    # Pinned, one process per CPU: unpinned, the scheduler's moves dominate.
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    start.wait()
    a, r = lock.acquire, lock.release
    done = 0
    t0 = time.perf_counter()
    # Until n pairs or the other process stopped: only operations done while
    # both run count (an unfair lock cannot look fast by running one alone).
    while done < n and not stop[0]:
        for _ in range(100):
            a()
            r()
        done += 100
    stop[0] = 1
    out.put((done, time.perf_counter() - t0))


def contended(lock, n):
    """Ops/s of 2 processes doing up to n acquire+release each on `lock`,
    counted while both run (the first to finish stops the other)."""
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.SimpleQueue()
    stop = ctx.RawArray("b", 1)
    cpus = sorted(os.sched_getaffinity(0))
    pin = [cpus[0], cpus[1]] if len(cpus) >= 2 else [None, None]
    ps = [ctx.Process(target=_contend, args=(lock, start, stop, n, out, pin[i])) for i in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.2)
    start.set()
    results = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(d for d, _ in results) / max(t for _, t in results)


# The CPUs this run may use, read once before any process pins itself (a
# child forked after its parent pinned would read the parent's one CPU).
try:
    CPUS = sorted(os.sched_getaffinity(0))
except (AttributeError, OSError):
    CPUS = []


def _pin(i):
    if len(CPUS) >= 2:
        os.sched_setaffinity(0, {CPUS[i % len(CPUS)]})


def _stream_producer(attach, obj, n, start):
    _pin(1)
    q = attach(obj)
    start.wait()
    put = q.put
    for i in range(n):
        put(i)


def _stream_consumer(attach, obj, n, start, out):
    _pin(0)
    q = attach(obj)
    get = q.get
    start.wait()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        get()
    out.put((time.perf_counter_ns() - t0) / n)


def queue_stream(make, attach, n):
    """ns per item of n 8-byte items put by one process and taken by
    another, each pinned to its own CPU; both sides get the same layout:
    two forked processes, the queue made here and attached in each child
    (`attach(obj)` returns the child's handle), timed by the consumer from
    the common start to its last get."""
    ctx = mp.get_context("fork")
    obj = make()
    start, out = ctx.Event(), ctx.SimpleQueue()
    ps = [ctx.Process(target=_stream_producer, args=(attach, obj, n, start)),
          ctx.Process(target=_stream_consumer, args=(attach, obj, n, start, out))]
    for p in ps:
        p.start()
    time.sleep(0.1)
    start.set()
    ns = out.get()
    for p in ps:
        p.join()
    _release(obj)
    return ns


def _echo(attach, objs, n):
    _pin(1)
    a, b = attach(objs[0]), attach(objs[1])
    get, put = a.get, b.put
    for _ in range(n):
        put(get())


def _initiator(attach, objs, n, warm, out):
    _pin(0)
    a, b = attach(objs[0]), attach(objs[1])
    put, get = a.put, b.get
    for i in range(warm):
        put(i)
        get()
    t0 = time.perf_counter_ns()
    for i in range(n):
        put(i)
        get()
    out.put((time.perf_counter_ns() - t0) / n)


def queue_round_trip(make, attach, n, warm=100):
    """ns per round trip of an 8-byte item between two pinned processes
    through two queues (the echo process puts back what it got)."""
    ctx = mp.get_context("fork")
    objs = (make(), make())
    out = ctx.SimpleQueue()
    ps = [ctx.Process(target=_echo, args=(attach, objs, n + warm)),
          ctx.Process(target=_initiator, args=(attach, objs, n, warm, out))]
    for p in ps:
        p.start()
    ns = out.get()
    for p in ps:
        p.join()
    for o in objs:
        _release(o)
    return ns


def _release(obj):
    if hasattr(obj, "unlink"):
        obj.unlink()


# (make, attach) for each side of the queue rows: shmkit's queue is attached
# by name in each child; multiprocessing.Queue is inherited through fork.
SHMKIT_QUEUE = (lambda: SpscQueue(capacity=1024, item="q"), lambda q: SpscQueue(q.name, item="q"))
CPYTHON_QUEUE = (lambda: mp.get_context("fork").Queue(), lambda q: q)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    k = 1 if args.quick else 5
    rows = []

    shm_lock, cpy_lock = S.Lock(), mp.Lock()
    glb = {"a": shm_lock.acquire, "r": shm_lock.release, "l": shm_lock}
    cglb = {"a": cpy_lock.acquire, "r": cpy_lock.release, "l": cpy_lock}
    s, c = paired(("l.acquire(); l.release()", glb, 100000 * k),
                  ("l.acquire(); l.release()", cglb, 100000 * k))
    rows.append(("lock", "Lock acquire+release, uncontended (ns)", s, c, s / c, "<= 1.0", s / c <= 1.0))

    n = 50000 * k
    # Alternating runs, the median of each (the 2-process rows are noisy).
    runs = [(contended(S.Lock(), n), contended(mp.Lock(), n)) for _ in range(7)]
    s2 = statistics.median(r[0] for r in runs)
    c2 = statistics.median(r[1] for r in runs)
    rows.append(("lock_2p", "2-process contended lock (ops/s)", s2, c2, s2 / c2, ">= 2.0", s2 / c2 >= 2.0))

    v = mp.Value("q", 0)
    blk = _sync.TypedBlock.create(None, 1024 + 77, "q", None, 8, 8, 1, 0, 8)
    atom = _sync.AtomicRef(blk, blk.payload_offset, "q")

    def locked_inc():
        with v.get_lock():
            v.value += 1

    # shmkit.sharedctypes.Value binds AtomicRef.fetch_add into the instance;
    # without it (a partial install) the AtomicRef over a block is measured.
    try:
        from shmkit.sharedctypes import Value as SkValue
        sk_value = SkValue("q", 0)
        fetch_add = sk_value.fetch_add
    except (ImportError, AttributeError):
        fetch_add = atom.fetch_add
    s, c = paired(("f(1)", {"f": fetch_add}, 200000 * k), ("g()", {"g": locked_inc}, 20000 * k))
    rows.append(("fetch_add", "Value.fetch_add vs locked += (ns)", s, c, c / s, ">= 10", c / s >= 10))

    runs = [(queue_stream(*SHMKIT_QUEUE, 200000 * k), queue_stream(*CPYTHON_QUEUE, 20000 * k))
            for _ in range(3)]
    s, c = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    rows.append(("queue_8b", "8-byte stream, 2 pinned processes (ns)", s, c, c / s, ">= 50", c / s >= 50))
    runs = [(queue_round_trip(*SHMKIT_QUEUE, 20000 * k), queue_round_trip(*CPYTHON_QUEUE, 2000 * k))
            for _ in range(3)]
    s, c = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    rows.append(("queue_8b_rtt", "8-byte round trip, 2 pinned processes (ns)", s, c, c / s, "-", True))

    del atom
    blk.unlink()
    print(f"# python {sys.version.split()[0]}, pid {os.getpid()}, {os.cpu_count()} CPUs")
    print(f"{'row':10} {'what':42} {'shmkit':>12} {'CPython':>12} {'ratio':>8} {'target':>7} met")
    for key, what, s, c, ratio, target, met in rows:
        print(f"{key:10} {what:42} {s:12.1f} {c:12.1f} {ratio:8.2f} {target:>7} {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
