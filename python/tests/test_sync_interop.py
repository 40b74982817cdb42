"""Cross-language: a C++ process (python/tests/peers/sync_peer.cpp) and this
Python process share locks, semaphores, events, robust locks, queues and
atomics by name, each side creating and the other attaching."""
import faulthandler
import os
import subprocess

import pytest

from shmkit import _sync
from shmkit import synchronize as S
from shmkit.queues import BroadcastRing, MpmcQueue, SeqLock, SpscQueue
from conftest import block_exists


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def peer():
    d = os.environ.get("SHMKIT_PY_PEERS")
    path = os.path.join(d, "sync_peer") if d else None
    if not path or not os.access(path, os.X_OK):
        pytest.skip("the C++ peer sync_peer is not built ($SHMKIT_PY_PEERS unset: run through ctest)")
    return path


def run(peer, *args):
    r = subprocess.run([peer, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


class Held:
    """A peer command that holds something until told to go on."""

    def __init__(self, peer, *args):
        self.p = subprocess.Popen([peer, *map(str, args)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.first = self.p.stdout.readline().strip()

    def finish(self):
        out, _ = self.p.communicate("go\n", timeout=60)
        assert self.p.returncode == 0
        return out.split()


KINDS = [("mutex", S.Lock), ("rmutex", S.RLock), ("robust", S.RobustLock),
         ("semaphore", S.Semaphore)]


@pytest.mark.parametrize("kind,cls", KINDS)
def test_python_creates_cpp_attaches(peer, kind, cls):
    lock = cls() if cls is not S.Semaphore else S.Semaphore(1)
    h = Held(peer, "hold", kind, lock.name)
    assert h.first == "held"
    assert lock.acquire(timeout=0.05) is False
    assert h.finish() == ["released"]
    assert lock.acquire(timeout=10) is True
    assert run(peer, "acquire-timeout", kind, lock.name, 50) == ["timed_out"]
    lock.release()
    assert run(peer, "acquire-timeout", kind, lock.name, 5000) == ["acquired"]


@pytest.mark.parametrize("kind,cls", KINDS + [("event", S.Event)])
def test_cpp_creates_python_attaches(peer, names, kind, cls):
    name = names(kind)
    h = Held(peer, "create", kind, name, 1)
    assert h.first == "created"
    obj = cls.attach(name)
    if kind == "event":
        assert not obj.is_set()
        assert run(peer, "event-set", name) == ["set"]
        assert obj.wait(10)
        obj.clear()
        assert run(peer, "event-wait", name, 20) == ["timeout"]
        obj.set()
        assert run(peer, "event-wait", name, 5000) == ["set"]
    else:
        assert obj.acquire(timeout=10)
        assert run(peer, "acquire-timeout", kind, name, 50) == ["timed_out"]
        obj.release()
        assert run(peer, "acquire-timeout", kind, name, 5000) == ["acquired"]
    with pytest.raises(ValueError):
        (S.Lock if kind != "mutex" else S.RLock).attach(name)  # the kind is checked
    del obj
    h.finish()
    assert not block_exists(name)


def test_cpp_holder_dies_python_is_told(peer):
    lock = S.RobustLock()
    assert run(peer, "die-holding", lock.name) == ["held"]
    with pytest.raises(S.OwnerDiedError):
        lock.acquire(timeout=1.0)
    lock.make_consistent()
    lock.release()
    assert lock.acquire(timeout=1.0)
    lock.release()


def test_python_holder_dies_cpp_is_told(peer):
    import multiprocessing
    import signal
    lock = S.RobustLock()
    held = S.Event()
    p = multiprocessing.get_context("fork").Process(target=_hold, args=(lock, held))
    p.start()
    assert held.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert run(peer, "owner-died", lock.name) == ["owner_died"]
    assert lock.acquire(timeout=1.0)
    lock.release()


def _hold(lock, held):
    import time
    lock.acquire()
    held.set()
    time.sleep(600)


@pytest.mark.parametrize("Q,kind", [(SpscQueue, "spsc"), (MpmcQueue, "mpmc")])
@pytest.mark.parametrize("ptype,item,type_name,values", [
    ("q", "q", None, lambda n: list(range(n))),
    ("d", "d", None, lambda n: [float(i) for i in range(n)]),
    ("pair", "qd", "Pair/v1", lambda n: [(i, i / 2.0) for i in range(n)]),
])
def test_queues_both_ways(peer, names, Q, kind, ptype, item, type_name, values):
    n = 1000
    expected_sum = sum(v if not isinstance(v, tuple) else v[0] + v[1] for v in values(n))
    # Python creates, C++ pushes, Python pops; then Python pushes, C++ pops.
    q = Q(names("q"), 64, item, type_name=type_name)
    pusher = subprocess.Popen([peer, "queue-push", kind, ptype, q.name, str(n)], stdout=subprocess.PIPE,
                              text=True)
    got = [q.get(timeout=30) for _ in range(n)]
    assert pusher.wait(60) == 0
    assert got == values(n)
    popper = subprocess.Popen([peer, "queue-pop", kind, ptype, q.name, str(n)], stdout=subprocess.PIPE,
                              text=True)
    q.put_many(values(n), timeout=30)
    out, _ = popper.communicate(timeout=60)
    assert popper.returncode == 0 and float(out) == expected_sum
    q.unlink()
    # C++ creates, Python attaches.
    name = names("cq")
    h = Held(peer, "queue-create", kind, ptype, name, 64)
    assert h.first == "created"
    a = Q(name, item=item, type_name=type_name)
    a.put(values(1)[0])
    assert a.get() == values(1)[0]
    with pytest.raises(ValueError):
        Q(name, item="i" if ptype != "q" else "Q")  # another element type
    del a
    h.finish()


def test_atomic_ref_shared_with_cpp(peer, names):
    name = names("atomic")
    blk = _sync.TypedBlock.create(name, 1024 + 77, None, "test.counter", 8, 8, 1, 0, 8)
    a = _sync.AtomicRef(blk, blk.payload_offset, "q")
    a.store(10)
    assert run(peer, "atomic-add", name, blk.payload_offset, 1000) == ["1009"]
    assert a.load() == 1010
    waiter = subprocess.Popen([peer, "atomic-add", name, str(blk.payload_offset), "1"],
                              stdout=subprocess.PIPE, text=True)
    assert a.wait(1010, timeout=30)
    assert waiter.wait(30) == 0
    del a
    blk.unlink()


TYPES = [("q", "q", None, lambda i: i, lambda i: float(i)),
         ("d", "d", None, lambda i: float(i), lambda i: float(i)),
         ("pair", "qd", "Pair/v1", lambda i: (i, i / 2.0), lambda i: i + i / 2.0)]


@pytest.mark.parametrize("ptype,item,type_name,make,num", TYPES)
def test_seqlock_both_ways(peer, names, ptype, item, type_name, make, num):
    s = SeqLock(names("s"), item, create=True, type_name=type_name)
    assert run(peer, "seqlock-store", ptype, s.name, 7) == ["stored"]
    assert s.read() == make(7) and s.version == 2
    s.unlink()
    name = names("cs")
    h = Held(peer, "seqlock-create", ptype, name)
    assert h.first == "created"
    a = SeqLock(name, item, type_name=type_name)
    a.store(make(5))
    del a
    assert h.finish() == [f"{num(5):.1f}"]


@pytest.mark.parametrize("ptype,item,type_name,make,num", TYPES)
def test_broadcast_ring_both_ways(peer, names, ptype, item, type_name, make, num):
    r = BroadcastRing(names("r"), 256, item, type_name=type_name)
    rd = r.reader(0)
    assert run(peer, "ring-push", ptype, r.name, 100) == ["pushed"]
    assert [rd.read(timeout=10) for _ in range(100)] == [make(i) for i in range(100)]
    r.unlink()
    name = names("cr")
    h = Held(peer, "ring-create", ptype, name, 256)
    assert h.first == "created"
    a = BroadcastRing(name, item=item, type_name=type_name)
    for i in range(50):
        a.push(make(i))
    del a
    out, _ = h.p.communicate("50\n", timeout=60)
    assert h.p.returncode == 0 and out.split() == [f"{sum(num(i) for i in range(50)):.1f}"]
