"""shmkit.sharedctypes: CPython's API over typed blocks, every object
picklable to any process, atomics, numpy views, and no leaks."""
import ctypes
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from conftest import block_exists
from shmkit import sharedctypes as sc


from sc_types import Point


class Quote(ctypes.Structure):
    _shmkit_type_name_ = "Quote/v1"  # C++: shmkit::TypeName<Quote>
    _fields_ = [("id", ctypes.c_int64), ("px", ctypes.c_double)]


def test_value_and_array_basics():
    v = sc.Value("i", 7)
    assert v.value == 7 and isinstance(v.get_obj(), ctypes.c_int)
    v.value = -3
    with v.get_lock():
        v.value += 1  # the lock is recursive, as CPython's default RLock
    assert v.get_obj().value == -2
    a = sc.Array("d", [0.5, 1.5, 2.5])
    assert len(a) == 3 and a[1] == 1.5 and a[:] == [0.5, 1.5, 2.5] and a[-1] == 2.5
    a[0:2] = [9.0, 8.0]
    assert list(a) == [9.0, 8.0, 2.5]
    with pytest.raises(IndexError):
        a[3]
    raw = sc.RawValue(ctypes.c_uint16, 65535)
    assert raw.value == 65535 and not hasattr(raw, "get_lock")
    assert sc.RawArray("b", 4)[:] == [0, 0, 0, 0]


def test_chars_value_and_raw():
    s = sc.Array("c", 10)
    s.value = b"hello"
    assert s.value == b"hello" and s.raw == b"hello\0\0\0\0\0"
    t = sc.Array("c", b"abc", lock=False)
    assert t.value == b"abc" and t.raw == b"abc"


def test_structures_and_copy():
    p = sc.Value(Point, 3, 2.5)
    p.x *= 2
    assert (p.x, p.y) == (6, 2.5) and type(p).__name__ == "SynchronizedPoint"
    c = sc.copy(p.get_obj())
    p.x = 0
    assert c.x == 6 and c.y == 2.5
    assert sc.copy(Point(1, 2.0)).y == 2.0


def test_lock_arguments():
    lock = multiprocessing.Lock()
    v = sc.Value("i", 1, lock=lock)
    assert v.get_lock() is lock
    assert not hasattr(sc.Value("i", 1, lock=False), "get_lock")
    with pytest.raises(AttributeError):
        sc.Value("i", 1, lock="navalue")
    r = sc.Value("q", 5, lock="robust")
    r.value += 1
    assert r.value == 6
    with r:  # not recursive: the accessors would take it again
        with pytest.raises(RuntimeError):
            r.value
    m = sc.Value("q", 5, lock="mutex")
    m.value = 8
    assert m.value == 8


def test_get_obj_is_a_real_ctypes_object_over_the_shared_bytes():
    a = sc.Array("i", range(4))
    obj = a.get_obj()
    assert isinstance(obj, ctypes.Array) and obj._type_ is ctypes.c_int
    view = (ctypes.c_int * 4).from_address(ctypes.addressof(obj))
    view[2] = 42
    assert a[2] == 42


def _bump(v, a, n, i):
    for _ in range(n):
        v.fetch_add(1)
    # a has no lock: each child writes only its own element (a shared
    # a[0] += 1 would be an unsynchronised read-modify-write, and lose one).
    a[i] += 1


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pickled_to_children_of_every_start_method(method):
    ctx = multiprocessing.get_context(method)
    v = sc.Value("q", 0)
    a = sc.Array("i", 3, lock=False)
    procs = [ctx.Process(target=_bump, args=(v, a, 500, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert v.value == 1000  # atomic: no update lost
    assert a[:] == [1, 1, 0]  # each child's write reached the parent's block


def test_pickled_to_an_unrelated_process():
    v = sc.Value(Point, 1, 0.5)
    code = textwrap.dedent("""
        import pickle, sys
        sys.path.insert(0, sys.argv[2])
        v = pickle.loads(bytes.fromhex(sys.argv[1]))
        v.x = 77
    """)
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-c", code, pickle.dumps(v).hex(), here], check=True)
    assert v.x == 77


def test_atomics():
    v = sc.Value("i", 10)
    assert v.fetch_add(5) == 10 and v.value == 15
    assert v.fetch_sub(1) == 15
    assert v.exchange(3) == 14
    assert v.compare_exchange(3, 4) in (True, (True, 3))
    assert v.load() == 4
    v.store(9)
    assert v.value == 9
    raw = sc.RawValue("Q", 1)
    assert raw.fetch_add(2) == 1 and raw.value == 3
    with pytest.raises(AttributeError):
        sc.Value("d", 1.0).fetch_add(1)


def test_numpy_views_count_exports():
    numpy = pytest.importorskip("numpy")
    a = sc.Array("d", [1.0, 2.0, 3.0])
    view = numpy.asarray(a)
    view[1] = 20.0
    assert a[1] == 20.0 and view.dtype == numpy.float64
    place = a._place
    assert place.mapping._exports >= 2  # the ctypes object and the numpy view
    with pytest.raises(BufferError):
        place.mapping.close()
    del view
    raw = sc.RawArray("i", 5)
    nv = numpy.asarray(raw)
    nv[:] = 7
    assert raw[:] == [7] * 5


def test_named_objects_are_tracked_only_when_asked(names):
    from shmkit import _core

    def registered(name):
        return [pid for n, pid in _core._registrations() if n == name]

    quiet, tracked = names(), names()
    a = sc.RawArray("d", 4, name=quiet)  # named: not tracked by default
    b = sc.Array("q", 4, name=tracked, track=True)
    assert registered(quiet) == []
    assert registered(tracked) == [os.getpid()]
    c = sc.RawArray("d", 4, name=quiet, create=False)
    assert c[:] == [0.0] * 4 and registered(quiet) == []
    d = sc.RawArray("d", 4, name=quiet, create=False, track=True)
    assert registered(quiet) == [os.getpid()]
    b.unlink()  # unlink drops the registrations of that file
    assert registered(tracked) == []
    d._shmkit_place.mapping.unlink()
    assert registered(quiet) == [] and a[:] == [0.0] * 4


def test_named_objects_shared_by_name(names):
    n = names()
    v = sc.Value("q", 41, name=n)
    w = sc.Value("q", name=n, create=False)
    w.value += 1
    assert v.value == 42 and v.name == n
    with pytest.raises(FileExistsError):
        sc.Value("q", 1, name=n)
    with pytest.raises(ValueError):  # another element type
        sc.Value("d", name=n, create=False)
    with pytest.raises(ValueError):  # an array is not a value
        sc.Array("q", 1, name=n, create=False)
    with pytest.raises(ValueError):  # made with a lock
        sc.RawValue("q", name=n, create=False)
    v.unlink()
    with pytest.raises(FileNotFoundError):
        sc.Value("q", name=n, create=False)


def test_bad_input_is_a_python_exception(names):
    from shmkit import shared_memory as sm
    with pytest.raises(TypeError):
        sc.Value(ctypes.c_char_p, b"x")  # a pointer
    with pytest.raises(TypeError):
        sc.Value("i", "not an int")
    with pytest.raises((TypeError, KeyError)):
        sc.Value(object)
    with pytest.raises(ValueError):
        sc.RawArray("i", -1)
    n = names()
    g = sm.SharedMemory(n, create=True, size=4096)
    g.buf[:] = os.urandom(4096)
    with pytest.raises(ValueError):
        sc.Value("i", name=n, create=False)
    g.buf[:] = bytes(4096)
    with pytest.raises(ValueError):  # a zero block is not initialised
        sc.Array("i", name=n, create=False)
    g.close()
    g.unlink()


LEAK_CHILD = textwrap.dedent("""
    import ctypes, gc, sys
    from shmkit import sharedctypes as sc
    from shmkit import shared_memory as sm
    made = []
    for i in range(20):
        for o in (sc.Value("i", i), sc.Array("d", 8), sc.RawValue("q"), sc.RawArray("c", b"ab"),
                  sc.Value("i", lock=False)):
            made.append(o.name if hasattr(o, "name") and isinstance(o.name, str) else o._shmkit_place.name)
    gc.collect()
    keep = sc.Value("i", 1)                       # alive at exit: unlinked at exit
    made.append(keep.name)
    print(" ".join(made), flush=True)
""")


def test_no_block_outlives_its_objects():
    r = subprocess.run([sys.executable, "-c", LEAK_CHILD], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    made = r.stdout.split()
    assert len(made) == 101
    left = [n for n in made if block_exists(n)]
    assert not left, "left in /dev/shm: %s" % left


def _wait_then_add(v, seen):
    changed = v.wait(0, timeout=30)  # returns once the value is no longer 0
    seen.value = v.load()
    v.fetch_add(10)
    return changed


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_wait_and_notify_across_processes(method):
    ctx = multiprocessing.get_context(method)
    v = sc.Value("i", 0)
    seen = sc.RawValue("i", -1)
    p = ctx.Process(target=_wait_then_add, args=(v, seen))
    p.start()
    v.store(5)
    v.notify()
    p.join(60)
    assert p.exitcode == 0
    assert seen.value == 5 and v.value == 15


def _die_holding(v):
    v.get_lock().acquire()
    v.get_obj().value = 99  # half-way through an update
    os.kill(os.getpid(), 9)


def test_robust_value_reports_a_killed_holder():
    from shmkit._sync import OwnerDiedError
    v = sc.Value("q", 1, lock="robust")
    p = multiprocessing.get_context("fork").Process(target=_die_holding, args=(v,))
    p.start()
    p.join(60)
    assert p.exitcode == -9
    with pytest.raises(OwnerDiedError):
        v.value  # told, holding the lock: repair, mark consistent, release
    lock = v.get_lock()
    v.get_obj().value = 1
    lock.make_consistent()
    lock.release()
    assert v.value == 1
    v.value = 2  # usable again
    assert v.value == 2
