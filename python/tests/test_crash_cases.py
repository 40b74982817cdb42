"""Crashes of the extension, each reproduced in its own interpreter (a
SIGSEGV is a failed test, not a dead pytest):

* numpy over ``shm.buf`` (and over a TypedBlock), then close(): the array
  must stay readable (the mapping waits for it), never SIGSEGV.
* ``maxbytes=sys.maxsize`` for a bytes item: refused (it overflowed
  ``maxbytes + 4`` and put() copied a whole bytes object into a 4 KiB item).
* A scalar typecode whose size disagrees with item_size: refused (put_many
  wrote the typecode's size into each smaller item).
* Ctrl-C: a process in Condition.wait whose lock holder was SIGKILLed or
  SIGSTOPped raises KeyboardInterrupt on SIGINT (it re-took the lock untimed
  and never looked at signals).
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import shmkit._core as _core
import shmkit._sync as _sync

WATCHDOG = float(os.environ.get("SHMKIT_TEST_WATCHDOG", "60"))


def child_env():
    """This interpreter's sys.path for a child: an interpreter that borrows
    Debian's packages (run_pytest.py) has numpy only through it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def run_child(code, *args, timeout=WATCHDOG):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)] + list(args), capture_output=True,
                          text=True, timeout=timeout, env=child_env())


def test_numpy_array_over_buf_outlives_close(names):
    pytest.importorskip("numpy")
    r = run_child("""
        import sys
        import numpy as np
        from shmkit.shared_memory import SharedMemory
        shm = SharedMemory(sys.argv[1], create=True, size=4096)
        a = np.ndarray((512,), dtype=np.int64, buffer=shm.buf)
        a[:] = 7
        shm.close()                 # returns: numpy holds no export
        print("sum", int(a.sum()))  # the mapping waited for the array
        a[3] = 8
        print("sum", int(a.sum()))
        shm.unlink()
        del a
        # A live memoryview slice is an export: close() refuses, as CPython's.
        shm = SharedMemory(sys.argv[1], create=True, size=64)
        v = shm.buf[:8]
        try:
            shm.close()
        except BufferError:
            print("refused")
        v.release()
        shm.close()
        shm.unlink()
    """, names("np"))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.split("\n")[:3] == ["sum 3584", "sum 3585", "refused"], r.stdout


def test_numpy_array_over_typed_block_outlives_close(names):
    pytest.importorskip("numpy")
    r = run_child("""
        import sys
        import numpy as np
        import shmkit._sync as _sync
        b = _sync.TypedBlock.create(sys.argv[1], _sync.KIND_SYNC, None, "pyt/np", 8, 8, 1, 0, 8)
        a = np.ndarray((b.size // 8,), dtype=np.int64, buffer=memoryview(b))
        a[-1] = 5
        b.close()
        print("last", int(a[-1]))
        b.unlink()
    """, names("tb"))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "last 5" in r.stdout


@pytest.mark.parametrize("ctor", [
    "_queues._Queue('spsc', N, True, 4, 8, 4, None, 'pyt/b', 'y', sys.maxsize)",
    "_queues._Queue('mpmc', N, True, 4, 8, 4, None, 'pyt/b', 'y', sys.maxsize)",
    "_queues._SeqLock(N, True, 8, 4, None, 'pyt/b', 'y', sys.maxsize)",
    "_queues._BroadcastRing(N, True, 4, 8, 4, None, 'pyt/b', 'y', sys.maxsize)",
    "_queues._Queue('spsc', N, True, 4, 2, 2, None, 'pyt/b', 'y', 0)",
])
def test_bytes_maxbytes_overflow_is_refused(names, ctor):
    r = run_child("""
        import sys
        import shmkit._queues as _queues
        N = sys.argv[1]
        try:
            q = %s
        except ValueError as e:
            print("refused", e)
            sys.exit(0)
        try:
            (q.put if hasattr(q, "put") else q.store if hasattr(q, "store") else q.push)(b"x" * 100000)
        finally:
            q.unlink()
    """ % ctor, names("mb"))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "refused" in r.stdout


@pytest.mark.parametrize("code,size", [("d", 1), ("q", 4), ("i", 16), ("?", 8), ("b", 2), ("f", 8)])
def test_scalar_typecode_must_match_item_size(names, code, size):
    r = run_child("""
        import sys
        import shmkit._queues as _queues
        code, size = sys.argv[2], int(sys.argv[3])
        for make in (lambda: _queues._Queue("spsc", sys.argv[1], True, 4, size, 1, code, None, "s"),
                     lambda: _queues._SeqLock(sys.argv[1], True, size, 1, code, None, "s")):
            try:
                q = make()
            except ValueError as e:
                print("refused", e)
                continue
            try:
                if hasattr(q, "put_many"):
                    q.put_many([1] * 3)
                else:
                    q.store(1)
            finally:
                q.unlink()
    """, names("tc"), code, str(size))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.count("refused") == 2, r.stdout


# ------------------------------------------------------------------ Ctrl-C

def _futex_sleeping(pid):
    try:
        with open("/proc/%d/wchan" % pid) as f:
            wchan = f.read()
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state == "S" and "futex" in wchan


WAITER = """
import sys
import shmkit._core as _core, shmkit._sync as _sync
m = _core.attach(sys.argv[1], False)
lock = getattr(_sync, sys.argv[2])(m, 128)
cond = _sync.Condition(m, 0)
lock.acquire()
print("waiting", flush=True)
try:
    cond.wait(lock)
    print("returned", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""

HOLDER = """
import sys, time
import shmkit._core as _core, shmkit._sync as _sync
m = _core.attach(sys.argv[1], False)
lock = getattr(_sync, sys.argv[2])(m, 128)
cond = _sync.Condition(m, 0)
lock.acquire()
cond.notify()
print("holding", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("fate", ["SIGKILL", "SIGSTOP"])
@pytest.mark.parametrize("lock", ["Mutex", "RecursiveMutex", "RobustMutex"])
def test_ctrl_c_interrupts_condition_wait_when_the_holder_is_gone(names, lock, fate):
    name = names("cc")
    m = _core.create(name, 4096, False)
    procs = []
    try:
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, name, lock], stdout=subprocess.PIPE, text=True)
        procs.append(waiter)
        assert waiter.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + WATCHDOG
        while not _futex_sleeping(waiter.pid):  # inside cond.wait, the lock released
            assert time.monotonic() < deadline, "the waiter never slept in wait()"
            time.sleep(0.005)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, name, lock], stdout=subprocess.PIPE, text=True)
        procs.append(holder)
        assert holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, getattr(signal, fate))
        if fate == "SIGKILL":
            holder.wait(WATCHDOG)
        os.kill(waiter.pid, signal.SIGINT)
        try:
            out, _ = waiter.communicate(timeout=WATCHDOG)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGINT did not interrupt Condition.wait (%s holder %s)" % (lock, fate))
        if lock == "RobustMutex" and fate == "SIGKILL":
            # The death is seen by the re-acquire: OwnerDiedError, or the
            # interrupt if it came first (uncaught while the OwnerDiedError
            # unwinds: the interpreter then exits by SIGINT); never a hang.
            assert waiter.returncode in (0, 1, -signal.SIGINT), (waiter.returncode, out)
        else:
            assert "KeyboardInterrupt" in out, (waiter.returncode, out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait()
        m.close()
        _core.unlink(name)
