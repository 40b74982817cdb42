"""shmkit.synchronize and shmkit._sync: behaviour, owner death, pickling to
spawned/forkserver/unrelated processes, Ctrl-C, leaks, bad input."""
import faulthandler
import gc
import mmap
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from shmkit import _sync
from shmkit import synchronize as S
from conftest import block_exists, eventually


@pytest.fixture(autouse=True)
def watchdog():
    """A hung test dumps every thread's stack and exits the run."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def run_python(code, timeout=60, **kw):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


# ------------------------------------------------------------------ basics

def test_lock_follows_multiprocessing():
    lock = S.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.01) is False
    assert lock.acquire(block=True, timeout=-1) is False  # negative: 0, as SemLock
    assert lock.release() is None
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()


def test_lock_is_released_by_another_thread():
    lock = S.Lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join(10)
    assert lock.acquire(timeout=5)


def test_rlock_release_by_non_owner_raises_as_cpython():
    lock = S.RLock()
    assert lock.acquire() and lock.acquire()
    assert lock._count() == 2
    errors = []

    def other():
        try:
            lock.release()
        except AssertionError as e:
            errors.append(e)
        errors.append(lock.acquire(timeout=0.05))

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert isinstance(errors[0], AssertionError) and errors[1] is False
    lock.release()
    lock.release()
    with pytest.raises(AssertionError):
        lock.release()


def test_bounded_semaphore_over_release_raises():
    sem = S.BoundedSemaphore(2)
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(timeout=0.01) is False
    sem.release()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert sem.get_value() == 2
    s = S.Semaphore(0)
    s.release()
    s.release()
    assert s.get_value() == 2


def test_condition_wait_and_notify_between_processes():
    cond = S.Condition()
    flag = S.Event()
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_notify_after_event, args=(cond, flag))
    p.start()
    with cond:
        flag.set()
        assert cond.wait(timeout=30)
    p.join(30)
    assert p.exitcode == 0


def _notify_after_event(cond, flag):
    flag.wait(30)
    with cond:
        cond.notify()


def test_barrier_broken_and_abort():
    b = S.Barrier(2, timeout=0.05)
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    assert b.broken
    b.reset()
    assert not b.broken and b.parties == 2 and b.n_waiting == 0
    b.abort()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()


# ------------------------------------------------------------- owner death

def _hold_robust_then_block(lock, held):
    lock.acquire()
    held.set()
    time.sleep(600)


def _hold_then_block(lock, held):
    lock.acquire()
    held.set()
    time.sleep(600)


def test_robust_lock_killed_holder_next_acquirer_is_told_within_1s():
    lock = S.RobustLock()
    held = S.Event()
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_hold_robust_then_block, args=(lock, held))
    p.start()
    assert held.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    # Told within 1 s: acquire(timeout=1) must raise, not time out.
    with pytest.raises(S.OwnerDiedError):
        lock.acquire(timeout=1.0)
    assert lock._state() == "owner_died"
    lock.make_consistent()
    lock.release()
    assert lock.acquire(timeout=1.0) is True
    lock.release()


def test_robust_lock_released_without_repair_is_not_recoverable():
    lock = S.RobustLock()
    held = S.Event()
    p = multiprocessing.get_context("fork").Process(target=_hold_robust_then_block,
                                                    args=(lock, held))
    p.start()
    assert held.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with pytest.raises(S.OwnerDiedError):
        lock.acquire(timeout=1.0)
    lock.release()  # without make_consistent()
    for _ in range(2):
        with pytest.raises(S.NotRecoverableError):
            lock.acquire(timeout=1.0)


def test_robust_lock_release_by_non_owner_raises():
    lock = S.RobustLock()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        lock.make_consistent()


def test_cpython_lock_deadlocks_when_its_holder_is_killed():
    """The contrast: CPython's Lock stays held forever (shown with a timeout)."""
    lock = multiprocessing.get_context("fork").Lock()
    held = multiprocessing.get_context("fork").Event()
    p = multiprocessing.get_context("fork").Process(target=_hold_then_block, args=(lock, held))
    p.start()
    assert held.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert lock.acquire(timeout=1.0) is False


# ------------------------------------------------------------------ pickling

def _use_everything(lock, rlock, sem, event, cond, barrier, robust, done):
    with lock, rlock, robust:
        sem.release()
    with cond:
        cond.notify_all()
    barrier.wait(30)
    event.set()
    done.release()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pickled_to_spawned_and_forkserver_children(method):
    ctx = multiprocessing.get_context(method)
    objs = (S.Lock(), S.RLock(), S.Semaphore(0), S.Event(), S.Condition(), S.Barrier(2),
            S.RobustLock(), S.Semaphore(0))
    p = ctx.Process(target=_use_everything, args=objs)
    p.start()
    lock, rlock, sem, event, cond, barrier, robust, done = objs
    assert sem.acquire(timeout=30)
    barrier.wait(30)
    assert event.wait(30)
    assert done.acquire(timeout=30)
    p.join(30)
    assert p.exitcode == 0
    assert lock.acquire(False) and robust.acquire(False)


def test_pickled_to_an_unrelated_process():
    event = S.Event()
    lock = S.Lock()
    lock.acquire()
    blob = pickle.dumps((event, lock)).hex()
    r = run_python(f"""
        import pickle
        event, lock = pickle.loads(bytes.fromhex({blob!r}))
        lock.release()
        event.set()
        print(type(event).__name__, type(lock).__name__)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Event", "Lock"]
    assert event.is_set() and lock.acquire(False)


def test_unpickling_after_the_creator_is_gone_raises_file_not_found():
    lock = S.Lock()
    blob = pickle.dumps(lock)
    del lock
    gc.collect()
    with pytest.raises(FileNotFoundError):
        pickle.loads(blob)


# --------------------------------------------------------------------- Ctrl-C

@pytest.mark.parametrize("what", ["lock", "rlock", "robust", "semaphore", "event", "condition",
                                  "atomic", "spsc_get", "mpmc_put", "ring_read"])
def test_ctrl_c_interrupts_a_blocked_wait(what):
    r = run_python(f"""
        import mmap, os, signal, threading, time
        from shmkit import synchronize as S, _sync
        what = {what!r}
        if what in ("lock", "rlock", "robust"):
            obj = {{"lock": S.Lock, "rlock": S.RLock, "robust": S.RobustLock}}[what]()
            held = threading.Event()
            def holder():
                obj.acquire(); held.set(); time.sleep(600)
            threading.Thread(target=holder, daemon=True).start(); held.wait()
            call = obj.acquire
        elif what == "semaphore":
            call = S.Semaphore(0).acquire
        elif what == "event":
            call = S.Event().wait
        elif what == "condition":
            c = S.Condition(); c.acquire(); call = c.wait
        elif what == "atomic":
            m = mmap.mmap(-1, 4096); a = _sync.AtomicRef(m, 0, "q"); call = lambda: a.wait(0)
        else:
            from shmkit import queues as Q
            if what == "spsc_get":
                q = Q.SpscQueue(capacity=2); call = q.get
            elif what == "mpmc_put":
                q = Q.MpmcQueue(capacity=2); q.put(1); q.put(2); call = lambda: q.put(3)
            else:
                r = Q.BroadcastRing(capacity=2); call = r.reader().read
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            call()
            print("returned")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    assert r.stdout.strip() == "interrupted", (r.stdout, r.stderr)


# ---------------------------------------------------------------------- leaks

def test_no_block_left_in_dev_shm():
    objs = [S.Lock(), S.RLock(), S.RobustLock(), S.Semaphore(), S.BoundedSemaphore(), S.Event(),
            S.Condition(), S.Barrier(3)]
    names = [o.name for o in objs if hasattr(o, "name")]
    assert names and all(block_exists(n) for n in names)
    del objs
    gc.collect()
    assert [n for n in names if block_exists(n)] == []


def test_a_child_process_does_not_unlink_its_parents_blocks():
    lock = S.Lock()
    p = multiprocessing.get_context("fork").Process(target=lambda: None)
    p.start()
    p.join(30)
    assert block_exists(lock.name)


def test_blocks_of_a_killed_creator_are_removed_by_the_tracker():
    r = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from shmkit import synchronize as S
        objs = [S.Lock(), S.RLock(), S.Event()]
        print(" ".join(o.name for o in objs), flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    names = r.stdout.readline().split()
    assert len(names) == 3 and all(block_exists(n) for n in names)
    r.kill()
    r.wait(30)
    assert eventually(lambda: not any(block_exists(n) for n in names), timeout=20)


# ------------------------------------------------------------------ atomics

def _add_many(name, n):
    blk = _sync.TypedBlock.attach(name, 1024 + 77, None, "test.counter", 8, 8)
    a = _sync.AtomicRef(blk, blk.payload_offset, "q")
    for _ in range(n):
        a.fetch_add(1)
    del a


def test_atomic_fetch_add_loses_no_update_across_processes(names):
    name = names("atomic")
    blk = _sync.TypedBlock.create(name, 1024 + 77, None, "test.counter", 8, 8, 1, 0, 8)
    a = _sync.AtomicRef(blk, blk.payload_offset, "q")
    ctx = multiprocessing.get_context("fork")
    ps = [ctx.Process(target=_add_many, args=(name, 20000)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
    assert a.load() == 40000
    assert a.compare_exchange(40000, 7) == (True, 40000)
    assert a.compare_exchange(40000, 9) == (False, 7)
    assert a.exchange(1) == 7 and a.fetch_sub(1) == 1 and a.load() == 0
    assert a.fetch_add(-1) == 0 and a.load() == -1
    blk.unlink()


def test_atomic_wait_is_woken_by_notify():
    m = mmap.mmap(-1, 4096)
    for code, off in (("i", 0), ("q", 8), ("H", 18), ("B", 21)):
        a = _sync.AtomicRef(m, off, code)
        assert a.wait(0, timeout=0.01) is False
        t = threading.Timer(0.05, lambda a=a: (a.store(3), a.notify_all()))
        t.start()
        assert a.wait(0, timeout=30) is True
        t.join()
        assert a.load() == 3


# ---------------------------------------------------------------- bad input

def test_bad_input_raises_clear_exceptions(tmp_path):
    m = mmap.mmap(-1, 64)
    with pytest.raises(BufferError):
        _sync.Mutex(b"read-only bytes", 0)
    with pytest.raises(TypeError):
        _sync.Mutex(object(), 0)
    with pytest.raises(ValueError):
        _sync.Mutex(bytearray(2), 0)
    with pytest.raises(ValueError):
        _sync.Mutex(m, -4)
    with pytest.raises(ValueError):
        _sync.Mutex(m, 62)
    with pytest.raises(TypeError):
        _sync.Mutex(m, "0")
    with pytest.raises(ValueError):
        _sync.RobustMutex(m, 4)  # misaligned
    with pytest.raises(ValueError):
        _sync.AtomicRef(m, 0, "d")
    with pytest.raises(ValueError):
        _sync.AtomicRef(m, 4, "q")
    a = _sync.AtomicRef(m, 0, "B")
    with pytest.raises(OverflowError):
        a.store(256)
    with pytest.raises(TypeError):
        a.store(1.5)
    lock = S.Lock()
    with pytest.raises(TypeError):
        lock.acquire(timeout="soon")
    with pytest.raises(TypeError):
        lock.acquire(True, 1, 2)
    with pytest.raises(TypeError):
        lock.acquire(wait=True)
    with pytest.raises(ValueError):
        S.Semaphore(-1)
    with pytest.raises(TypeError):
        S.Condition(threading.Lock())
    with pytest.raises(TypeError):
        S.Lock.attach(42)
    with pytest.raises(FileNotFoundError):
        S.Lock.attach("shmkit_no_such_block_%d" % os.getpid())
    with pytest.raises(ValueError):
        S.RLock.attach(lock.name)  # a Mutex block is not a RecursiveMutex
    with pytest.raises(ValueError):
        S.Lock.attach("bad/name")


def test_a_foreign_or_garbage_block_is_refused(names):
    for content in (b"", os.urandom(4096), b"SHMKIT\x00\x01" + b"\xff" * 4088):
        name = names("garbage")
        with open("/dev/shm/" + name, "wb") as f:
            f.write(content)
        try:
            with pytest.raises(ValueError):
                S.Lock.attach(name)
        finally:
            os.unlink("/dev/shm/" + name)


def test_a_view_keeps_its_buffer_exported():
    m = mmap.mmap(-1, 4096)
    lock = _sync.Mutex._over(m, 0)
    with pytest.raises(BufferError):
        m.close()
    del lock
    m.close()
