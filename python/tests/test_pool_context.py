"""shmkit.get_context, shmkit.multiprocessing, shmkit.pool.Pool and
ProcessPoolExecutor on a shmkit context: what each factory makes, the pool's
API under every start method, a worker killed with SIGKILL (replaced, its
task lost, as multiprocessing's Pool does: checked against it), Ctrl-C on
pool.map, and the queues' blocks removed afterwards."""
import concurrent.futures
import faulthandler
import gc
import multiprocessing
import multiprocessing.pool
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmkit
import shmkit.multiprocessing as smp
from shmkit import context as shmkit_context
from shmkit import mpqueues, pool as shmkit_pool, sharedctypes, synchronize
from conftest import eventually

METHODS = ("fork", "spawn", "forkserver")


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _blocks_of(q):
    """/dev/shm entries of queue q (its block, doorbell, out-of-line blocks)."""
    return [n for n in os.listdir("/dev/shm") if n.startswith(q.name)]


# ------------------------------------------------------------ workers' functions

def sqr(x, wait=0.0):
    if wait:
        time.sleep(wait)
    return x * x


def mul(x, y):
    return x * y


def raising():
    raise KeyError("key")


_init_value = None


def _set_init(v):
    global _init_value
    _init_value = v


def _get_init(_=None):
    return _init_value


def _pid(_=None):
    return os.getpid()


def _report_pid_and_sleep(pids, seconds):
    # The pid goes into a shared array, then the task runs long enough to
    # be killed in the middle of it.
    with pids.get_lock():
        pids[pids[0] + 1] = os.getpid()
        pids[0] += 1
    time.sleep(seconds)
    return "finished"


# ------------------------------------------------------------ the context

@pytest.mark.parametrize("method", METHODS)
def test_context_factories_are_shmkits(method):
    ctx = shmkit.get_context(method)
    std = multiprocessing.get_context(method)
    assert isinstance(ctx, type(std)) and shmkit_context.is_shmkit_context(ctx)
    assert ctx.get_start_method() == method
    assert ctx.get_context() is ctx
    for other in METHODS:
        assert ctx.get_context(other) is shmkit.get_context(other)
    with pytest.raises(ValueError):
        ctx.get_context("nosuchmethod")
    # shmkit's objects
    assert isinstance(ctx.Lock(), synchronize.Lock)
    assert isinstance(ctx.RLock(), synchronize.RLock)
    assert isinstance(ctx.Semaphore(2), synchronize.Semaphore)
    assert isinstance(ctx.BoundedSemaphore(2), synchronize.BoundedSemaphore)
    assert isinstance(ctx.Condition(), synchronize.Condition)
    assert isinstance(ctx.Event(), synchronize.Event)
    assert isinstance(ctx.Barrier(2), synchronize.Barrier)
    assert isinstance(ctx.Value("i", 3), sharedctypes.SynchronizedBase)
    assert ctx.Value("i", 3).value == 3 and ctx.Value("i", 4, lock=False).value == 4
    assert list(ctx.Array("i", [1, 2])) == [1, 2]
    assert ctx.RawValue("d", 1.5).value == 1.5 and list(ctx.RawArray("b", 2)) == [0, 0]
    assert type(ctx.Queue(3)) is mpqueues.Queue
    assert type(ctx.JoinableQueue()) is mpqueues.JoinableQueue
    assert type(ctx.SimpleQueue()) is mpqueues.SimpleQueue
    # multiprocessing's own
    assert ctx.Process is std.Process
    a, b = ctx.Pipe()
    assert type(a).__module__ == "multiprocessing.connection"
    a.close()
    b.close()
    assert ctx.cpu_count() == std.cpu_count()
    assert ctx.TimeoutError is multiprocessing.TimeoutError


def test_get_context_none_follows_multiprocessing():
    was = multiprocessing.get_start_method(allow_none=True)
    try:
        for method in METHODS:
            multiprocessing.set_start_method(method, force=True)
            assert shmkit.get_context() is shmkit.get_context(method)
            assert smp.get_context() is shmkit.get_context(method)
            assert smp.get_start_method() == method
        smp.set_start_method("spawn", force=True)  # one setting, shared
        assert multiprocessing.get_start_method() == "spawn"
    finally:
        multiprocessing.set_start_method(was, force=True)
    with pytest.raises(ValueError):
        shmkit.get_context("nosuchmethod")


def test_multiprocessing_module_mirrors_the_stdlib():
    assert set(smp.__all__) == set(multiprocessing.__all__)
    replaced = set(smp.REPLACED)
    for name in multiprocessing.__all__:
        assert hasattr(smp, name), name
        if name not in replaced:
            assert getattr(smp, name) is getattr(multiprocessing, name), name
    assert isinstance(smp.Lock(), synchronize.Lock)
    assert type(smp.Queue()) is mpqueues.Queue
    assert smp.shared_memory is shmkit.shared_memory and smp.sharedctypes is sharedctypes
    assert smp.synchronize is synchronize
    # submodules are multiprocessing's
    assert smp.pool is multiprocessing.pool and smp.connection is multiprocessing.connection
    assert smp.TimeoutError is multiprocessing.TimeoutError
    assert smp.Process is multiprocessing.Process
    with pytest.raises(AttributeError):
        smp.no_such_name


def test_multiprocessing_stub_names_what_the_module_has():
    import ast
    path = os.path.join(os.path.dirname(shmkit.__file__), "multiprocessing.pyi")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname for a in node.names if a.asname and a.asname == a.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    names.discard("__getattr__")
    public = set(smp.__all__) | {"REPLACED", "SUBDEBUG", "SUBWARNING", "shared_memory", "sharedctypes",
                                 "synchronize"}
    assert names == public | {"__all__"}
    for n in names - {"__all__"}:
        assert hasattr(smp, n), n


# ------------------------------------------------------------ Pool

@pytest.mark.parametrize("method", METHODS)
def test_pool_api(method):
    ctx = shmkit.get_context(method)
    got = []
    with ctx.Pool(2, initializer=_set_init, initargs=(7,)) as p:
        assert type(p) is shmkit_pool.Pool
        for q in (p._inqueue, p._outqueue, p._change_notifier):
            assert type(q) is mpqueues.SimpleQueue
        names = [p._inqueue.name, p._outqueue.name, p._change_notifier.name]
        assert p.map(sqr, range(10)) == [x * x for x in range(10)]
        assert p.map(sqr, range(100), chunksize=7) == [x * x for x in range(100)]
        assert list(p.imap(sqr, range(50), chunksize=3)) == [x * x for x in range(50)]
        assert sorted(p.imap_unordered(sqr, range(50))) == [x * x for x in range(50)]
        assert p.starmap(mul, [(1, 2), (3, 4)]) == [2, 12]
        assert p.starmap_async(mul, [(5, 6)]).get(60) == [30]
        assert p.apply(sqr, (5,)) == 25
        assert p.apply(sqr, (), {"x": 3}) == 9
        r = p.apply_async(sqr, (6,), callback=got.append, error_callback=got.append)
        assert r.get(60) == 36
        e = p.apply_async(raising, error_callback=got.append)
        with pytest.raises(KeyError):
            e.get(60)
        assert got[0] == 36 and isinstance(got[1], KeyError)
        assert p.map(_get_init, range(4)) == [7] * 4  # the initializer ran in every worker
        assert p.map_async(sqr, []).get(60) == []
        with pytest.raises(multiprocessing.TimeoutError):
            p.apply_async(sqr, (1, 5.0)).get(0.05)
    p.join()
    with pytest.raises(ValueError):
        p.map(sqr, [1])
    # (got[1], the KeyError, holds the pool through its traceback's frames;
    # q is the change notifier.)
    del p, r, e, got, q
    gc.collect()
    assert eventually(lambda: not [n for n in os.listdir("/dev/shm") if n.startswith(tuple(names))]), \
        "the pool's queue blocks are still in /dev/shm"


def test_pool_close_join_and_maxtasksperchild():
    ctx = shmkit.get_context("fork")
    p = ctx.Pool(2, maxtasksperchild=2)
    first = {w.pid for w in p._pool}
    results = [p.apply_async(_pid) for _ in range(20)]
    pids = {r.get(60) for r in results}
    p.close()
    p.join()
    # Each worker ran at most 2 tasks: at least 10 distinct workers.
    assert len(pids) >= 10 and not (pids <= first)
    with pytest.raises(ValueError):
        ctx.Pool(2, maxtasksperchild=0)
    with pytest.raises(ValueError):
        ctx.Pool(0)


def test_pool_terminate_stops_a_long_map():
    p = shmkit.get_context("fork").Pool(2)
    r = p.map_async(time.sleep, [0.05] * 2000, chunksize=1)
    p.terminate()
    p.join()
    assert not r.ready()  # terminated: the result is never set
    assert all(not w.is_alive() for w in p._pool)


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("this task argument cannot be pickled")


def _len_after(path, data):
    """Waits (up to 60 s) until `path` exists, then returns len(data)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(data)


class _RecordingTaskQueue:
    """Stands in for a pool's _taskqueue in the pool's own methods (its
    task-handler thread keeps the real one): records what goes through it."""

    def __init__(self, q):
        self.q = q
        self.items = []

    def put(self, item):
        self.items.append(item)
        self.q.put(item)

    def empty(self):
        return self.q.empty()


def test_apply_async_puts_its_task_itself_and_keeps_stdlibs_promises():
    with shmkit.get_context("fork").Pool(1) as p:
        rec = p._taskqueue = _RecordingTaskQueue(p._taskqueue)
        # An idle pool: apply's task goes from this thread into the task
        # queue, not through the task-handler thread; map's go through it.
        assert p.apply(sqr, (3,)) == 9 and p.apply_async(mul, (2, 5)).get(60) == 10
        assert rec.items == []
        assert p.map(sqr, range(3)) == [0, 1, 4] and len(rec.items) == 1
        ours = []
        r = p.apply_async(sqr, (_Unpicklable(),), error_callback=ours.append)
        with pytest.raises(TypeError, match="cannot be pickled") as got:
            r.get(60)
        assert not r.successful() and ours == [got.value]
        assert p.apply(sqr, (4,)) == 16  # the pool goes on
    p.join()
    # multiprocessing's Pool reports the same error the same way.
    with multiprocessing.get_context("fork").Pool(1) as std:
        theirs = []
        r = std.apply_async(sqr, (_Unpicklable(),), error_callback=theirs.append)
        with pytest.raises(TypeError, match="cannot be pickled"):
            r.get(60)
        assert len(theirs) == 1 and type(theirs[0]) is type(ours[0])
    std.join()


def test_apply_async_never_waits_for_room_in_the_task_queue(tmp_path):
    gate = str(tmp_path / "gate")
    data = b"x" * (256 << 10)  # 64 of these are 4x the task queue's 4 MiB ring
    with shmkit.get_context("fork").Pool(1) as p:
        rec = p._taskqueue = _RecordingTaskQueue(p._taskqueue)
        results = []

        def submit():
            for _ in range(64):
                results.append(p.apply_async(_len_after, (gate, data)))

        t = threading.Thread(target=submit)
        t.start()
        t.join(60)
        # The worker waits for the gate: the ring filled, and the rest went
        # to the task-handler thread (which waits for room in its place).
        assert not t.is_alive(), "apply_async waited for room in the task queue"
        assert len(results) == 64 and rec.items
        open(gate, "w").close()
        assert [r.get(60) for r in results] == [len(data)] * 64
    p.join()


def _apply_in_a_thread(pool, *args):
    got = []
    t = threading.Thread(target=lambda: got.append(pool.apply(*args)), daemon=True)
    t.start()
    return t, got


def test_apply_takes_its_own_result_while_the_result_thread_is_busy():
    # The result-handler thread is held in a callback of another job.
    # apply() takes its result off the result queue itself, within its
    # spin (made long here, so that a slow build's round trip fits).
    entered, release = threading.Event(), threading.Event()

    def hold(_):
        entered.set()
        release.wait(60)

    with shmkit.get_context("fork").Pool(1, apply_spin=30.0) as p:
        held = p.apply_async(sqr, (2,), callback=hold)
        assert entered.wait(60)
        try:
            t, got = _apply_in_a_thread(p, sqr, (5,))
            t.join(30)
            assert got == [25], "apply() waited for the result-handler thread"
        finally:
            release.set()
        assert held.get(60) == 4
    p.join()
    # Without the spin, apply() leaves its result to that thread, as
    # multiprocessing's does, and waits for the callback to end.
    entered.clear()
    release.clear()
    with shmkit.get_context("fork").Pool(1, apply_spin=0) as p:
        p.apply_async(sqr, (2,), callback=hold)
        assert entered.wait(60)
        t, got = _apply_in_a_thread(p, sqr, (5,))
        t.join(1.0)
        assert got == []
        release.set()
        t.join(60)
        assert got == [25]
    p.join()


def test_results_apply_takes_for_other_jobs_reach_them_and_callbacks_stay_in_the_result_thread():
    entered, release = threading.Event(), threading.Event()
    ran_in = []

    def hold(v):
        ran_in.append((v, threading.current_thread()))
        entered.set()
        release.wait(60)

    def record(v):
        ran_in.append((v, threading.current_thread()))

    with shmkit.get_context("fork").Pool(1, apply_spin=30.0) as p:
        first = p.apply_async(sqr, (1,), callback=hold)
        assert entered.wait(60)
        # One worker: the results queue up in this order, ahead of apply's
        # own, while the result-handler thread is held in `hold`.
        with_cb = [p.apply_async(sqr, (i,), callback=record) for i in range(5)]
        with_err = p.apply_async(raising, error_callback=lambda e: record(type(e)))
        mapped = p.map_async(sqr, range(10), chunksize=1)
        assert eventually(lambda: p._outqueue._q.size() == 16, timeout=60)
        assert p.apply(mul, (6, 7)) == 42
        # apply() took the 16 results on its way to its own: it delivered
        # the map's (no callback) and put the others back for that thread.
        assert mapped.ready() and mapped.get(0) == [i * i for i in range(10)]
        assert not any(r.ready() for r in with_cb) and not with_err.ready()
        assert p._outqueue._q.size() == 6
        release.set()
        assert [r.get(60) for r in with_cb] == [i * i for i in range(5)]
        with pytest.raises(KeyError):
            with_err.get(60)
        assert first.get(60) == 1
        # Every callback ran in the result-handler thread.
        assert eventually(lambda: len(ran_in) == 7)
        assert [v for v, _ in ran_in] == [1, 0, 1, 4, 9, 16, KeyError], [v for v, _ in ran_in]
        assert all(t is p._result_handler for _, t in ran_in)
    p.join()


def test_apply_outlives_its_spin_while_the_worker_is_stopped():
    # The worker is stopped (SIGSTOP) with apply's task queued for it:
    # apply spins for its apply_spin, then waits as multiprocessing's does;
    # after SIGCONT the result-handler thread delivers the result.
    with shmkit.get_context("fork").Pool(1, apply_spin=0.2) as p:
        (worker,) = p._pool
        assert p.apply(sqr, (2,)) == 4
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            t, got = _apply_in_a_thread(p, sqr, (3,))
            t.join(1.0)
            assert got == [] and t.is_alive()
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        t.join(60)
        assert got == [9]
        assert p.apply(sqr, (4,)) == 16
    p.join()


def test_pool_apply_spin_must_be_a_duration():
    with pytest.raises(ValueError, match="apply_spin"):
        shmkit.get_context("fork").Pool(1, apply_spin=-1)
    with pytest.raises(ValueError, match="apply_spin"):
        shmkit.get_context("fork").Pool(1, apply_spin=float("nan"))


def test_pool_given_a_stdlib_context_uses_shmkits():
    with shmkit_pool.Pool(1, context=multiprocessing.get_context("spawn")) as p:
        assert p._ctx is shmkit.get_context("spawn")
        assert type(p._inqueue) is mpqueues.SimpleQueue
        assert p.apply(sqr, (4,)) == 16
    p.join()


def _killed_worker_outcome(make_pool):
    """Runs a task, kills its worker with SIGKILL mid-task, and says what
    happened: (task result or 'lost', a new worker replaced it, the pool
    still works)."""
    pids = sharedctypes.Array("i", 4)  # (picklable to a running worker; stdlib's is not)
    p = make_pool()
    try:
        before = {w.pid for w in p._pool}
        r = p.apply_async(_report_pid_and_sleep, (pids, 30.0))
        assert eventually(lambda: pids[0] == 1, timeout=60)
        victim = pids[1]
        assert victim in before
        os.kill(victim, signal.SIGKILL)
        replaced = eventually(lambda: len(p._pool) == 2 and victim not in {w.pid for w in p._pool}
                              and all(w.pid for w in p._pool), timeout=60)
        try:
            outcome = r.get(timeout=1.0)
        except multiprocessing.TimeoutError:
            outcome = "lost"
        still_works = p.map(sqr, range(20)) == [x * x for x in range(20)]
        return outcome, replaced, still_works
    finally:
        p.terminate()
        p.join()


def test_a_killed_worker_is_replaced_and_its_task_lost_as_stdlib():
    std = _killed_worker_outcome(lambda: multiprocessing.get_context("fork").Pool(2))
    ours = _killed_worker_outcome(lambda: shmkit.get_context("fork").Pool(2))
    assert std == ("lost", True, True)
    assert ours == std


def test_an_idle_worker_killed_in_get_leaves_the_queue_working():
    # Workers blocked in the task queue's get() are killed: the queue is
    # not wedged, the replacements take every later task.
    with shmkit.get_context("fork").Pool(3) as p:
        assert p.map(sqr, range(6)) == [x * x for x in range(6)]
        for w in list(p._pool):
            os.kill(w.pid, signal.SIGKILL)
        assert eventually(lambda: len(p._pool) == 3 and all(w.is_alive() for w in p._pool), timeout=60)
        assert p.map(sqr, range(200), chunksize=1) == [x * x for x in range(200)]
        assert p._inqueue._q.losses == {"producer_claims_skipped": 0, "consumer_claims_released": 0,
                                        "corrupt_records": 0}
    p.join()


_CTRL_C_SCRIPT = textwrap.dedent("""
    import faulthandler, os, signal, sys, time
    import shmkit

    # (SIGUSR1: every thread's stack on stderr, for a run that hangs.)
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def slow(x):
        time.sleep(60)
        return x

    if __name__ == "__main__":
        ctx = shmkit.get_context(sys.argv[1])
        with ctx.Pool(2) as p:
            names = [p._inqueue.name, p._outqueue.name, p._change_notifier.name]
            print(" ".join(names), flush=True)
            try:
                p.map(slow, range(4))
            except KeyboardInterrupt:
                print("KeyboardInterrupt", flush=True)
                raise
""")


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("group", [True, False], ids=["group", "parent-only"])
def test_ctrl_c_interrupts_pool_map(method, group, tmp_path):
    # A terminal's Ctrl-C signals the whole foreground process group (the
    # workers too); `kill -INT` only the parent. Either way map() raises
    # KeyboardInterrupt, the pool is torn down and its blocks removed.
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        names = proc.stdout.readline().split()
        assert len(names) == 3, proc.stderr.read()
        time.sleep(0.5)  # (let map() start waiting; not an assertion)
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGUSR1)  # its threads' stacks, then the failure
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail("no exit within 120 s of SIGINT; stdout %r; stderr:\n%s" % (out, err[-20000:]))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in out + err, err
    assert eventually(lambda: not [n for n in os.listdir("/dev/shm") if n.startswith(tuple(names))],
                      timeout=30), "blocks left: %s" % names


def _inverse(x):
    return 1 / x


def _numbers_then_raising(n):
    yield from range(1, n)
    raise KeyError("from the iterable")


def test_pool_results_are_multiprocessings_and_give_what_its_give():
    # The results wait in slices but are multiprocessing's classes (by
    # subclass) and give what multiprocessing's pool gives, chunked imap
    # included (shmkit runs it as a chunksize-1 imap of the chunks).
    mp_pool = multiprocessing.get_context("fork").Pool(2)
    with shmkit.get_context("fork").Pool(2) as p, mp_pool:
        assert isinstance(p.apply_async(sqr, (3,)), multiprocessing.pool.ApplyResult)
        assert isinstance(p.map_async(sqr, [3]), multiprocessing.pool.MapResult)
        assert isinstance(p.imap(sqr, [3]), multiprocessing.pool.IMapIterator)
        assert isinstance(p.imap_unordered(sqr, [3]), multiprocessing.pool.IMapUnorderedIterator)
        assert p.map_async(sqr, range(5)).get(60) == [x * x for x in range(5)]
        r = p.apply_async(sqr, (4,))
        r.wait()
        assert r.ready() and r.get() == 16
        for chunksize in (1, 3, 7, 100):
            assert list(p.imap(sqr, range(50), chunksize)) == list(mp_pool.imap(sqr, range(50), chunksize))
            assert sorted(p.imap_unordered(sqr, range(50), chunksize)) == [x * x for x in range(50)]
            # An error in a task reaches the iterator at that chunk's place.
            expect, got = mp_pool.imap(_inverse, range(-3, 4), chunksize), p.imap(_inverse, range(-3, 4), chunksize)
            while True:
                try:
                    want = next(expect)
                except ZeroDivisionError:
                    with pytest.raises(ZeroDivisionError):
                        next(got)
                    break
                assert next(got) == want
            # An error in the iterable ends the items it reached.
            got_items = []
            with pytest.raises(KeyError):
                for x in p.imap(sqr, _numbers_then_raising(9), chunksize):
                    got_items.append(x)
            want_items = []
            with pytest.raises(KeyError):
                for x in mp_pool.imap(sqr, _numbers_then_raising(9), chunksize):
                    want_items.append(x)
            assert got_items == want_items
        with pytest.raises(ValueError):
            p.imap(sqr, range(3), 0)
        for bad in (float("nan"), 2.5):  # (fail when iterated, as multiprocessing's)
            with pytest.raises(ValueError):
                list(mp_pool.imap(sqr, range(3), bad))
            with pytest.raises(ValueError):
                list(p.imap(sqr, range(3), bad))
        with pytest.raises(TypeError):
            p.imap(sqr, range(3), "2")
        with pytest.raises(multiprocessing.TimeoutError):
            p.imap(time.sleep, [0.5]).next(0.01)


_LOST_SIGINT_SCRIPT = textwrap.dedent("""
    import multiprocessing, signal, sys, threading, time
    import shmkit

    def slow(x, y=0):
        time.sleep(60)
        return x

    def sigint_to_this_thread():
        # Delivered to this thread, SIGINT's C handler runs here: the main
        # thread's lock wait is not interrupted, as when the signal lands
        # between its last look for signals and the wait.
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    WAITS = {
        "map": lambda p: p.map(slow, [1]),
        "starmap": lambda p: p.starmap(slow, [(1, 2)]),
        "apply": lambda p: p.apply(slow, (1,)),
        "apply_async.get": lambda p: p.apply_async(slow, (1,)).get(),
        "apply_async.wait": lambda p: p.apply_async(slow, (1,)).wait(),
        "map_async.get": lambda p: p.map_async(slow, [1, 2]).get(),
        "starmap_async.wait": lambda p: p.starmap_async(slow, [(1, 2)]).wait(),
        "imap": lambda p: next(p.imap(slow, [1])),
        "imap.chunked": lambda p: list(p.imap(slow, [1, 2, 3], 2)),
        "imap_unordered.next": lambda p: p.imap_unordered(slow, [1]).next(),
        "imap_unordered.chunked": lambda p: list(p.imap_unordered(slow, [1, 2, 3], 2)),
    }

    if __name__ == "__main__":
        ctx = (shmkit if sys.argv[1] == "shmkit" else multiprocessing).get_context("fork")
        with ctx.Pool(1) as p:
            threading.Thread(target=sigint_to_this_thread, daemon=True).start()
            try:
                WAITS[sys.argv[2]](p)
            except KeyboardInterrupt:
                print("KeyboardInterrupt", flush=True)
                raise
""")
_LOST_SIGINT_WAITS = ["map", "starmap", "apply", "apply_async.get", "apply_async.wait", "map_async.get",
                      "starmap_async.wait", "imap", "imap.chunked", "imap_unordered.next",
                      "imap_unordered.chunked"]


def _run_lost_sigint(script, which, wait, seconds):
    proc = subprocess.Popen([sys.executable, str(script), which, wait], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        return proc.communicate(timeout=seconds)[0]
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


@pytest.mark.parametrize("wait", _LOST_SIGINT_WAITS)
def test_every_pool_wait_raises_a_sigint_its_lock_wait_missed(tmp_path, wait):
    # Every wait for a result (the blocking calls, the *_async results'
    # get() and wait(), imap's iterators) waits in slices: the pending
    # SIGINT is raised within one.
    script = tmp_path / "lost_sigint.py"
    script.write_text(_LOST_SIGINT_SCRIPT)
    assert _run_lost_sigint(script, "shmkit", wait, 30) == "KeyboardInterrupt\n"


@pytest.mark.parametrize("wait", ["map", "imap.chunked"])
def test_multiprocessing_pool_misses_that_sigint(tmp_path, wait):
    # The reference: multiprocessing's waits have no timeout and miss it.
    script = tmp_path / "lost_sigint.py"
    script.write_text(_LOST_SIGINT_SCRIPT)
    assert _run_lost_sigint(script, "multiprocessing", wait, 5) is None


# ------------------------------------------------------------ ProcessPoolExecutor

@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor_on_a_shmkit_context(method):
    ctx = shmkit.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(sqr, range(20))) == [x * x for x in range(20)]
        assert ex.submit(mul, 6, 7).result(60) == 42
        with pytest.raises(KeyError):
            ex.submit(raising).result(60)
        assert type(ex._result_queue) is mpqueues.SimpleQueue
        assert type(ex._call_queue._sem) is synchronize.BoundedSemaphore
        assert ex._call_queue.qsize() >= 0 and not ex._call_queue.full()
        # many small tasks, chunked
        assert sum(ex.map(sqr, range(500), chunksize=10)) == sum(x * x for x in range(500))


def test_process_pool_executor_reports_a_killed_worker():
    ctx = shmkit.get_context("fork")
    pids = sharedctypes.Array("i", 4)
    ex = concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx)
    try:
        f = ex.submit(_report_pid_and_sleep, pids, 30.0)
        assert eventually(lambda: pids[0] == 1, timeout=60)
        os.kill(pids[1], signal.SIGKILL)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            f.result(60)
    finally:
        ex.shutdown(wait=True)
