"""C++ creates and Python attaches, and the other way round, for
SharedMemory, ShareableList, Value (a number and a Structure) and Array:
the C++ side is python/tests/peers/core_peer.cpp, an unrelated process."""
import ctypes
import subprocess

import pytest

from shmkit import shared_memory as sm
from shmkit import sharedctypes as sc


class Quote(ctypes.Structure):
    _shmkit_type_name_ = "Quote/v1"  # the C++ peer's shmkit::TypeName<Quote>
    _fields_ = [("id", ctypes.c_int64), ("px", ctypes.c_double)]


def run(peer, *args):
    r = subprocess.run([peer] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_shared_memory_both_ways(peer, names):
    n = names()
    run(peer, "shm-create", n, "100", "from c++")
    m = sm.SharedMemory(n)
    assert bytes(m.buf[:8]) == b"from c++" and m.size == 100
    m.buf[:11] = b"from python"
    assert run(peer, "shm-read", n, "11") == "from python"
    m.close()
    m.unlink()


def test_shareable_list_both_ways(peer, names):
    n = names()
    run(peer, "list-create", n)
    sl = sm.ShareableList(name=n)
    assert list(sl) == [42, -1.5, True, None, "héllo", b"a\0b\0"]
    sl[0] = "changed"
    sl.shm.close()
    sl.shm.unlink()
    m = names()
    mine = sm.ShareableList([1, 2.5, False, None, "ünï", b"\0x\0"], name=m)
    assert run(peer, "list-dump", m).splitlines() == [
        "1", "2.5", "False", "None", "'ünï'", "b'\\x00x\\x00'"]
    mine.shm.close()
    mine.shm.unlink()


def test_value_both_ways(peer, names):
    n = names()
    run(peer, "value-create", n, "40")
    v = sc.Value("q", name=n, create=False)  # the C++ default lock: RecursiveMutex
    v.value += 1
    assert run(peer, "value-add", n, "1").strip() == "42"
    assert v.value == 42
    assert v.fetch_add(8) == 42
    v.unlink()
    m = names()
    mine = sc.Value(ctypes.c_int64, 5, name=m)  # Python makes what C++ attaches
    assert run(peer, "value-add", m, "10").strip() == "15"
    assert mine.value == 15
    mine.unlink()
    r = names()
    robust = sc.Value("q", 1, lock="robust", name=r)
    run(peer, "robust-value-add", r, "2")
    assert robust.value == 3
    with pytest.raises(subprocess.CalledProcessError):  # another lock kind
        subprocess.run([peer, "value-add", r, "1"], check=True, capture_output=True)
    robust.unlink()


def test_structure_both_ways(peer, names):
    n = names()
    run(peer, "quote-create", n)
    q = sc.Value(Quote, name=n, create=False)
    assert (q.id, q.px) == (7, 101.25)
    q.unlink()
    m = names()
    mine = sc.Value(Quote, 9, 2.5, name=m)
    assert run(peer, "quote-read", m).strip() == "9 2.50"
    mine.unlink()


def test_array_both_ways(peer, names):
    n = names()
    run(peer, "array-create", n)
    a = sc.Array("d", name=n, create=False)
    assert a[:] == [0.5, 1.5, 2.5]
    a.unlink()
    m = names()
    mine = sc.Array("i", [1, -2, 3], name=m)
    run(peer, "array-negate", m)
    assert mine[:] == [-1, 2, -3]
    mine.unlink()
    c = names()
    chars = sc.Array("c", 16, name=c)
    chars.value = b"bytes from py"
    assert run(peer, "chars-read", c).strip() == "bytes from py"
    chars.unlink()
