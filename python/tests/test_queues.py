"""shmkit.queues: SpscQueue and MpmcQueue behaviour, processes, pickling,
leaks, bad input."""
import faulthandler
import gc
import multiprocessing
import os
import pickle
import queue
import struct

import pytest

from shmkit.queues import BroadcastRing, Empty, Full, Lapped, MpmcQueue, SeqLock, SpscQueue
from conftest import block_exists

KINDS = [SpscQueue, MpmcQueue]


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("Q", KINDS)
@pytest.mark.parametrize("item,values", [
    ("q", [0, -1, 2**63 - 1, -2**63]), ("Q", [0, 2**64 - 1]), ("i", [-2**31, 2**31 - 1]),
    ("B", [0, 255]), ("d", [0.5, -1e300]), ("f", [0.5]), ("?", [True, False]), ("c", [b"x"]),
])
def test_typecodes_round_trip(Q, item, values, names):
    q = Q(names("q"), 8, item)
    for v in values:
        q.put(v)
    assert [q.get() for _ in values] == values
    q.unlink()


@pytest.mark.parametrize("Q", KINDS)
def test_full_empty_timeouts_and_batches(Q, names):
    q = Q(names("q"), 4, "q")
    with pytest.raises(Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put_many([1, 2, 3, 4])
    assert q.full() and q.qsize() == 4
    with pytest.raises(Full):
        q.put(5, timeout=0.01)
    with pytest.raises(Full) as e:
        q.put_many([5, 6], timeout=0.01)
    assert e.value.count == 0
    assert q.get_many(10) == [1, 2, 3, 4]
    assert q.get_many(10, timeout=0.01) == []
    q.put_many([7, 8, 9])
    assert q.get_many(2) == [7, 8] and q.get() == 9
    q.unlink()


@pytest.mark.parametrize("Q", KINDS)
def test_struct_bytes_and_numpy_items(Q, names):
    q = Q(names("s"), 8, "qd", type_name="Pair/v1")
    q.put((1, 2.5))
    q.put(struct.pack("qd", 3, 4.5))
    assert q.get_many(5) == [(1, 2.5), (3, 4.5)]
    b = Q(names("b"), 8, bytes, maxbytes=10)
    b.put(b"")
    b.put(b"0123456789")
    b.put(bytearray(b"\x00\x00"))
    assert [b.get(), b.get(), b.get()] == [b"", b"0123456789", b"\x00\x00"]
    with pytest.raises(ValueError):
        b.put(b"x" * 11)
    np = pytest.importorskip("numpy")
    dt = np.dtype([("a", "<i8"), ("b", "<f8")], align=True)
    n = Q(names("n"), 16, dt, type_name="Pair/v1")
    arr = np.zeros(5, dtype=dt)
    arr["a"] = np.arange(5)
    n.put_many(arr)
    out = n.get_many(3)
    assert isinstance(out, np.ndarray) and list(out["a"]) == [0, 1, 2]
    assert n.get()["a"] == 3
    for x in (q, b, n):
        x.unlink()


def _consume(q, n, out):
    total = 0
    for _ in range(n):
        total += q.get(timeout=30)
    out.put(total)


@pytest.mark.parametrize("Q", KINDS)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_between_processes_and_pickled(Q, method, names):
    q = Q(names("p"), 64, "q")
    ctx = multiprocessing.get_context(method)
    out = ctx.SimpleQueue()
    p = ctx.Process(target=_consume, args=(q, 10000, out))
    p.start()
    for i in range(10000):
        q.put(i, timeout=30)
    assert out.get() == sum(range(10000))
    p.join(30)
    assert p.exitcode == 0
    q.unlink()


def test_mpmc_many_producers_and_consumers(names):
    q = MpmcQueue(names("m"), 128, "q")
    ctx = multiprocessing.get_context("fork")
    out = ctx.SimpleQueue()
    cons = [ctx.Process(target=_consume, args=(q, 5000, out)) for _ in range(2)]
    prods = [ctx.Process(target=_produce, args=(q, k, 5000)) for k in range(2)]
    for p in cons + prods:
        p.start()
    totals = [out.get(), out.get()]
    for p in cons + prods:
        p.join(30)
        assert p.exitcode == 0
    assert sum(totals) == 2 * sum(range(5000))
    q.unlink()


def _produce(q, k, n):
    for i in range(n):
        q.put(i, timeout=30)


def test_creator_unlinks_on_collection_and_pickle_attaches():
    q = SpscQueue(capacity=8, item="d")
    name = q.name
    q2 = pickle.loads(pickle.dumps(q))
    q.put(1.5)
    assert q2.get() == 1.5 and q2.name == name
    del q, q2
    gc.collect()
    assert not block_exists(name)


def test_bad_input(names):
    with pytest.raises(ValueError):
        SpscQueue(capacity=3, item="q")  # not a power of two
    with pytest.raises(ValueError):
        MpmcQueue(capacity=1, item="q")
    with pytest.raises(ValueError):
        SpscQueue(capacity=8, item="qi", type_name="X")  # 12 bytes, 8-aligned
    with pytest.raises(ValueError):
        SpscQueue(capacity=8, item="4000s", type_name="X")  # unsupported size
    with pytest.raises(ValueError):
        SpscQueue(capacity=8, item="qq")  # struct without a type name
    with pytest.raises(struct.error):
        SpscQueue(capacity=8, item="zz", type_name="X")
    with pytest.raises(TypeError):
        SpscQueue(123, item="q")
    with pytest.raises(FileNotFoundError):
        SpscQueue("shmkit_no_such_queue_%d" % os.getpid(), item="q")
    q = SpscQueue(names("q"), 8, "d")
    with pytest.raises(ValueError):
        SpscQueue(q.name, item="q")  # another type
    with pytest.raises(ValueError):
        MpmcQueue(q.name, item="d")  # another kind
    with pytest.raises(TypeError):
        q.put("not a number")
    with pytest.raises(ValueError):
        q.put(1.0, timeout=-1) if q.full() else q.get(timeout=-1)
    i = SpscQueue(names("i"), 8, "b")
    with pytest.raises(OverflowError):
        i.put(128)
    with pytest.raises(ValueError):
        i.get_many(-1)
    s = SpscQueue(names("t"), 8, "qd", type_name="Pair/v1")
    with pytest.raises(struct.error):
        s.put((1,))
    with pytest.raises(ValueError):
        s.put(b"short")
    q.unlink()
    q.close()
    with pytest.raises(ValueError):
        q.put(1.0)
    for x in (i, s):
        x.unlink()


def test_a_garbage_block_is_refused(names):
    for content in (os.urandom(4096), b"SHMKIT\x00\x01" + b"\x00" * 4088):
        name = names("g")
        with open("/dev/shm/" + name, "wb") as f:
            f.write(content)
        try:
            for attach in (lambda: SpscQueue(name, item="q"), lambda: MpmcQueue(name, item="q"),
                           lambda: SeqLock(name, "q"), lambda: BroadcastRing(name, item="q")):
                with pytest.raises(ValueError):
                    attach()
        finally:
            os.unlink("/dev/shm/" + name)


def _store_many(name, n):
    s = SeqLock(name, "qq", type_name="Twin/v1")
    for i in range(n):
        s.store((i, i))


def test_seqlock_readers_never_see_a_torn_value(names):
    s = SeqLock(names("s"), "qq", create=True, type_name="Twin/v1", initial=(0, 0))
    assert s.read() == (0, 0) and s.try_read() == (0, 0)
    p = multiprocessing.get_context("fork").Process(target=_store_many, args=(s.name, 200000))
    p.start()
    while p.is_alive():
        a, b = s.read(timeout=10)
        assert a == b
    p.join(30)
    assert s.read() == (199999, 199999) and s.version == 2 * 200000
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.read() == (199999, 199999)
    s.unlink()


def test_broadcast_ring_readers_and_laps(names):
    r = BroadcastRing(names("r"), 4, "d")
    a, b = r.reader(), r.reader()
    for i in range(3):
        r.push(float(i))
    assert [a.read(), a.read(), a.read()] == [0.0, 1.0, 2.0]
    with pytest.raises(Empty):
        a.read(timeout=0.01)
    for i in range(3, 10):
        r.push(float(i))
    with pytest.raises(Lapped) as e:
        b.read()
    assert e.value.lost == 6  # b wanted item 0; items 6..9 remain
    assert [b.read() for _ in range(4)] == [6.0, 7.0, 8.0, 9.0]
    assert r.reader("oldest").cursor == 6 and r.write_index == 10
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.reader(9).read() == 9.0
    r.unlink()


def test_seqlock_and_ring_bad_input(names):
    with pytest.raises(ValueError):
        BroadcastRing(capacity=3, item="q")
    with pytest.raises(ValueError):
        SeqLock(item="5000s", type_name="Big")
    s = SeqLock(names("s"), "d", create=True)
    with pytest.raises(ValueError):
        SeqLock(s.name, "q")
    with pytest.raises(ValueError):
        BroadcastRing(s.name, item="d")
    with pytest.raises(TypeError):
        s.store("x")
    s.unlink()


def test_zero_copy_views_count_their_exports(names):
    np = pytest.importorskip("numpy")
    q = SpscQueue(names("z"), 8, "d")
    q.put_many([float(i) for i in range(6)])
    with q.get_view(4) as v:
        assert len(v) == 4
        a = np.frombuffer(v, dtype=np.float64)
        assert list(a) == [0.0, 1.0, 2.0, 3.0] and not a.flags.writeable
        with pytest.raises(RuntimeError):
            q.get()  # the view's items are not popped yet
        with pytest.raises(BufferError):
            v.release()  # `a` still exports it
        q.put_many([6.0, 7.0])  # room: the other 2 slots
        with pytest.raises(Full):
            q.put(8.0, timeout=0.01)  # the view's slots are not back yet
        del a
    assert q.qsize() == 4
    q.put_many([8.0, 9.0, 10.0, 11.0], timeout=10)  # given back on release
    v = q.get_view(100)
    assert len(v) == 4 and list(np.frombuffer(v)) == [4.0, 5.0, 6.0, 7.0]  # stops at the ring's end
    del v  # dropped: consumed
    assert q.get_many(10) == [8.0, 9.0, 10.0, 11.0]
    with q.get_view(3) as empty:
        assert len(empty) == 0 and bytes(empty) == b""
    with pytest.raises(ValueError):
        memoryview(empty)  # released
    m = MpmcQueue(names("zm"), 8, "q")
    with pytest.raises(TypeError):
        m.get_view(1)
    q.unlink()
    m.unlink()


def test_close_while_another_thread_waits_is_refused(names):
    import threading
    from conftest import eventually
    q = SpscQueue(names("w"), 2, "q")
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
    t.start()
    assert eventually(lambda: q._waiting == 1)
    with pytest.raises(RuntimeError):
        q.close()  # would free the queue under the waiting thread
    q.put(5)
    t.join(30)
    assert got == [5] and q._waiting == 0
    q.unlink()
    q.close()
