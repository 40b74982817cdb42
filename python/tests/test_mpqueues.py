"""shmkit.Queue, SimpleQueue and JoinableQueue (python/shmkit/mpqueues.py)
and the byte queue under them (shmkit._queues.ByteQueue): objects of every
kind and size, numpy zero copy, many producers and consumers in real
processes (fork and spawn), producers and consumers SIGKILLed and SIGSTOPped
mid-stream, Ctrl-C in every blocking call, the doorbell with selectors,
multiprocessing.connection.wait and asyncio, and byte messages of 0 B to
64 MiB exchanged with a C++ program (python/tests/peers/byte_queue_peer.cpp).

Every test checks that nothing its queues made is left in /dev/shm (the
block, its doorbell FIFO "<name>.bell", out-of-line blocks "<name>.o<n>").
"""
import asyncio
import gc
import glob
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import selectors
import signal
import subprocess
import sys
import time

import pytest
from multiprocessing.reduction import ForkingPickler

import shmkit
from conftest import eventually
from shmkit import _queues, mpqueues
from shmkit.mpqueues import JoinableQueue, Queue, SimpleQueue

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

WATCHDOG = 120  # seconds any child may take
MiB = 1 << 20


# ------------------------------------------------------------ helpers

@pytest.fixture(autouse=True)
def no_leaks(monkeypatch):
    """Records the blocks the test's queues create; after the test (its
    objects collected) none of them, nor their doorbells or out-of-line
    blocks, may be left in /dev/shm."""
    made = []
    real = mpqueues._new_block

    def recording(*a):
        q = real(*a)
        made.append(q.name)
        return q

    monkeypatch.setattr(mpqueues, "_new_block", recording)
    yield made
    gc.collect()
    left = [p for n in made for p in glob.glob("/dev/shm/" + n + "*")]
    for n in made:
        try:
            _queues.unlink_byte_queue(n)
        except OSError:
            pass
    assert not left, "left in /dev/shm: %s" % left


def pattern(n):
    """Byte i is (i + 13 n) mod 256 (the C++ peer's pattern too)."""
    start = (13 * n) & 0xff
    period = bytes(range(256))
    rot = period[start:] + period[:start]
    return (rot * (n // 256 + 1))[:n]


def join_all(procs):
    for p in procs:
        p.join(WATCHDOG)
        if p.is_alive():
            p.kill()
            p.join()
            pytest.fail("a child hung (watchdog)")


SMALL_DICT = dict(a=42, b=33, c=(1, 2, 3), d=[1, 2, 3], e="123", f=b"kkk")


# ------------------------------------------------------------ objects

@pytest.mark.parametrize("obj", [
    None, 0, -1, 2 ** 100, 1.5, "", "héllo", b"", b"x", bytearray(b"abc"), (), (1, "a"),
    [1, [2, [3]]], {"k": {1, 2}}, SMALL_DICT, frozenset([1]), ValueError("boom"),
    pickle.PickleBuffer(bytearray(b"out of band")),
])
def test_objects_round_trip(obj):
    q = Queue()
    q.put(obj)
    got = q.get(timeout=10)
    if isinstance(obj, pickle.PickleBuffer):
        assert bytes(got) == bytes(obj)
    elif isinstance(obj, Exception):
        assert type(got) is type(obj) and got.args == obj.args
    else:
        assert got == obj and type(got) is type(obj)
    q.close()


@pytest.mark.parametrize("n", [0, 1, 15, 16, 63, 64, 1000, 65536, MiB - 1, MiB, MiB + 1, 8 * MiB,
                               64 * MiB])
def test_bytes_of_every_size(n):
    q = Queue()
    data = pattern(n)
    q.put(data)
    got = q.get(timeout=60)
    assert type(got) is bytes and got == data
    q.put(bytearray(data))  # pickled (not the bytes shortcut)
    got = q.get(timeout=60)
    assert type(got) is bytearray and got == data
    q.close()


def _mixed_message(i):
    """Message i: bytes that start like a bytes tag or a pickle, in the ring
    and out of line, and pickled objects that hold such bytes."""
    body = i.to_bytes(4, "little") + pattern(i % 300)
    kind = i % 4
    if kind == 0:
        return b"\x01" + body
    if kind == 1:
        return b"\x80\x05" + body  # bytes, not a pickle
    if kind == 2:
        return b"\x01" + body + bytes(200)  # over the threshold: out of line
    return (i, b"\x01" + body)


def _consume_mixed(q, out):
    got, bad = [], []
    while True:
        m = q.get(timeout=WATCHDOG)
        if m is None:
            break
        try:
            i = m[0] if type(m) is tuple else int.from_bytes(m[2:6] if m[:1] == b"\x80" else m[1:5], "little")
            got.append(i)
            if type(m) is not type(_mixed_message(i)) or m != _mixed_message(i):
                bad.append(i)
        except Exception as e:  # not even its index can be read
            bad.append(repr(e))
    out.put((got, bad))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_bytes_that_look_tagged_between_consumers(method):
    # Two consumers race for every record, so a pop often loses one record
    # and takes the next, of another kind: each message still arrives
    # once, as the type and bytes it was put with.
    ctx = multiprocessing.get_context(method)
    q = Queue(ring_bytes=16 * 1024, out_of_line_threshold=256)
    out = Queue()
    consumers = [ctx.Process(target=_consume_mixed, args=(q, out)) for _ in range(2)]
    for p in consumers:
        p.start()
    n = 4000
    for i in range(n):
        q.put(_mixed_message(i))
    for _ in consumers:
        q.put(None)
    results = [out.get(timeout=WATCHDOG) for _ in consumers]
    join_all(consumers)
    assert [bad for _, bad in results] == [[], []]
    assert sorted(i for got, _ in results for i in got) == list(range(n))
    q.close()
    out.close()


def test_small_ring_and_out_of_line_threshold():
    q = Queue(ring_bytes=1024, out_of_line_threshold=100)
    assert q._q.ring_bytes == 1024 and q._q.out_of_line_threshold == 100
    for n in (0, 99, 100, 101, 5000):
        q.put(pattern(n))
        assert q.get(timeout=10) == pattern(n)
    q.close()


@pytest.mark.skipif(np is None, reason="numpy is not installed")
@pytest.mark.parametrize("shape", [(0,), (10,), (1000, 3), (2 * MiB,)])
def test_numpy_arrays(shape):
    q = Queue()
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    q.put(a)
    b = q.get(timeout=60)
    assert b.dtype == a.dtype and b.shape == a.shape and (a == b).all()
    assert b.flags.writeable  # as multiprocessing gives them
    b[...] = 0
    q.put(np.asfortranarray(a))
    assert (q.get(timeout=60) == a).all()
    q.close()


@pytest.mark.skipif(np is None, reason="numpy is not installed")
def test_numpy_out_of_line_is_zero_copy():
    """A 16 MiB array travels out of line: the array received is a view of
    the mapped message (its base chain reaches the ByteMessage), which
    stays mapped for as long as the array lives."""
    q = Queue()
    a = np.arange(2 * MiB, dtype=np.float64)
    q.put(a)
    b = q.get(timeout=60)
    base = b
    while not isinstance(base, _queues.ByteMessage):
        if isinstance(base, memoryview):
            base = base.obj
        elif getattr(base, "base", None) is not None:
            base = base.base
        else:
            break
    assert isinstance(base, _queues.ByteMessage)
    q.close()
    del q
    gc.collect()
    assert (b == a).all()  # the mapping outlives the queue
    b[:] = 1


def _put_three(q, first_taken, second_taken):
    for i in range(3):
        if i == 2:
            assert first_taken.wait(60)
        q.put(np.full(MiB // 4, i, dtype=np.float64))  # 2 MiB: out of line
    assert second_taken.wait(60)


@pytest.mark.skipif(np is None, reason="numpy is not installed")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_out_of_line_blocks_reused_never_written_over_and_let_go(method):
    """A producer writes its next long message into a block its consumer
    gave back, never into one the consumer still holds; when the producer
    process ends, its blocks go (their holders keep their bytes)."""
    ctx = multiprocessing.get_context(method)
    q = Queue()
    first_taken, second_taken = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_put_three, args=(q, first_taken, second_taken))
    p.start()
    blocks = lambda: sorted(glob.glob("/dev/shm/" + q._q.name + ".o*"))  # noqa: E731
    a0, a1 = q.get(timeout=60), q.get(timeout=60)
    assert (a0 == 0).all() and (a1 == 1).all()
    assert len(blocks()) == 2  # both held: two blocks
    first = blocks()
    del a0  # given back
    gc.collect()
    first_taken.set()
    a2 = q.get(timeout=60)
    assert (a2 == 2).all() and (a1 == 1).all()
    assert blocks() == first, "the given-back block was not reused"
    second_taken.set()
    join_all([p])
    assert p.exitcode == 0
    assert blocks() == [], "the ended producer's blocks were left"
    assert (a2 == 2).all() and (a1 == 1).all()
    q.close()


class _RaisesInReduce:
    def __reduce__(self):
        raise KeyError("from __reduce__")


def test_pickling_errors_are_the_picklers_own():
    """A put that cannot pickle raises what pickling raised (as
    ForkingPickler.dumps would), and the queue's pickler works after it."""
    q = Queue()
    for obj in (lambda: 0, [1, (lambda: 0)], _RaisesInReduce()):
        try:
            ForkingPickler.dumps(obj, 5)
        except BaseException as e:
            expected = type(e)
        else:
            pytest.fail("pickled %r" % (obj,))
        with pytest.raises(expected):
            q.put(obj)
    q.put({"ok": [1, 2]})
    assert q.get(timeout=10) == {"ok": [1, 2]}
    assert q.empty()
    q.close()


def test_pickling_only_while_spawning():
    for q in (Queue(), SimpleQueue(), JoinableQueue()):
        with pytest.raises(RuntimeError):
            pickle.dumps(q)
        q.close()


def test_shmkit_objects_travel_by_name():
    from shmkit import synchronize
    lock = synchronize.Lock()
    q = Queue()
    q.put(lock)
    got = q.get(timeout=10)
    assert got.name == lock.name
    q.close()


# ------------------------------------------------------------ the queue API

def test_full_and_empty_with_timeouts():
    q = Queue(2)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    with pytest.raises(queue.Full):
        q.put(3, timeout=-1)  # as CPython: a negative timeout is 0
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(timeout=-1)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert q.empty() and q.qsize() == 0
    q.close()


def test_unbounded_queue_is_bounded_by_its_ring():
    q = Queue(ring_bytes=1024)
    n = 0
    with pytest.raises(queue.Full):
        while True:
            q.put(b"x" * 40, block=False)
            n += 1
    assert n > 0 and q.qsize() == n and not q.full()
    assert q.get_many(10 ** 6) == [b"x" * 40] * n
    q.close()


def test_put_many_get_many():
    q = Queue()
    q.put_many(range(100))
    assert q.get_many(30) == list(range(30))
    assert q.get_many(1000) == list(range(30, 100))
    assert q.get_many(5, timeout=0.01) == []
    sq = SimpleQueue()
    sq.put_many([1, 2, 3])
    assert sq.get_many(10) == [1, 2, 3]
    q.close()
    sq.close()


def test_close_then_value_error():
    q = Queue()
    with pytest.raises(AssertionError):
        q.join_thread()
    q.put(1)
    q.close()
    q.close()
    q.join_thread()
    q.cancel_join_thread()
    for call in (lambda: q.put(1), lambda: q.get(), lambda: q.get_nowait(), lambda: q.put_nowait(1),
                 q.qsize, q.full):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(OSError, match="is closed"):  # as CPython 3.13: the queue was used, then closed
        q.empty()
    unused = Queue()
    unused.close()  # a no-op until the queue is used, as CPython's
    assert unused.empty()
    with pytest.raises(ValueError):
        unused.put(1)


def test_simple_queue_close():
    sq = SimpleQueue()
    sq.put("a")
    assert not sq.empty() and sq.get() == "a" and sq.empty()
    sq.close()
    sq.close()  # twice is fine, as CPython
    with pytest.raises(OSError):
        sq.get()
    with pytest.raises(OSError):
        sq.put(1)


def test_generic_alias():
    assert Queue[int] is not None and SimpleQueue[int] is not None and JoinableQueue[int] is not None


def test_top_level_names():
    assert shmkit.Queue is Queue and shmkit.SimpleQueue is SimpleQueue
    assert shmkit.JoinableQueue is JoinableQueue


def test_joinable_queue():
    q = JoinableQueue()
    with pytest.raises(ValueError):
        q.task_done()
    for i in range(3):
        q.put(i)
    ctx = multiprocessing.get_context("fork")

    def consume():
        for _ in range(3):
            q.get(timeout=WATCHDOG)
            q.task_done()

    p = ctx.Process(target=consume)
    p.start()
    q.join()
    join_all([p])
    assert p.exitcode == 0 and q.empty()
    with pytest.raises(ValueError):
        q.task_done()
    q.close()


# ------------------------------------------------------------ processes

def _produce(q, first, n):
    for i in range(first, first + n):
        q.put({"i": i, "pad": "x" * (i % 300)} if i % 7 else (i, pattern(i % 5000)))


def _consume(q, out):
    got = []
    while True:
        m = q.get(timeout=WATCHDOG)
        if m is None:
            break
        if isinstance(m, dict):
            assert m["pad"] == "x" * (m["i"] % 300)
            got.append(m["i"])
        else:
            assert m[1] == pattern(m[0] % 5000)
            got.append(m[0])
    out.put(got)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_many_producers_many_consumers(method):
    ctx = multiprocessing.get_context(method)
    q = Queue(ring_bytes=64 * 1024)
    out = SimpleQueue()
    per = 600
    producers = [ctx.Process(target=_produce, args=(q, k * per, per)) for k in range(3)]
    consumers = [ctx.Process(target=_consume, args=(q, out)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    join_all(producers)
    for _ in consumers:
        q.put(None)
    results = [out.get() for _ in consumers]
    join_all(consumers)
    assert all(p.exitcode == 0 for p in producers + consumers)
    assert sorted(x for r in results for x in r) == list(range(3 * per))
    q.close()
    out.close()


def test_child_exits_right_after_put():
    """No feeder thread: a child that puts and exits at once loses nothing."""
    ctx = multiprocessing.get_context("fork")
    q = Queue()
    p = ctx.Process(target=lambda: (q.put(list(range(1000))), os._exit(0)))
    p.start()
    join_all([p])
    assert q.get(timeout=10) == list(range(1000))
    q.close()


# ------------------------------------------------------------ kills and stops

def _stream(q, first, n, size):
    for i in range(first, first + n):
        q.put((i, pattern(size + i % 13)))


def _check_stream(items):
    for i, data in items:
        assert data == pattern(len(data)), "a corrupt message"


@pytest.mark.parametrize("size", [100, 200 * 1024, 2 * MiB])
def test_producer_killed_mid_put(size):
    """A producer SIGKILLed while it streams (in the ring, a long in-ring
    message, out of line): the survivors go on, at most its message in
    flight is lost, nothing is corrupted, and unlink() removes what it left."""
    ctx = multiprocessing.get_context("fork")
    q = Queue(ring_bytes=1 << 16 if size < 1024 else 1 << 23)
    victim = ctx.Process(target=_stream, args=(q, 0, 10 ** 6, size))
    victim.start()
    seen = [q.get(timeout=WATCHDOG) for _ in range(3)]  # it is streaming
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    _check_stream(seen)
    survivor = ctx.Process(target=_stream, args=(q, 10 ** 7, 50, size))
    survivor.start()
    drained = []
    while True:
        try:
            drained.append(q.get(timeout=5))
        except queue.Empty:
            break
    join_all([survivor])
    _check_stream(drained)
    survivors = [i for i, _ in drained if i >= 10 ** 7]
    assert survivors == list(range(10 ** 7, 10 ** 7 + 50))
    victims = [i for i, _ in seen + drained if i < 10 ** 7]
    assert victims == sorted(victims)
    if victims:  # every message it published arrived, in order
        assert victims == list(range(victims[0], victims[-1] + 1))
    assert q._q.losses["corrupt_records"] == 0
    q.close()


def _drain_to(q, out):
    while True:
        m = q.get(timeout=WATCHDOG)
        if m is None:
            return
        out.put(m[0])


@pytest.mark.parametrize("size", [100, 2 * MiB])
def test_consumer_killed_mid_get(size):
    ctx = multiprocessing.get_context("fork")
    q = Queue(ring_bytes=1 << 16 if size < 1024 else 1 << 23)
    n = 400 if size < 1024 else 30
    producer = ctx.Process(target=_stream, args=(q, 0, n, size))
    producer.start()
    reports = SimpleQueue()
    victim = ctx.Process(target=_drain_to, args=(q, reports))
    victim.start()
    first = reports.get()  # it is consuming
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    survivor = ctx.Process(target=_drain_to, args=(q, reports))
    survivor.start()
    join_all([producer])
    q.put(None)
    join_all([survivor])
    got = [first]
    while not reports.empty():
        got.append(reports.get())
    assert len(got) == len(set(got))  # nothing twice
    assert len(got) >= n - 2  # at most the message in the victim's hands (and one reported)
    assert survivor.exitcode == 0
    q.close()
    reports.close()


def test_producer_stopped_mid_stream_then_resumed():
    """A SIGSTOPped producer delays only its own message: another producer
    and the consumer go on; when it resumes, its messages arrive."""
    ctx = multiprocessing.get_context("fork")
    q = Queue(ring_bytes=1 << 20)
    victim = ctx.Process(target=_stream, args=(q, 0, 2000, 3000))
    victim.start()
    q.get(timeout=WATCHDOG)
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        other = ctx.Process(target=_stream, args=(q, 10 ** 7, 100, 100))
        other.start()
        got = []
        while len([i for i in got if i >= 10 ** 7]) < 100:
            i, data = q.get(timeout=WATCHDOG)
            assert data == pattern(len(data))
            got.append(i)
        join_all([other])
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    while True:
        i, data = q.get(timeout=WATCHDOG)
        got.append(i)
        if i == 1999:
            break
    join_all([victim])
    assert sorted(i for i in got if i < 10 ** 7) == list(range(1, 2000))
    q.close()


def test_consumer_stopped_mid_get():
    ctx = multiprocessing.get_context("fork")
    q = Queue(ring_bytes=1 << 16)
    reports = SimpleQueue()
    victim = ctx.Process(target=_drain_to, args=(q, reports))
    victim.start()
    _stream(q, 0, 5, 10)
    reports.get()
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        _stream(q, 100, 50, 10)
        got = []
        while True:  # this process consumes around the stopped one
            try:
                got.append(q.get(timeout=0.5)[0])
            except queue.Empty:
                break
        assert len(got) >= 48
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    q.put(None)
    join_all([victim])
    q.close()
    reports.close()


# ------------------------------------------------------------ Ctrl-C

_CTRL_C = {
    "Queue.get": "q = Queue(); ready(); q.get()",
    "Queue.get(timeout)": "q = Queue(); ready(); q.get(timeout=600)",
    "Queue.put (full maxsize)": "q = Queue(1); q.put(1); ready(); q.put(2)",
    "Queue.put (full ring)": "q = Queue(ring_bytes=1024)\n"
                             "while True:\n"
                             "    try: q.put(b'x' * 100, block=False)\n"
                             "    except Full: break\n"
                             "ready(); q.put(b'x' * 100)",
    "SimpleQueue.get": "q = SimpleQueue(); ready(); q.get()",
    "SimpleQueue._reader.recv": "q = SimpleQueue(); ready(); q._reader.recv()",
    "SimpleQueue._reader.poll": "q = SimpleQueue(); ready(); q._reader.poll(None)",
    "JoinableQueue.join": "q = JoinableQueue(); q.put(1); ready(); q.join()",
}


@pytest.mark.parametrize("call", sorted(_CTRL_C))
def test_ctrl_c_interrupts_every_blocking_call(call):
    script = ("import os, sys\n"
              "from queue import Full\n"
              "from shmkit.mpqueues import Queue, SimpleQueue, JoinableQueue\n"
              "def ready():\n"
              "    print('ready', flush=True)\n"
              "try:\n"
              + "".join("    " + line + "\n" for line in _CTRL_C[call].splitlines()) +
              "except KeyboardInterrupt:\n"
              "    print('interrupted', flush=True)\n"
              "    sys.exit(0)\n"
              "sys.exit(3)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # let it block (a SIGINT before the call interrupts it too)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=WATCHDOG)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "interrupted" in out


# ------------------------------------------------------------ the doorbell

def test_connection_wait_and_poll_on_reader():
    sq = SimpleQueue()
    r = sq._reader
    assert not r.poll() and not r.poll(0.01)
    assert multiprocessing.connection.wait([r], timeout=0.01) == []
    sq.put("hello")
    assert r.poll() and r.poll(0.01)
    assert multiprocessing.connection.wait([r], timeout=10) == [r]
    assert r.recv() == "hello"
    # Taken here: the doorbell settles, so wait() no longer wakes for it.
    assert multiprocessing.connection.wait([r], timeout=0.01) == []
    assert not r.poll()
    sq.close()


def _put_later(q, obj, delay):
    time.sleep(delay)
    q.put(obj)


def test_selectors_on_fileno_with_another_process():
    ctx = multiprocessing.get_context("fork")
    q = Queue()
    sel = selectors.DefaultSelector()
    sel.register(q._reader.fileno(), selectors.EVENT_READ)
    p = ctx.Process(target=_put_later, args=(q, {"x": 1}, 0.1))
    p.start()
    got = None
    while got is None:
        if sel.select(timeout=WATCHDOG):
            try:
                got = q.get_nowait()
            except queue.Empty:  # a spurious ring: wait again
                pass
    join_all([p])
    assert got == {"x": 1}
    sel.close()
    q.close()


async def _aget(q):
    """An asyncio `await` on a shmkit queue: wait for the doorbell, then take."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return q.get_nowait()
        except queue.Empty:
            pass
        ready = loop.create_future()
        fd = q.fileno()
        loop.add_reader(fd, ready.set_result, None)
        try:
            if q.empty():
                await ready
        finally:
            loop.remove_reader(fd)


def test_asyncio_await_a_queue():
    ctx = multiprocessing.get_context("fork")
    q = Queue()
    p = ctx.Process(target=lambda: [_put_later(q, i, 0.01) for i in range(5)])
    p.start()

    async def main():
        return [await asyncio.wait_for(_aget(q), WATCHDOG) for _ in range(5)]

    assert asyncio.run(main()) == list(range(5))
    join_all([p])
    q.close()


# ------------------------------------------------------------ the byte queue

def test_byte_queue_api(names):
    n = names("bq")
    bq = _queues.ByteQueue.create(n, 4096, 1000)
    try:
        assert bq.name == n and bq.ring_bytes == 4096 and bq.out_of_line_threshold == 1000
        assert bq.max_inline <= 4096 // 2
        bq.put_parts([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        assert bq.size() == 1 and not bq.empty()
        assert bq.get() == b"abcdef"
        bq.put_parts([pattern(5000)])
        m = bq.get()
        assert isinstance(m, _queues.ByteMessage) and m.readonly and bytes(m) == pattern(5000)
        mv = memoryview(m)
        with pytest.raises(BufferError):
            m.release()
        mv.release()
        m.release()
        bq.put_parts([pattern(10)])
        got = bq.get_buffer()
        assert type(got) is bytearray and got == pattern(10)
        with pytest.raises(queue.Empty):
            bq.get(timeout=0.01)
        with pytest.raises(ValueError):
            bq.get(timeout=-1)
        assert bq.unblock() == "none"
        assert bq.losses == {"producer_claims_skipped": 0, "consumer_claims_released": 0,
                             "corrupt_records": 0}
        assert bq.fileno() >= 0
        bq.settle()
        other = _queues.ByteQueue.attach(n)
        other.put_parts([b"x"])
        assert bq.get() == b"x"
        other.close()
    finally:
        bq.close()
        bq.unlink()
    with pytest.raises(ValueError):
        bq.get()
    assert not glob.glob("/dev/shm/" + n + "*")


def test_byte_queue_spin_for_message_never_sleeps_and_takes_nothing(names):
    n = names("bq")
    bq = _queues.ByteQueue.create(n, 4096)
    try:
        with pytest.raises(ValueError, match="timeout"):
            bq.spin_for_message(None)
        t0 = time.monotonic()
        assert bq.spin_for_message(0.02) is False
        assert time.monotonic() - t0 >= 0.02
        assert bq.spin_for_message(-1) is False  # (a past deadline: one look)
        # `since`, when the caller's spin began (time.monotonic()), moves
        # only the start of the yielding looks: any reading, past or future,
        # leaves the timeout as it is.
        for since in (time.monotonic(), 0.0, time.monotonic() + 3600, None):
            t0 = time.monotonic()
            assert bq.spin_for_message(0.01, since) is False
            assert bq.spin_for_message(timeout=0.01, since=since) is False
            assert 0.02 <= time.monotonic() - t0 < WATCHDOG
        for bad, error in ((float("nan"), ValueError), (float("inf"), ValueError), ("0", TypeError)):
            with pytest.raises(error):
                bq.spin_for_message(0.01, bad)
        with pytest.raises(TypeError):
            bq.spin_for_message(0.01, 0.0, 1)
        with pytest.raises(TypeError):
            bq.spin_for_message(0.01, start=0.0)
        with pytest.raises(TypeError):
            bq.spin_for_message(0.01, timeout=0.01)
        # A message another process pushes while we spin (nobody wakes
        # the spin: its own looks find it).
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.read(r, 1)
                time.sleep(0.05)
                peer = _queues.ByteQueue.attach(n)
                peer.put_parts([b"hi"])
                peer.close()
            finally:
                os._exit(0)
        os.write(w, b"x")
        assert bq.spin_for_message(WATCHDOG, time.monotonic() - 1) is True
        assert bq._waiting == 0 and bq.size() == 1  # it took nothing
        assert bq.get() == b"hi"
        assert os.waitpid(pid, 0)[1] == 0
        os.close(r)
        os.close(w)
    finally:
        bq.close()
        bq.unlink()


@pytest.fixture
def bq_peer():
    d = os.environ.get("SHMKIT_PY_PEERS")
    path = os.path.join(d, "byte_queue_peer") if d else None
    if not path or not os.access(path, os.X_OK):
        pytest.skip("the C++ peer is not built ($SHMKIT_PY_PEERS unset: run through ctest)")
    return path


SIZES = [0, 1, 15, 16, 17, 100, 4096, 65536, MiB - 1, MiB, MiB + 1, 8 * MiB, 64 * MiB]


def test_cross_language_echo(bq_peer, names):
    """Python sends byte messages of 0 B to 64 MiB to a C++ program, which
    checks each and sends it back."""
    a, b = names("in"), names("out")
    qa = _queues.ByteQueue.create(a, 1 << 20, 256 * 1024)
    qb = _queues.ByteQueue.create(b, 1 << 20, 256 * 1024)
    try:
        p = subprocess.Popen([bq_peer, "echo", a, b, str(len(SIZES))], stderr=subprocess.PIPE, text=True)
        for n in SIZES:
            data = pattern(n)
            qa.put_parts([data[: n // 2], data[n // 2:]], timeout=WATCHDOG)
            got = qb.get(timeout=WATCHDOG)
            assert len(got) == n and bytes(got) == data
        _, err = p.communicate(timeout=WATCHDOG)
        assert p.returncode == 0, err
    finally:
        for q in (qa, qb):
            q.close()
            q.unlink()


def test_cross_language_cpp_creates(bq_peer, names):
    n = names("cpp")
    sizes = [0, 1, 63, 64, 1000, 300 * 1024, 3 * MiB]
    r = subprocess.run([bq_peer, "send-new", n, str(1 << 21), str(256 * 1024)] + [str(s) for s in sizes],
                       capture_output=True, text=True, timeout=WATCHDOG)
    assert r.returncode == 0, r.stderr
    q = _queues.ByteQueue.attach(n)
    try:
        for s in sizes:
            got = q.get(timeout=10)
            assert bytes(got) == pattern(s)
    finally:
        q.close()
        _queues.unlink_byte_queue(n)


# ------------------------------------------------------------ Python code inside a call

class _PutsWhilePickled:
    """Puts to `other` from inside its own pickling (a reducer's Python
    code, run by the pickler of the put that carries it)."""

    def __init__(self, other):
        self.other = other

    def __reduce__(self):
        self.other.put({"inner": list(range(50))})
        return (str, ("x" * 100,))


@pytest.mark.parametrize("big", [False, True], ids=["small", "framed"])
def test_put_from_inside_a_puts_pickling(big):
    # The put made inside (same thread) gets a pickler of its own: sharing
    # the outer one's wrote through its released buffer (a segfault).
    q = SimpleQueue(ring_bytes=1 << 17)
    other = SimpleQueue(ring_bytes=1 << 17)
    pad = "a" * (70000 if big else 10)
    try:
        q.put([1, pad, _PutsWhilePickled(other), pad, 2])
        assert other.get() == {"inner": list(range(50))}
        assert q.get() == [1, pad, "x" * 100, pad, 2]
        q.put({"after": 1})  # the thread's own pickler is still sound
        assert q.get() == {"after": 1}
    finally:
        q.close()
        other.close()


def test_put_from_a_signal_handler_during_puts():
    q = Queue(ring_bytes=1 << 20)
    side = Queue(ring_bytes=1 << 20)
    handled = []

    def handler(signum, frame):
        side.put({"from": "handler", "n": len(handled)})
        handled.append(1)

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        deadline = time.monotonic() + 2.0
        big = {"k": list(range(200)), "s": "x" * 3000}
        n = 0
        while time.monotonic() < deadline or not handled:
            q.put(big)
            assert q.get() == big
            n += 1
            while True:
                try:
                    assert side.get_nowait()["from"] == "handler"
                except queue.Empty:
                    break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
        q.close()
        side.close()
    assert n > 0 and handled


def test_a_put_interrupted_in_finish_never_sends_its_leftovers(monkeypatch):
    # A failure inside the encoder's finish() (Ctrl-C landing there) left
    # the thread's chunks behind, and the next put sent them.
    q = Queue(ring_bytes=1 << 16)
    real = mpqueues._Encoder.finish
    calls = []

    def interrupted(self):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt("inside finish()")
        return real(self)

    monkeypatch.setattr(mpqueues._Encoder, "finish", interrupted)
    seen = []

    def puts():  # a new thread: a new encoder, made with the patched finish()
        try:
            q.put(pickle.PickleBuffer(bytearray(b"OLD" * 10)))
        except KeyboardInterrupt:
            seen.append("interrupted")
        q.put({"new": 1})

    import threading
    try:
        t = threading.Thread(target=puts)
        t.start()
        t.join()
        assert seen == ["interrupted"]
        assert q.get() == {"new": 1}
        with pytest.raises(queue.Empty):
            q.get(timeout=0.05)
    finally:
        q.close()


def _fail_to_rebuild():
    raise RuntimeError("cannot rebuild")


class _Unrebuildable:
    def __reduce__(self):
        return (_fail_to_rebuild, ())


def test_bounded_queue_keeps_its_room_when_unpickling_fails():
    # CPython's Queue.get releases its semaphore before unpickling.
    q = Queue(1)
    try:
        q.put(_Unrebuildable())
        with pytest.raises(RuntimeError, match="cannot rebuild"):
            q.get(timeout=5)
        q.put(1, timeout=0.5)
        assert q.qsize() == 1 and q.get(timeout=5) == 1
    finally:
        q.close()
        q.join_thread()


@pytest.mark.parametrize("which", ["encode", "decode", "loads", "taken"])
def test_codec_callable_that_replaces_the_codec_while_it_runs(names, which):
    # The handle's reference to a codec callable was the only one: a
    # callable that set another codec freed itself mid-call.
    n = names("bq")
    bq = _queues.ByteQueue.create(n, 4096)
    state = {}

    def swap():
        bq.set_codec(mpqueues._encode, mpqueues._decode, mpqueues._loads)
        bq.set_taken(None)

    class Once:
        def __init__(self, real):
            self.real = real
            self.junk = [object() for _ in range(100)]

        def __call__(self, *a):
            swap()
            self.junk.clear()  # touches self after its last outside reference went
            state[which] = True
            return self.real(*a)

    enc, dec, lds = mpqueues._encode, mpqueues._decode, mpqueues._loads
    try:
        if which == "encode":
            bq.set_codec(Once(enc), dec, lds)
        elif which == "decode":
            bq.set_codec(enc, Once(dec), lds)
        elif which == "loads":
            bq.set_codec(enc, dec, Once(lds))
        else:
            bq.set_codec(enc, dec, lds)
            bq.set_taken(Once(lambda: None))
        obj = {"a": 1} if which != "decode" else pickle.PickleBuffer(bytearray(b"zz"))
        bq.put_obj(obj)
        got = bq.get_obj(timeout=5)
        assert state[which]
        assert got == ({"a": 1} if which != "decode" else bytearray(b"zz"))
    finally:
        bq.close()
        bq.unlink()


def test_a_codec_that_refers_back_to_its_queue_is_collected(names):
    import weakref
    n = names("bq")
    bq = _queues.ByteQueue.create(n, 4096)
    bq.unlink()

    class Holder:
        def __init__(self, q):
            self.q = q

        def encode(self, obj):
            return mpqueues._encode(obj)

    h = Holder(bq)
    bq.set_codec(h.encode, mpqueues._decode, mpqueues._loads)
    ref = weakref.ref(bq)
    del h, bq
    gc.collect()
    assert ref() is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_forked_child_closes_a_handle_the_parent_waits_on(names):
    # The child has only the forking thread; a wait counted in the parent
    # must not make close() refuse there for ever.
    import threading
    n = names("bq")
    bq = _queues.ByteQueue.create(n, 4096)
    waiter = threading.Thread(target=lambda: bq.wait_message(2.0))
    waiter.start()
    try:
        assert eventually(lambda: bq._waiting == 1)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                code = 0 if bq._waiting == 0 and (bq.close() is None) and bq.closed else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(RuntimeError):
            bq.close()  # the parent's waiter is still there
    finally:
        waiter.join()
        bq.close()
        bq.unlink()


# ------------------------------------------------------------ Pool, executor

def _square(x):
    return x * x


def _die(x):
    os._exit(1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_and_process_pool_executor_run_on_simple_queue(method):
    """multiprocessing.pool.Pool and ProcessPoolExecutor reach into
    SimpleQueue's _reader/_writer/_rlock: with a context whose SimpleQueue
    is shmkit's, they run (and a dead executor worker is still detected:
    the doorbell's readiness is accurate)."""
    import concurrent.futures as cf
    base = multiprocessing.get_context(method)

    class Ctx(type(base)):
        def SimpleQueue(self):
            return SimpleQueue()

    ctx = Ctx()
    with ctx.Pool(2) as pool:
        assert type(pool._inqueue) is SimpleQueue and type(pool._outqueue) is SimpleQueue
        assert pool.map(_square, range(300), chunksize=1) == [x * x for x in range(300)]
        assert pool.apply(_square, (7,)) == 49
    with ctx.Pool(2, maxtasksperchild=3) as pool:
        assert sum(pool.map(_square, range(30), chunksize=1)) == sum(x * x for x in range(30))
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert type(ex._result_queue) is SimpleQueue
        assert list(ex.map(_square, range(100))) == [x * x for x in range(100)]
    with pytest.raises(cf.process.BrokenProcessPool):
        with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            ex.submit(_die, 1).result(timeout=WATCHDOG)
