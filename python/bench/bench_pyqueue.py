"""The Python object queues and pools of the benchmark suite: shmkit.Queue
and a shmkit context's Pool against multiprocessing's, and against a
mutex+condvar byte ring (bench/python/mutex_condvar_ring.cpp, the design of
today's shared-memory drop-ins for multiprocessing.Queue). gbench.py runs
these rows with the others; run alone it prints one measurement of each:

    PYTHONPATH=build/release/python/site-main:build/release/bench/pyext \\
        python3 python/bench/bench_pyqueue.py [--quick | --smoke] [ROW...]

(--smoke: a few messages each, only to see every row run; ctest's
bench_pyqueue_smoke does that.)

Both sides of every ratio do the same work: the same processes (forked from
this one), the same placement (pinned with sched_setaffinity, as taskset
does: see PLACEMENT), the same objects, each pickled with multiprocessing's
ForkingPickler (multiprocessing.Queue in its feeder thread, shmkit.Queue
inside put, the ring's wrapper here with shmkit.Queue's own encoder). Note
that shmkit.Queue (and so the ring's wrapper) sends a `bytes` object
unpickled, behind one tag byte, where multiprocessing.Queue pickles it: in
the 8-byte row that is part of what is measured. Likewise in the array row
shmkit.Queue pickles with protocol 5 and writes the array's buffer out of
band into shared memory, multiprocessing.Queue with its default protocol
(the array's bytes inside the pickle). How many messages a measurement
moves depends on the side's expected speed (benchmarks()): the figure is
per message.

Rows (names python/<row>/<side>; all figures are ns):
  pyqueue_dict_1p1c    one producer process puts the small dict, one consumer
                       process gets it: ns per message from the common start
                       to the consumer's last get.
  pyqueue_bytes8_1p1c  the same with 8-byte bytes.
  pyqueue_dict_2p2c    two producers, two consumers, the small dict: ns per
                       message from the first consumer's start to the last
                       consumer's last get.
  pyqueue_numpy16m     a 16 MiB float64 numpy array put by one process and
                       got by another, which checks its last element and
                       acknowledges through a pipe (the same pipe for both
                       sides) before the next put: ns per transfer (no
                       ring side: 16 MiB does not fit its 4 MiB ring).
  pypool_map           Pool(2).map(f, range(N), chunksize=1), trivial f: ns
                       per task (N = 100_000 in full runs, fewer in quick).
  pypool_apply         Pool(2).apply(f, (i,)) one after another: ns per round
                       trip. shmkit's apply spins up to apply_spin (100 us)
                       for its result, and the workers spin briefly for
                       their next task (the queue's wait); the
                       shmkit_pool_no_spin side (information) has
                       apply_spin=0.
The pools are made and warmed up outside the timed part.
"""
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.reduction import ForkingPickler

SMALL_DICT = dict(a=42, b=33, c=(1, 2, 3), d=[1, 2, 3], e='123', f=b'kkk')
BYTES8 = b"12345678"

# The CPUs this run may use, read once before any process pins itself (a
# child forked after its parent pinned would read the parent's CPU).
try:
    CPUS = sorted(os.sched_getaffinity(0))
except (AttributeError, OSError):
    CPUS = []

PLACEMENT = ("queues: producer i pinned to CPU list[2i mod n], consumer i to CPU list[2i+1 mod n] "
             "(on 2 CPUs: the producers share the first, the consumers the second; on 4 or more, one CPU each); "
             "pools: the parent and its 2 workers restricted to the first 2 CPUs; "
             f"CPU list {CPUS[:4]}{'...' if len(CPUS) > 4 else ''} ({len(CPUS)} CPUs)")

FORK = mp.get_context("fork")

# A measurement that has not ended after this long is a hang (a bug of a
# side), reported as an error instead of wedging the suite.
WATCHDOG_S = 300


@contextlib.contextmanager
def _watchdog(procs=()):
    """Raises TimeoutError in this process after WATCHDOG_S; on the way
    out, any of `procs` still alive is killed."""
    def expired(*_):
        raise TimeoutError(f"bench_pyqueue: a measurement ran past {WATCHDOG_S}s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


def _pin(i):
    if len(CPUS) >= 2:
        os.sched_setaffinity(0, {CPUS[i % len(CPUS)]})


def runq_ns():
    """ns this thread has spent runnable but not running (the second field
    of /proc/thread-self/schedstat), 0 where unreadable."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class _Span:
    """A thread's timed span: wall ns, and ns it waited for a CPU over it."""

    def __init__(self):
        self.w0 = runq_ns()
        self.t0 = time.perf_counter_ns()

    def end(self):
        t1 = time.perf_counter_ns()
        return self.t0, t1, runq_ns() - self.w0


def _runq_share(spans):
    """The largest share of its span a timed thread spent waiting for a CPU
    (the suite's runq_wait counter: above 5% the row is flagged disturbed).
    Only the processes' main threads are timed, each on a CPU of its own:
    a thread that shares its CPU by design (multiprocessing.Queue's feeder
    thread, a pool's handler threads) would always count as disturbed. The
    kernel books a wait when it ends, so one that began before the span can
    count in it: capped at 1."""
    return min(1.0, max((w / (t1 - t0) for t0, t1, w in spans if t1 > t0), default=0.0))


# --- the sides -------------------------------------------------------------

def _codec():
    """(encode, decode): shmkit.Queue's own message encoding (ForkingPickler,
    protocol 5, a reused pickler per thread, bytes sent unpickled) when the
    package has it, so that the ring's side pickles exactly as shmkit's;
    else one ForkingPickler.dumps per message."""
    try:
        from shmkit.mpqueues import _decode, _encode
        return _encode, _decode
    except ImportError:
        return (lambda obj: (ForkingPickler.dumps(obj),)), ForkingPickler.loads


class RingQueue:
    """The mutex+condvar ring with multiprocessing.Queue's put/get of
    objects, each message encoded as shmkit.Queue encodes it (_codec) and
    gathered into the ring as shmkit.Queue gathers its parts. Its ring has
    the size of shmkit.Queue's default ring (4 MiB)."""

    def __init__(self, capacity=4 << 20):
        from _mutex_condvar_ring import Ring
        self._ring = Ring(capacity)
        self._encode, self._decode = _codec()

    def put(self, obj, block=True, timeout=None):
        self._ring.put_parts(self._encode(obj), block, timeout)

    def get(self, block=True, timeout=None):
        return self._decode(self._ring.get(block, timeout))


def _have_ring():
    try:
        import _mutex_condvar_ring  # noqa: F401
        return True
    except ImportError:
        return False


def _shmkit_queue():
    import shmkit
    return shmkit.Queue


def _shmkit_context():
    import shmkit
    return shmkit.get_context("fork")


def _have(fn):
    try:
        fn()
        return True
    except (ImportError, AttributeError, ValueError):
        return False


def queue_sides():
    """side -> a function making a fresh queue shared with forked children."""
    sides = {"cpython_mp_queue": FORK.Queue}
    if _have(_shmkit_queue):
        sides["shmkit_queue"] = lambda: _shmkit_queue()()
    if _have_ring():
        sides["mutex_condvar_ring"] = RingQueue
    return sides


def pool_sides():
    """side -> a function making a Pool of 2 fork workers."""
    sides = {"cpython_pool": lambda: FORK.Pool(2)}
    if _have(lambda: _shmkit_context().Pool):
        sides["shmkit_pool"] = lambda: _shmkit_context().Pool(2)
    return sides


def _release(q):
    for name in ("close", "join_thread", "unlink"):
        f = getattr(q, name, None)
        if f is not None:
            try:
                f()
            except (OSError, ValueError, AssertionError):
                pass


# --- queue streams -----------------------------------------------------------

def _producer(q, obj, n, start, out, cpu):
    _pin(cpu)
    put = q.put
    start.wait()
    span = _Span()
    for _ in range(n):
        put(obj)
    out.put(("p", span.end()))


def _consumer(q, n, start, out, cpu):
    _pin(cpu)
    get = q.get
    start.wait()
    span = _Span()
    for _ in range(n):
        get()
    out.put(("c", span.end()))


def stream(make, obj, n, pairs=1):
    """ns per message of n messages `obj` put by `pairs` producer processes
    and got by as many consumer processes (CLOCK_MONOTONIC is one clock for
    all: from the earliest consumer start to the latest last get)."""
    q = make()
    start, out = FORK.Event(), FORK.SimpleQueue()
    share = n // pairs
    ps = []
    for i in range(pairs):
        ps.append(FORK.Process(target=_producer, args=(q, obj, share, start, out, 2 * i)))
        ps.append(FORK.Process(target=_consumer, args=(q, share, start, out, 2 * i + 1)))
    with _watchdog(ps):
        for p in ps:
            p.start()
        time.sleep(0.05)
        start.set()
        reports = [out.get() for _ in range(2 * pairs)]
        for p in ps:
            p.join()
    _release(q)
    got = [span for who, span in reports if who == "c"]
    ns = (max(e for _, e, _ in got) - min(s for s, _, _ in got)) / (share * pairs)
    if 2 * pairs > len(CPUS):  # processes share CPUs by design: waits say nothing of outside load
        return ns, {}
    return ns, {"runq_wait": _runq_share([span for _, span in reports])}


# --- a large array, put then got ------------------------------------------------

def _array_sender(q, ack, n, start, out, cpu):
    import numpy as np
    _pin(cpu)
    a = np.arange(16 << 17, dtype=np.float64)  # 16 MiB
    start.wait()
    span = _Span()
    for i in range(n):
        a[-1] = i
        q.put(a)
        if ack.recv_bytes() != b"k":
            break
    out.put(("p", span.end(), None))


def _array_receiver(q, ack, n, start, out, cpu):
    import numpy  # noqa: F401  (imported before the clock starts, as the sender's)
    _pin(cpu)
    start.wait()
    span = _Span()
    for i in range(n):
        a = q.get()
        if a.nbytes != 16 << 20 or a[-1] != i:
            ack.send_bytes(b"x")
            out.put(("c", span.end(), f"array {i} arrived wrong"))
            return
        del a
        ack.send_bytes(b"k")
    out.put(("c", span.end(), None))


def array_transfer(make, n):
    q = make()
    start, out = FORK.Event(), FORK.SimpleQueue()
    ack_r, ack_w = FORK.Pipe(duplex=False)
    ps = [FORK.Process(target=_array_sender, args=(q, ack_r, n, start, out, 0)),
          FORK.Process(target=_array_receiver, args=(q, ack_w, n, start, out, 1))]
    with _watchdog(ps):
        for p in ps:
            p.start()
        time.sleep(0.05)
        start.set()
        reports = [out.get() for _ in ps]
        for p in ps:
            p.join()
    _release(q)
    wrong = [why for _, _, why in reports if why]
    if wrong:
        raise RuntimeError(f"bench_pyqueue: {wrong[0]}")
    t0, t1, _ = next(span for who, span, _ in reports if who == "c")
    return (t1 - t0) / n, {"runq_wait": _runq_share([span for _, span, _ in reports])}


# --- pools --------------------------------------------------------------------

def trivial(x):
    return x


def _with_pool(make, body):
    """body(pool) -> ns, with this process and the pool's workers on the
    first 2 CPUs; returns (ns, {}): no runq_wait, as the parent's handler
    threads and the workers share those CPUs by design."""
    old = os.sched_getaffinity(0) if CPUS else None
    if len(CPUS) >= 2:
        os.sched_setaffinity(0, set(CPUS[:2]))
    try:
        with _watchdog():
            pool = make()
            try:
                pool.map(trivial, range(200), chunksize=1)  # the workers are up and warm
                ns = body(pool)
            except BaseException:
                pool.terminate()
                raise
            pool.close()  # every task is done: the ordinary way out
            pool.join()
            return ns, {}
    finally:
        if old is not None:
            os.sched_setaffinity(0, old)


def pool_map(make, n):
    def body(pool):
        t0 = time.perf_counter_ns()
        r = pool.map(trivial, range(n), chunksize=1)
        ns = (time.perf_counter_ns() - t0) / n
        if len(r) != n or r[-1] != n - 1:
            raise RuntimeError("bench_pyqueue: Pool.map returned a wrong result")
        return ns
    return _with_pool(make, body)


def pool_apply(make, n):
    def body(pool):
        apply = pool.apply
        for i in range(20):
            apply(trivial, (i,))
        t0 = time.perf_counter_ns()
        for i in range(n):
            apply(trivial, (i,))
        return (time.perf_counter_ns() - t0) / n
    return _with_pool(make, body)


# --- the rows -------------------------------------------------------------------

def benchmarks(scale, smoke=False):
    """name -> (callable returning (ns per operation, {"runq_wait": share}
    or {}), "ns", operations). In quick runs (scale < 1) the counts are smaller;
    smoke: a few messages and tasks each, to check that every row runs."""
    out = {}

    # Messages per measurement, by each side's expected cost, so that every
    # measurement lasts about 0.5-1 s in full runs and a fifth of that in
    # quick ones (a side of 0.3 us a message timed over 20,000 messages
    # would be 6 ms of a loaded machine's noise). Per message, both sides of
    # a row do the same work; the totals differ.
    full = {  # side -> (small dict 1P1C, 8-byte bytes 1P1C, small dict 2P2C)
        "shmkit_queue": (400_000, 2_000_000, 400_000),
        "mutex_condvar_ring": (300_000, 800_000, 300_000),
        "cpython_mp_queue": (100_000, 100_000, 100_000),
    }
    part = 1.0 if scale >= 1 else 0.2
    arrays = 2 if smoke else max(4, int(16 * scale))
    for side, make in queue_sides().items():
        d, b, d2 = (500,) * 3 if smoke else (max(2000, int(c * part)) for c in full[side])
        out[f"python/pyqueue_dict_1p1c/{side}"] = (lambda m=make, n=d: stream(m, SMALL_DICT, n)), "ns", d
        out[f"python/pyqueue_bytes8_1p1c/{side}"] = (lambda m=make, n=b: stream(m, BYTES8, n)), "ns", b
        out[f"python/pyqueue_dict_2p2c/{side}"] = (lambda m=make, n=d2: stream(m, SMALL_DICT, n, 2)), "ns", d2
        if side != "mutex_condvar_ring" and _have_numpy():
            out[f"python/pyqueue_numpy16m/{side}"] = (lambda m=make: array_transfer(m, arrays)), "ns", arrays
    tasks = 100_000 if scale >= 1 else max(2000, int(40_000 * scale))
    applies = 10_000 if scale >= 1 else 2000  # stdlib: ~50 us each
    if smoke:
        tasks, applies = 300, 50
    for side, make in pool_sides().items():
        out[f"python/pypool_map/{side}"] = (lambda m=make: pool_map(m, tasks)), "ns", tasks
        out[f"python/pypool_apply/{side}"] = (lambda m=make: pool_apply(m, applies)), "ns", applies
    if "shmkit_pool" in pool_sides():
        # (Information: the round trip with apply's spin turned off.)
        nospin = lambda: _shmkit_context().Pool(2, apply_spin=0)  # noqa: E731
        out["python/pypool_apply/shmkit_pool_no_spin"] = (lambda: pool_apply(nospin, applies)), "ns", applies
    return out


def _have_numpy():
    try:
        import numpy  # noqa: F401
        return True
    except ImportError:
        return False


def main(argv):
    quick = "--quick" in argv
    smoke = "--smoke" in argv
    wanted = [a for a in argv if not a.startswith("--")]
    print(f"# python {sys.version.split()[0]}, {len(CPUS)} CPUs; {PLACEMENT}")
    for name, (fn, _, ops) in benchmarks(0.25 if quick or smoke else 1.0, smoke).items():
        if wanted and not any(w in name for w in wanted):
            continue
        t = time.monotonic()
        ns, counters = fn()
        wait = f", runq_wait {100 * counters['runq_wait']:.0f}%" if "runq_wait" in counters else ""
        print(f"{name:50} {ns / 1000:10.2f} us  ({ops} ops, {time.monotonic() - t:.1f}s{wait})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
