"""The public API as a typed user program uses it: type-checked by mypy
(ctest python_mypy, with the package's stubs and py.typed) and run by
test_typing.py, so what type-checks here also works.

Every block made here is unlinked before main() returns.
"""
from __future__ import annotations

import ctypes
import pickle
import queue
from typing import Any, List, Optional

import shmkit
from shmkit import queues, shared_memory, sharedctypes, synchronize


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int32), ("b", ctypes.c_double)]


def use_shared_memory() -> int:
    shm = shared_memory.SharedMemory(create=True, size=16)
    try:
        buf: memoryview = shm.buf
        buf[0] = 7
        name: str = shm.name
        size: int = shm.size
        other = shared_memory.SharedMemory(name)
        first: int = other.buf[0]
        other.close()
        again: shared_memory.SharedMemory = pickle.loads(pickle.dumps(shm))
        again.close()
        assert size >= 16
    finally:
        shm.close()
        shm.unlink()
    sl = shared_memory.ShareableList([1, 2.5, "three", b"four", None, True])
    try:
        n: int = len(sl)
        sl[0] = 10
        items = list(sl)
        fmt: str = sl.format
        where: int = sl.index(2.5)
        assert items[0] == 10 and n == 6 and fmt and where == 1 and sl.count(None) == 1
    finally:
        sl.shm.close()
        sl.shm.unlink()
    with shared_memory.SharedMemoryManager() as smm:
        block = smm.SharedMemory(8)
        block.buf[0] = 1
        block.close()
        lst = smm.ShareableList(["x", 1])
        blocks: List[tuple[str, str, int]] = smm.list_blocks()
        assert len(blocks) == 2 and lst[1] == 1
        lst.shm.close()
    return first


def use_sharedctypes() -> None:
    v = sharedctypes.Value("i", 3)
    with v.get_lock():
        v.value += 1
    old: int = v.fetch_add(1)
    assert old == 4 and v.value == 5 and repr(v) == "<Synchronized wrapper for c_int(5)>"
    raw = sharedctypes.RawValue(ctypes.c_double, 1.5)
    raw.value *= 2
    arr = sharedctypes.Array("d", [0.5, 1.5])
    arr[0] = 2.0
    total: float = sum(arr[:])
    empty = sharedctypes.Array("i", [])
    assert len(empty) == 0 and empty[:] == [] and total == 3.5
    text = sharedctypes.Array("c", b"hi")
    assert text.value == b"hi"
    pair = sharedctypes.Value(Pair, 1, 2.5, lock="robust")
    assert pair.a == 1
    named = sharedctypes.RawArray("q", 4, name=None)
    copied = sharedctypes.copy(named)
    assert len(copied) == 4
    copy_back = pickle.loads(pickle.dumps(arr))
    assert copy_back[0] == 2.0
    guarded = sharedctypes.synchronized(sharedctypes.RawValue("h", 1))
    assert isinstance(guarded, sharedctypes.Synchronized) and guarded.value == 1


def use_synchronize() -> None:
    lock = synchronize.Lock()
    got: bool = lock.acquire(True, 1.0)
    lock.release()
    with synchronize.RLock():
        pass
    robust = synchronize.RobustLock()
    try:
        robust.acquire()
    except synchronize.OwnerDiedError:
        robust.make_consistent()
    robust.release()
    sem = synchronize.BoundedSemaphore(2)
    sem.acquire()
    value: int = sem.get_value()
    sem.release()
    event = synchronize.Event()
    event.set()
    flag: bool = event.wait(0.1)
    cond = synchronize.Condition(synchronize.Lock())
    with cond:
        woke: bool = cond.wait(0.01)
        cond.notify_all()
    barrier = synchronize.Barrier(1)
    index: int = barrier.wait()
    name: str = lock.name
    same = synchronize.Lock.attach(name)
    assert got and value == 1 and flag and not woke and index == 0 and not same.locked()


def use_queues() -> None:
    q = queues.SpscQueue(capacity=8, item="d")
    try:
        q.put(1.5)
        q.put_many([2.5, 3.5])
        got: Any = q.get()
        rest: Any = q.get_many(8)
        try:
            q.get(timeout=0.01)
        except queues.Empty:
            pass
        sizes: list[int] = queues.supported_item_sizes()
        assert got == 1.5 and rest == [2.5, 3.5] and 8 in sizes
    finally:
        q.unlink()
    m = queues.MpmcQueue(capacity=4, item=bytes, maxbytes=16)
    try:
        m.put(b"abc")
        assert m.get_nowait() == b"abc" and m.qsize() == 0
    finally:
        m.unlink()
    s = queues.SeqLock(item="q", initial=5)
    try:
        s.store(6)
        latest: Optional[Any] = s.try_read()
        assert latest == 6 and s.read() == 6
    finally:
        s.unlink()
    ring = queues.BroadcastRing(capacity=4, item="q")
    try:
        reader: queues.BroadcastReader = ring.reader()
        ring.push(1)
        assert reader.read(timeout=1.0) == 1 and reader.backlog() == 0
    except queue.Empty:
        raise AssertionError("the pushed item was not read") from None
    finally:
        ring.unlink()


def _square(x: int) -> int:
    return x * x


def use_context() -> None:
    import shmkit.multiprocessing as mp
    from shmkit.mpqueues import SimpleQueue
    from shmkit.pool import Pool

    ctx = shmkit.get_context("fork")
    lock = ctx.Lock()
    with lock:
        pass
    q: SimpleQueue = mp.SimpleQueue()
    q.put({"a": 1})
    got: Any = q.get()
    assert got == {"a": 1}
    q.close()
    pool: Pool = mp.Pool(1)
    with pool:
        squares: List[int] = pool.map(_square, range(3))
        assert squares == [0, 1, 4]
    pool.join()
    sem: synchronize.Semaphore = mp.Semaphore(2)
    assert sem.acquire()
    sem.release()


def main() -> None:
    assert shmkit.__version__
    use_shared_memory()
    use_sharedctypes()
    use_synchronize()
    use_queues()
    use_context()


if __name__ == "__main__":
    main()
