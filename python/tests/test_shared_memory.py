"""shmkit.shared_memory.SharedMemory: CPython's API, semantics and
exceptions, buffer export rules, pickling, and shmkit's tracker."""
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from conftest import block_exists, eventually
from shmkit import _core
from shmkit import shared_memory as sm


def test_create_attach_share_bytes(names):
    n = names()
    a = sm.SharedMemory(n, create=True, size=100)
    assert a.name == n and a.size == 100 and len(a.buf) == 100
    assert os.stat("/dev/shm/" + n).st_mode & 0o777 == 0o600
    a.buf[:5] = b"hello"
    b = sm.SharedMemory(n, size=10**6)  # the size is ignored on attach
    assert b.size == 100 and bytes(b.buf[:5]) == b"hello"
    assert repr(b) == "SharedMemory(%r, size=100)" % n
    b.close()
    a.close()
    a.unlink()
    assert not block_exists(n)


def test_random_names_are_cpythons():
    a = sm.SharedMemory(create=True, size=8)
    try:
        assert a.name.startswith("psm_") and len(a.name) == 12 and a._name == "/" + a.name
    finally:
        a.close()
        a.unlink()


@pytest.mark.parametrize("kwargs, exc", [
    (dict(create=True, size=-1), ValueError),
    (dict(create=True, size=0), ValueError),
    (dict(create=True), ValueError),
    (dict(), ValueError),                        # attach without a name
    (dict(name="pyt_surely_not_there_%d" % os.getpid()), FileNotFoundError),
    (dict(name="a/b"), ValueError),              # not a block name
    (dict(name="x" * 300), ValueError),
    (dict(name=b"bytes"), TypeError),
    (dict(name="pyt_x", create=True, size="12"), TypeError),
])
def test_bad_arguments_raise_cpythons_exceptions(kwargs, exc):
    with pytest.raises(exc):
        sm.SharedMemory(**kwargs)


def test_create_existing_is_file_exists_and_double_unlink_is_file_not_found(names):
    n = names()
    a = sm.SharedMemory(n, create=True, size=10)
    with pytest.raises(FileExistsError):
        sm.SharedMemory(n, create=True, size=10)
    a.unlink()
    with pytest.raises(FileNotFoundError):
        a.unlink()
    a.close()


def test_close_refuses_while_views_are_exported(names):
    a = sm.SharedMemory(names(), create=True, size=64)
    view = a.buf[2:10]
    with pytest.raises(BufferError):
        a.close()
    view.release()
    a.close()
    assert a.buf is None
    a.close()  # idempotent
    a.unlink()


def test_pickle_by_name(names):
    a = sm.SharedMemory(names(), create=True, size=32)
    b = pickle.loads(pickle.dumps(a))
    a.buf[0] = 7
    assert b.name == a.name and b.buf[0] == 7
    b.close()
    a.close()
    a.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(pickle.dumps(a))


def test_cpython_attaches_shmkit_blocks_and_back(names):
    n = names()
    a = sm.SharedMemory(n, create=True, size=16)
    a.buf[:3] = b"abc"
    code = textwrap.dedent("""
        import sys
        from multiprocessing import resource_tracker, shared_memory
        m = shared_memory.SharedMemory(sys.argv[1])
        resource_tracker.unregister(m._name, "shared_memory")  # not CPython's to unlink
        assert bytes(m.buf[:3]) == b"abc", bytes(m.buf[:3])
        m.buf[3:6] = b"def"
        m.close()
    """)
    subprocess.run([sys.executable, "-c", code, n], check=True, env=_stdlib_env())
    assert bytes(a.buf[:6]) == b"abcdef"
    a.close()
    a.unlink()


def _stdlib_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the child uses the stdlib module
    return env


TRACKED_CHILD = textwrap.dedent("""
    import os, sys
    from shmkit import shared_memory as sm
    m = sm.SharedMemory(sys.argv[1], create=True, size=4096)   # track=True
    m.buf[0] = 1
    print("made", flush=True)
    sys.stdin.read()          # until the test closes our stdin
    os._exit(0)               # no close, no unlink: a crash, for the tracker
""")


def test_tracker_unlinks_a_dead_creators_block(names):
    n = names()
    p = subprocess.Popen([sys.executable, "-c", TRACKED_CHILD, n], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "made"
    assert block_exists(n)
    p.communicate("")
    assert eventually(lambda: not block_exists(n)), "the watcher did not unlink the leaked block"


def test_tracker_keeps_a_block_another_live_process_uses(names):
    """gh-82300: CPython's tracker unlinks a block still in use elsewhere."""
    n = names()
    p = subprocess.Popen([sys.executable, "-c", TRACKED_CHILD, n], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "made"
    mine = sm.SharedMemory(n)  # track=True: this process registers it too
    creator = p.pid
    assert (n, creator) in _core._registrations() and (n, os.getpid()) in _core._registrations()
    p.communicate("")
    # The creator's watcher has run (its registration is gone) and kept the block.
    assert eventually(lambda: (n, creator) not in _core._registrations())
    assert block_exists(n) and mine.buf[0] == 1
    mine.close()
    mine.unlink()


def test_untracked_attach_registers_nothing(names):
    n = names()
    a = sm.SharedMemory(n, create=True, size=8, track=False)
    assert not a._mapping.tracked
    b = sm.SharedMemory(n, track=False)
    assert not b._mapping.tracked
    b.close()
    a.close()
    a.unlink()


def test_subclass_flags_create_or_attach(names):
    n = names()
    a = sm.SharedMemory(n, create=True, size=24)

    class OptionalAttach(sm.SharedMemory):
        _flags = os.O_CREAT | os.O_RDWR
    b = OptionalAttach(n)
    assert b.size == 24
    b.close()
    a.close()
    a.unlink()


def test_tracked_create_registers_and_unlink_forgets(names):
    n = names()
    a = sm.SharedMemory(n, create=True, size=8)  # track=True
    assert (n, os.getpid()) in _core._registrations()
    a.close()
    a.unlink()
    assert all(r[0] != n for r in _core._registrations())


def test_numpy_view_keeps_the_mapping(names):
    numpy = pytest.importorskip("numpy")
    a = sm.SharedMemory(names(), create=True, size=80)
    arr = numpy.frombuffer(a.buf, dtype=numpy.int64)
    arr[3] = 12345
    assert int.from_bytes(bytes(a.buf[24:32]), "little") == 12345
    with pytest.raises(BufferError):
        a.close()
    del arr
    a.close()
    a.unlink()
