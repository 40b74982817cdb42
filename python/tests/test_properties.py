"""Property-based tests of the public Python API with bad inputs
(Hypothesis): whatever a caller passes, the result is a value or an
ordinary exception, never a crash, and the object stays usable.

The examples run in this interpreter; a crash would end pytest, which
ctest reports as a failure."""
import gc
import itertools
import os
import queue
import struct
import sys
import tempfile

import pytest

# Hypothesis keeps caches (its unicode table) in ./.hypothesis: not in the
# source tree. Before the import, which reads the variable.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "shmkit-hypothesis-%d" % os.getuid()))
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings, strategies as st  # noqa: E402

from shmkit import queues as squeues  # noqa: E402
from shmkit import synchronize  # noqa: E402
from shmkit.shared_memory import ShareableList, SharedMemory  # noqa: E402
import shmkit._queues as _queues  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
                    database=None)  # no .hypothesis directory in the source tree
_seq = itertools.count()


def fresh(tag):
    return "pyprop_%d_%s_%d" % (os.getpid(), tag, next(_seq))


class Weird:
    """Converts to anything, badly."""

    def __init__(self, v):
        self.v = v

    def __index__(self):
        if isinstance(self.v, int):
            return self.v
        raise TypeError("no")

    def __float__(self):
        if isinstance(self.v, float):
            return self.v
        raise ValueError("no")

    def __bool__(self):
        raise RuntimeError("no")

    def __len__(self):
        return -1


# Sizes and counts: small, negative, or far beyond any machine (refused at
# once). Never a few GiB, which a tmpfs on a big machine would grant and
# fill.
sizes = st.one_of(st.integers(min_value=-16, max_value=1 << 16), st.integers(min_value=2**62, max_value=2**70),
                  st.integers(max_value=-2**62, min_value=-2**70), st.none(), st.text(max_size=3),
                  st.floats(allow_nan=True), st.integers(min_value=-16, max_value=1 << 16).map(lambda v: Weird(v)))
ints = st.one_of(st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                 st.sampled_from([0, -1, 1, sys.maxsize, -sys.maxsize - 1, 2**63, 2**64]))
floats = st.floats(allow_nan=True, allow_infinity=True)
anything = st.one_of(st.none(), st.booleans(), ints, floats, st.text(max_size=40), st.binary(max_size=5000),
                     st.tuples(ints, ints), st.lists(ints, max_size=5), ints.map(Weird), floats.map(Weird),
                     st.builds(object))

# Timeouts that never mean "forever" (None or a huge number would block a
# get on an empty queue for good): tiny, negative, NaN, or not numbers.
timeouts = st.one_of(st.floats(min_value=-1e300, max_value=0.001), st.just(float("nan")), st.text(max_size=3),
                     st.floats(min_value=0, max_value=0.001).map(Weird), ints.map(Weird), st.builds(object))
OK = (Exception,)  # any ordinary exception; BaseException subclasses beyond it are not expected


@pytest.fixture(scope="module")
def queues_():
    made = []
    for kind, cls in (("spsc", squeues.SpscQueue), ("mpmc", squeues.MpmcQueue)):
        for item, kw in (("d", {}), ("q", {}), ("?", {}), (bytes, {"maxbytes": 60}),
                         ("qd", {"type_name": "pyprop/qd"}), ("B", {})):
            made.append(cls(fresh(kind), 4, item, **kw))
    yield made
    for q in made:
        q.unlink()
        q.close()


@SETTINGS
@given(which=st.integers(min_value=0, max_value=11), item=anything, block=anything, timeout=timeouts)
def test_queue_put_get_bad_inputs(queues_, which, item, block, timeout):
    q = queues_[which]
    try:
        q.put(item, block, timeout)
    except OK:
        pass
    try:
        q.get(block, timeout)
    except OK:
        pass
    try:
        q.put_many(item, timeout=timeout)
    except OK:
        pass
    try:
        q.get_many(item, block, timeout)
    except OK:
        pass
    try:
        q.get_many_bytes(item, False)
    except OK:
        pass
    if which < 6:
        try:
            q.get_view(item).release()
        except OK:
            pass
    while True:  # still usable
        try:
            q.get_nowait()
        except queue.Empty:
            break
        except OK:
            continue
    assert q.qsize() == 0


@SETTINGS
@given(size=sizes, item=st.one_of(st.sampled_from(["d", "q", "b", "?", "c", "x", "", "qqqqqqqqq" * 60]),
                                     st.text(max_size=8)),
       maxbytes=sizes, capacity=sizes)
def test_queue_construction_bad_inputs(size, item, maxbytes, capacity):
    for cls in (squeues.SpscQueue, squeues.MpmcQueue):
        try:
            q = cls(fresh("c"), capacity, item, maxbytes=maxbytes if maxbytes is not None else 8,
                    type_name="pyprop/c")
        except OK:
            continue
        try:
            q.put(b"x" * 10000, False)
        except OK:
            pass
        q.unlink()
        q.close()


@SETTINGS
@given(kind=st.sampled_from(["spsc", "mpmc"]), item=st.integers(min_value=-10, max_value=5000),
       align=st.integers(min_value=-3, max_value=16), code=st.sampled_from([None, "d", "q", "b", "?", "c", "Z"]),
       mode=st.sampled_from(["s", "t", "y", "r", "", "sy"]), maxbytes=ints)
@example(kind="spsc", item=8, align=4, code=None, mode="y", maxbytes=sys.maxsize)  # maxbytes + 4 overflowed
@example(kind="mpmc", item=1, align=1, code="d", mode="s", maxbytes=0)  # an 8-byte typecode in 1-byte items
def test_private_queue_constructor_bad_sizes(kind, item, align, code, mode, maxbytes):
    try:
        q = _queues._Queue(kind, fresh("p"), True, 4, item, align, code, "pyprop/p", mode, maxbytes,
                           struct.Struct("q") if mode == "t" else None)
    except OK:
        return
    try:
        for v in (1, 1.0, b"x" * 5000, (1,), b"\0" * item):
            try:
                q.put(v, False)
                q.put_many([v, v], timeout=0)
            except OK:
                pass
    finally:
        q.unlink()
        q.close()


@SETTINGS
@given(values=st.lists(anything, max_size=4), index=anything, value=anything)
def test_shareable_list_bad_inputs(values, index, value):
    try:
        sl = ShareableList(values)
    except OK:
        sl = ShareableList([1, 2.0, "abc", b"de", None])
    try:
        for op in (lambda: sl[index], lambda: sl.__setitem__(index, value), lambda: sl._get_packing_format(index),
                   lambda: sl.index(value), lambda: sl.count(value)):
            try:
                op()
            except OK:
                pass
        list(sl)
    finally:
        sl.shm.close()
        sl.shm.unlink()


@SETTINGS
@given(name=st.one_of(st.none(), st.text(max_size=300)), create=anything, size=sizes)
def test_shared_memory_bad_inputs(name, create, size):
    try:
        shm = SharedMemory(name, create, size)
    except OK:
        return
    try:
        shm.buf[:1] = b"x"
    finally:
        shm.close()
        if create:
            shm.unlink()


@pytest.fixture(scope="module")
def sync_objs():
    objs = [synchronize.Lock(), synchronize.RLock(), synchronize.Semaphore(2), synchronize.Event(),
            synchronize.Condition()]
    yield objs


@SETTINGS
@given(which=st.integers(min_value=0, max_value=4), a=anything, t=timeouts)
def test_sync_bad_inputs(sync_objs, which, a, t):
    o = sync_objs[which]
    calls = {"acquire": [(a, t), (False,)], "release": [(), (a,)], "wait": [(t,)], "set": [()], "clear": [()],
             "notify": [(a,)], "get_value": [()], "is_set": [()], "locked": [()]}
    for name, arg_lists in calls.items():
        f = getattr(o, name, None)
        if f is None or (name == "wait" and which == 4):
            continue
        for args in arg_lists:
            try:
                f(*args)
            except OK:
                pass
    if which in (0, 1):  # back to released
        while True:
            try:
                o.release()
            except OK:
                break


@SETTINGS
@given(item=st.sampled_from(["d", "q", "i", (bytes, 20)]), value=anything, timeout=timeouts)
def test_seqlock_and_ring_bad_inputs(item, value, timeout):
    kw = {}
    if isinstance(item, tuple):
        item, kw = item[0], {"maxbytes": item[1]}
    s = squeues.SeqLock(fresh("s"), item, create=True, **kw)
    r = squeues.BroadcastRing(fresh("r"), 4, item, **kw)
    try:
        for op in (lambda: s.store(value), lambda: s.read(timeout=timeout), lambda: r.push(value),
                   lambda: r.reader(value), lambda: r.reader().read(False, timeout)):
            try:
                op()
            except (OK + (queue.Empty,)):
                pass
    finally:
        s.unlink()
        s.close()
        r.unlink()


@SETTINGS
@given(code=st.sampled_from(["i", "d", "b", "c", "q", "Q", "z", "ii"]), init=anything,
       size=st.one_of(sizes, st.lists(ints, max_size=4)))
def test_sharedctypes_bad_inputs(code, init, size):
    from shmkit import sharedctypes
    made = []
    for make in (lambda: sharedctypes.RawValue(code, init), lambda: sharedctypes.RawArray(code, size),
                 lambda: sharedctypes.Value(code, init), lambda: sharedctypes.Array(code, size)):
        try:
            made.append(make())
        except OK:
            pass
    for obj in made:
        for op in (lambda: obj.value, lambda: setattr(obj, "value", init), lambda: obj[size],
                   lambda: obj.__setitem__(0, init), lambda: len(obj)):
            try:
                op()
            except OK:
                pass
    made = obj = op = None
    gc.collect()  # the objects' finalizers unlink their blocks now, not at exit


@SETTINGS
@given(code=st.sampled_from(list("bBhHiIqQ")), a=anything, b=anything, t=timeouts)
def test_atomic_ref_bad_inputs(code, a, b, t):
    import shmkit._sync as _sync
    buf = bytearray(16)
    ref = _sync.AtomicRef(buf, 8, code)
    for op in (lambda: ref.store(a), lambda: ref.exchange(a), lambda: ref.fetch_add(a), lambda: ref.fetch_sub(b),
               lambda: ref.fetch_and(a), lambda: ref.fetch_or(b), lambda: ref.fetch_xor(a),
               lambda: ref.compare_exchange(a, b), lambda: ref.wait(ref.load() + 1, t), lambda: ref.notify(a),
               lambda: _sync.AtomicRef(buf, a, code)):
        try:
            op()
        except OK:
            pass
    assert bytes(buf[:8]) == b"\0" * 8  # never wrote outside its bytes
