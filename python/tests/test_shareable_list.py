"""shmkit.shared_memory.ShareableList: CPython's bytes (either side creates,
the other attaches), the NUL and UTF-8 fixes, and the manager."""
import os
import pickle
import struct
import subprocess
import sys
import textwrap

import pytest

from conftest import block_exists
from shmkit import shared_memory as sm

ITEMS = ["howdy", b"HoWdY", -273.154, 100, None, True, 42]


def _stdlib_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def run_cpython(code, *args):
    """Runs code with the stdlib's multiprocessing.shared_memory; its stdout."""
    prologue = ("import sys\nfrom multiprocessing import resource_tracker, shared_memory\n"
                "def attach(n):\n"
                "    sl = shared_memory.ShareableList(name=n)\n"
                "    resource_tracker.unregister(sl.shm._name, 'shared_memory')\n"
                "    return sl\n")
    r = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)] + list(args),
                       capture_output=True, text=True, env=_stdlib_env())
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_same_bytes_as_cpython(names):
    n = names()
    sl = sm.ShareableList(ITEMS, name=n)
    assert sl.format == "8s8sdqxxxxxx?xxxxxxxx?q"  # CPython 3.11's for this list
    out = run_cpython("""
        sl = shared_memory.ShareableList(%r, name=sys.argv[1] + "_py")
        resource_tracker.unregister(sl.shm._name, "shared_memory")
        print(bytes(sl.shm.buf).hex())
        sl.shm.close()
    """ % (ITEMS,), n)
    try:
        assert bytes(sl.shm.buf).hex() == out.strip()
    finally:
        os.unlink("/dev/shm/" + n + "_py")
    sl.shm.close()
    sl.shm.unlink()


def test_cpython_reads_and_writes_a_shmkit_list(names):
    n = names()
    sl = sm.ShareableList(ITEMS, name=n)
    out = run_cpython("""
        sl = attach(sys.argv[1])
        print(list(sl))
        sl[0] = "hi"; sl[3] = -5; sl[4] = 2.5
        sl.shm.close()
    """, n)
    assert out.strip() == repr(ITEMS)
    assert sl[0] == "hi" and sl[3] == -5 and sl[4] == 2.5
    sl.shm.close()
    sl.shm.unlink()


def test_shmkit_reads_a_cpython_list(names):
    n = names()
    run_cpython("""
        sl = shared_memory.ShareableList(%r, name=sys.argv[1])
        resource_tracker.unregister(sl.shm._name, "shared_memory")
        sl.shm.close()
    """ % (ITEMS,), n)
    sl = sm.ShareableList(name=n)
    assert list(sl) == ITEMS and len(sl) == 7
    assert sl.count(42) == 1 and sl.index(100) == 3
    sl.shm.close()
    sl.shm.unlink()


def test_trailing_nuls_survive(names):
    """gh-106939: CPython strips trailing NULs from str and bytes."""
    sl = sm.ShareableList([b"ab\0\0", "x\0"], name=names())
    assert sl[0] == b"ab\0\0" and sl[1] == "x\0"
    sl[0] = b"\0"
    assert sl[0] == b"\0"
    sl.shm.close()
    sl.shm.unlink()


def test_utf8_slots_are_sized_by_bytes_where_characters_do_not_fit(names):
    """gh-88336: CPython 3.11 gives 'ééééé' (10 bytes) an 8-byte slot."""
    sl = sm.ShareableList(["ééééé", "encodés"], name=names())
    assert sl[0] == "ééééé"
    assert sl.format == "16s8s"  # 'encodés' is 8 bytes: CPython's slot fits it
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[1] = "encodées"
    assert sl[1] == "encodés"
    sl.shm.close()
    sl.shm.unlink()


def test_errors(names):
    sl = sm.ShareableList([1, "ab"], name=names())
    with pytest.raises(IndexError):
        sl[2]
    with pytest.raises(IndexError):
        sl[-3] = 1
    with pytest.raises(TypeError):
        sl[0] = [1, 2]
    with pytest.raises(TypeError):
        sl["x"]
    with pytest.raises(struct.error):
        sl[0] = 2 ** 64
    with pytest.raises(TypeError):
        sm.ShareableList([{}])
    assert list(sl) == [1, "ab"]
    sl.shm.close()
    sl.shm.unlink()


def test_garbage_and_foreign_blocks_are_value_errors(names):
    n = names()
    m = sm.SharedMemory(n, create=True, size=64)
    m.buf[:8] = struct.pack("q", 10 ** 9)  # a count far beyond the block
    with pytest.raises(ValueError):
        sm.ShareableList(name=n)
    m.buf[:] = os.urandom(64)
    with pytest.raises(ValueError):
        sm.ShareableList(name=n)
    m.close()
    m.unlink()
    with pytest.raises(FileNotFoundError):
        sm.ShareableList(name=n)


def test_pickle_by_name(names):
    sl = sm.ShareableList(range(10), name=names())
    other = pickle.loads(pickle.dumps(sl))
    other[3] = "changed"
    assert sl[3] == "changed"
    other.shm.close()
    sl.shm.close()
    sl.shm.unlink()


def test_manager_owns_its_blocks():
    with sm.SharedMemoryManager() as smm:
        sl = smm.ShareableList(["a", 1, None])
        m = smm.SharedMemory(100)
        held = [sl.shm.name, m.name]
        assert all(block_exists(h) for h in held)
        assert sorted(b[0] for b in smm.list_blocks()) == sorted(held)
        m.buf[0] = 9
        again = sm.SharedMemory(m.name)
        assert again.buf[0] == 9
        again.close()
    assert not any(block_exists(h) for h in held)
    with pytest.raises(FileNotFoundError):
        sm.ShareableList(name=held[0])


def test_manager_not_started_is_value_error_and_another_process_connects():
    smm = sm.SharedMemoryManager()
    with pytest.raises(ValueError):
        smm.SharedMemory(9)
    smm.start()
    try:
        code = textwrap.dedent("""
            import sys
            from shmkit import shared_memory as sm
            c = sm.SharedMemoryManager(sys.argv[1], bytes.fromhex(sys.argv[2]), connect=True)
            print(c.ShareableList([7, "x"]).shm.name)
        """)
        r = subprocess.run([sys.executable, "-c", code, smm.address, smm.authkey.hex()],
                           capture_output=True, text=True, check=True)
        name = r.stdout.strip()
        assert list(sm.ShareableList(name=name)) == [7, "x"]
    finally:
        smm.shutdown()
    assert not block_exists(name)


def test_a_typed_block_is_not_a_list(names):
    from shmkit import sharedctypes as sc
    n = names()
    v = sc.Value("q", 5, name=n)
    with pytest.raises(ValueError):
        sm.ShareableList(name=n)
    v.unlink()


def test_manager_bad_arguments():
    with pytest.raises(TypeError):
        sm.SharedMemoryManager(123, b"k")
    with pytest.raises(TypeError):
        sm.SharedMemoryManager("/tmp/x", "not bytes")
    # An address without a key: this process's authkey, as CPython's.
    import multiprocessing
    assert sm.SharedMemoryManager("/tmp/x").authkey == bytes(multiprocessing.current_process().authkey)
    nowhere = sm.SharedMemoryManager("/tmp/pyt_no_such_dir_%d/s" % os.getpid(), b"k", connect=True)
    with pytest.raises(OSError):
        nowhere.SharedMemory(8)
    with sm.SharedMemoryManager() as smm:
        with pytest.raises(ValueError):
            smm.SharedMemory(0)
        with pytest.raises(TypeError):
            smm.ShareableList([object()])
