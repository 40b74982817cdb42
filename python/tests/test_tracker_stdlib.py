"""shmkit's tracker meets CPython's own multiprocessing.shared_memory.

An attach registers use, never ownership: a block that the standard library
created (in a process that never imports shmkit) and that a shmkit process
attaches with the default track=True must survive that process's clean exit
and its watcher's sweep; the stdlib creator's own unlink() must then
succeed. Before, the watcher unlinked it under its creator (gh-82300, the
bug shmkit's tracker exists to fix), and the creator's unlink() raised
FileNotFoundError.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from shmkit import _core

from conftest import block_exists, eventually

# The creator: /usr/bin/python3 (or this interpreter) with the stdlib only.
STDLIB_CREATOR = textwrap.dedent("""
    import os, sys
    from multiprocessing import shared_memory
    kind, name = sys.argv[1], sys.argv[2]
    if kind == "shm":
        shm = shared_memory.SharedMemory(name=name, create=True, size=4096)
        shm.buf[:6] = b"stdlib"
        holder = shm
    else:
        sl = shared_memory.ShareableList([1, "stdlib", b"x"], name=name)
        holder = sl.shm
    assert "shmkit" not in sys.modules
    print("made", flush=True)
    sys.stdin.readline()          # while the shmkit process attaches and exits
    if kind == "shm":
        seen = bytes(shm.buf[6:12])
    else:
        seen = (sl[0], sl[1])
    holder.close()
    try:
        holder.unlink()           # the creator's own unlink
    except FileNotFoundError:
        print("FAIL unlink raised FileNotFoundError", flush=True)
        sys.exit(3)
    print("unlinked", repr(seen), flush=True)
""")

# The shmkit process: attaches with the defaults (track=True), writes, and
# exits cleanly (close, no unlink).
SHMKIT_ATTACHER = textwrap.dedent("""
    import os, sys
    from shmkit import shared_memory as sm, _core
    kind, name = sys.argv[1], sys.argv[2]
    if kind == "shm":
        m = sm.SharedMemory(name)
        assert bytes(m.buf[:6]) == b"stdlib"
        m.buf[6:12] = b"shmkit"
        tracked = m._mapping.tracked
        m.close()
    else:
        sl = sm.ShareableList(name=name)
        assert sl[1] == "stdlib", list(sl)
        sl[0] = 42
        tracked = sl.shm._mapping.tracked
        sl.shm.close()
    assert tracked and (name, os.getpid()) in _core._registrations(), "not tracked"
    print("attached", flush=True)
""")


def _stdlib_python():
    return os.environ.get("SHMKIT_PY_DEBIAN_PYTHON") or "/usr/bin/python3"


def _stdlib_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the creator uses the stdlib module only
    return env


@pytest.mark.parametrize("kind", ["shm", "list"])
def test_stdlib_creators_block_survives_a_tracked_shmkit_attacher(names, kind):
    n = names()
    creator = subprocess.Popen([_stdlib_python(), "-c", STDLIB_CREATOR, kind, n],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=_stdlib_env())
    try:
        assert creator.stdout.readline().strip() == "made"
        assert block_exists(n)
        attacher = subprocess.run([sys.executable, "-c", SHMKIT_ATTACHER, kind, n],
                                  capture_output=True, text=True, timeout=60)
        assert attacher.returncode == 0, attacher.stderr
        assert attacher.stdout.strip() == "attached"
        # The attacher's watcher has swept (its registration is gone; the
        # sweep drops it and unlinks under one lock).
        assert eventually(lambda: all(r[0] != n for r in _core._registrations()))
        assert block_exists(n), "shmkit's watcher unlinked a block CPython created and still uses"
        out, _ = creator.communicate("go\n", timeout=60)
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait()
    assert creator.returncode == 0, out
    expected = "b'shmkit'" if kind == "shm" else "(42, 'stdlib')"
    assert out.strip() == "unlinked " + expected


def test_killed_shmkit_attacher_leaves_the_stdlib_block(names):
    """The same when the attacher is killed (SIGKILL): its watcher drops the
    registration and keeps the block."""
    n = names()
    creator = subprocess.Popen([_stdlib_python(), "-c", STDLIB_CREATOR, "shm", n],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=_stdlib_env())
    try:
        assert creator.stdout.readline().strip() == "made"
        # A shmkit attacher killed by SIGKILL: its watcher sweeps as well.
        code = SHMKIT_ATTACHER + "\nos.kill(os.getpid(), 9)\n"
        attacher = subprocess.run([sys.executable, "-c", code, "shm", n], capture_output=True,
                                  text=True, timeout=60)
        assert attacher.returncode == -9, attacher.stderr
        assert eventually(lambda: all(r[0] != n for r in _core._registrations()))
        assert block_exists(n)
        out, _ = creator.communicate("go\n", timeout=60)
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait()
    assert creator.returncode == 0, out


# A shmkit process creates (default track=True) and dies without unlinking.
SHMKIT_CREATOR = textwrap.dedent("""
    import os, sys
    from shmkit import shared_memory as sm, _core
    kind, name = sys.argv[1], sys.argv[2]
    if kind == "shm":
        m = sm.SharedMemory(name, create=True, size=64)
    else:
        sl = sm.ShareableList([1, "two", b"3"], name=name)
    assert (name, os.getpid()) in _core._registrations(), "not tracked"
    print("made", flush=True)
    os._exit(0)   # no close, no unlink: a crash, for the tracker
""")


@pytest.mark.parametrize("kind", ["shm", "list"])
def test_shmkit_creators_block_is_still_removed_after_it_dies(names, kind):
    """The other half of the rule: what a shmkit process created (a block or
    a ShareableList, with the defaults) is still unlinked by its watcher
    once that process dies without unlinking it."""
    n = names()
    made = subprocess.run([sys.executable, "-c", SHMKIT_CREATOR, kind, n], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0 and made.stdout.strip() == "made", made.stderr
    assert eventually(lambda: not block_exists(n)), "a dead shmkit creator's block leaked"
