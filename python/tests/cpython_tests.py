"""CPython's own multiprocessing tests with shmkit in place of the stdlib
modules (ctest python_cpython_tests; label python).

The test classes come from ``test._test_multiprocessing`` of the interpreter
that runs this script (Debian: libpython3.11-testsuite). They are combined,
as CPython's install_tests_in_module_dict does, with the processes mixin,
whose Value/Array/RawValue/RawArray (and Lock/RLock/... when
shmkit.synchronize exists) are shmkit's; the test module's own
``shared_memory``, ``Value`` and ``copy`` globals and
``multiprocessing.shared_memory`` are replaced by shmkit's, so code that
names the stdlib module by string (mock.patch targets, pickles) reaches
shmkit too, and so is ``multiprocessing.managers.SharedMemoryManager``
(what the manager tests name): a counting subclass of shmkit's, and a
start method whose SharedMemoryManager tests ran without starting it fails.
With $SHMKIT_EXPECT_INSTALLED (ctest, release builds) shmkit must be
imported from that venv, the installed wheel. Each class runs under every start method given (default: fork,
spawn and forkserver).

The queue and pool classes (_TestQueue, _TestPool, _TestPoolWorkerErrors,
_TestPoolWorkerLifetime) run with shmkit's context: the mixin's Queue,
JoinableQueue and Pool, and the test module's own ``multiprocessing``
global (the tests also call ``multiprocessing.Pool(2)``,
``multiprocessing.Queue()`` by that name), are ``shmkit.multiprocessing``'s,
through a layer here that checks, at every creation, that the queue is
shmkit's and that the pool's task queue, result queue and change notifier
are shmkit SimpleQueues, and counts them: a start method whose queue or
pool tests ran without creating shmkit's fails. The pools' workers are
CheckedProcesses too, so each worker checks, in the child, that the queues
it was handed are shmkit's.

The replacement is checked where the tests' code runs, not only in this
process: every child the tests start is a CheckedProcess, which, in the
child, checks that the test module's shared_memory and Value, and
``multiprocessing.shared_memory``, are shmkit's, and that no stdlib shared
object was passed to it, and writes what it found to a report directory.
After each start method the parent fails the run if a child it started
reported a stdlib module or object, or did not report at all. (A spawn or
forkserver child imports this file afresh: had the replacement been made
only in the parent, its tests would still pass, since shmkit's blocks are
stdlib-compatible.)

The tracker's registry is this run's own ($SHMKIT_TRACKER_REGISTRY, unless
already set), as for the pytest suite, and is removed at the end.

    python cpython_tests.py [-m fork,spawn,forkserver] [-v] [unittest args]
"""
import argparse
import atexit
import importlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import unittest

# Before shmkit is imported (and inherited by every child, whatever its
# start method): never the user's registry.
REGISTRY = "shmkit_cpython_tests_registry_%d" % os.getpid()
os.environ.setdefault("SHMKIT_TRACKER_REGISTRY", REGISTRY)


def _remove_registry():
    if os.environ.get("SHMKIT_TRACKER_REGISTRY") == REGISTRY and os.path.exists("/dev/shm/" + REGISTRY):
        os.unlink("/dev/shm/" + REGISTRY)


if __name__ == "__main__":
    atexit.register(_remove_registry)

try:
    from test import _test_multiprocessing as tm
except ImportError as e:
    sys.exit("cpython_tests: %s has no test._test_multiprocessing (%s): on Debian "
             "apt-get install libpython3.%d-testsuite" % (sys.executable, e, sys.version_info[1]))


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


shared_memory = _optional("shmkit.shared_memory")
sharedctypes = _optional("shmkit.sharedctypes")
synchronize = _optional("shmkit.synchronize")
shmkit_mp = _optional("shmkit.multiprocessing")
shmkit_pool = _optional("shmkit.pool")
_shmkit = _optional("shmkit")
# shmkit's object queues (the whole family, or None).
queue_classes = None
if _shmkit is not None and all(hasattr(_shmkit, n) for n in ("Queue", "SimpleQueue", "JoinableQueue")):
    queue_classes = (_shmkit.Queue, _shmkit.SimpleQueue, _shmkit.JoinableQueue)
pools_ready = shmkit_mp if (shmkit_pool is not None and queue_classes is not None) else None

# test class -> the shmkit module it needs (present in this build or not).
CLASSES = {
    "_TestSharedMemory": shared_memory,
    "_TestValue": sharedctypes,
    "_TestArray": sharedctypes,
    "_TestSharedCTypes": sharedctypes,
    "_TestQueue": pools_ready,
    "_TestPool": pools_ready,
    "_TestPoolWorkerErrors": pools_ready,
    "_TestPoolWorkerLifetime": pools_ready,
}
POOL_CLASSES = ("_TestPool", "_TestPoolWorkerErrors", "_TestPoolWorkerLifetime")
# _TestLock, _TestSemaphore, _TestCondition, _TestEvent and _TestBarrier run
# in tests/test_cpython_synchronize.py (shmkit.synchronize's own harness);
# here shmkit.synchronize only provides the mixin's Lock and RLock.

# Tests skipped, each with its reason: only tests that patch or inspect
# CPython's private internals, or that never reach shmkit.
_FRESH_STDLIB = ("runs CPython's multiprocessing.shared_memory in a fresh interpreter "
                 "(%s) that never imports shmkit: it tests the stdlib, not the replacement")
SKIPS = {
    "_TestSharedMemory": {
        "test_shared_memory_cleaned_after_process_termination": _FRESH_STDLIB % "python -E -c",
        "test_shared_memory_SharedMemoryManager_reuses_resource_tracker":
            _FRESH_STDLIB % "script_helper.assert_python_ok",
    },
    "_TestQueue": {
        "test_no_import_lock_contention":
            "its helper module runs `import multiprocessing` (CPython's package, from sys.modules) "
            "and uses CPython's Queue, never shmkit's: it tests the stdlib, not the replacement",
        "test_queue_feeder_donot_stop_onexc":
            "checks that CPython's feeder thread survives a pickling error (bpo-30414: put() of an "
            "unpicklable object returns, the feeder thread prints the error): shmkit.Queue has no "
            "feeder thread, its put() pickles and raises the error itself (shmkit.mpqueues' documented "
            "difference)",
        "test_queue_feeder_on_queue_feeder_error":
            "subclasses multiprocessing.queues.Queue to test the private _on_queue_feeder_error hook "
            "of CPython's feeder thread: CPython's Queue internals (shmkit.Queue has no feeder thread)",
    },
    "_TestPoolWorkerLifetime": {
        "test_worker_finalization_via_atexit_handler_of_multiprocessing":
            "runs `from multiprocessing import Pool` in a fresh interpreter "
            "(script_helper.assert_python_ok) that never imports shmkit: it tests the stdlib's Pool",
    },
}

# Where children report what they use (set by main(); a child gets it with
# its CheckedProcess object).
REPORT_DIR = None
# pid -> target, for every CheckedProcess this process started.
STARTED = {}

# The stdlib modules whose objects must never reach a child.
_STDLIB_SHARED = ("multiprocessing.shared_memory", "multiprocessing.sharedctypes",
                  "multiprocessing.queues")


def replacement_problems(args=(), kwargs=None, target=None):
    """What, in this process, is the stdlib where shmkit's should be."""
    out = []
    mod = sys.modules.get("test._test_multiprocessing")
    want_sm = sys.modules.get("shmkit.shared_memory")
    if mod is None:
        out.append("test._test_multiprocessing is not imported")
    else:
        if want_sm is None or mod.shared_memory is not want_sm:
            out.append("the test module's shared_memory is %s" % getattr(mod.shared_memory, "__name__", mod.shared_memory))
        if getattr(mod.Value, "__module__", None) != "shmkit.sharedctypes":
            out.append("the test module's Value is %s.%s" % (getattr(mod.Value, "__module__", "?"),
                                                             getattr(mod.Value, "__qualname__", mod.Value)))
    managers = sys.modules.get("multiprocessing.managers")
    if managers is not None and want_sm is not None and not issubclass(
            getattr(managers, "SharedMemoryManager", object), want_sm.SharedMemoryManager):
        out.append("multiprocessing.managers.SharedMemoryManager is %s" % managers.SharedMemoryManager)
    sys_sm = sys.modules.get("multiprocessing.shared_memory")
    if sys_sm is not None and (want_sm is None or sys_sm is not want_sm):
        out.append("sys.modules['multiprocessing.shared_memory'] is %s" % sys_sm.__name__)
    if pools_ready is not None and mod is not None and mod.multiprocessing is not HARNESS_MP:
        out.append("the test module's multiprocessing is %r" % (mod.multiprocessing,))
    for a in list(args) + list((kwargs or {}).values()):
        if type(a).__module__ in _STDLIB_SHARED:
            out.append("was given a stdlib %s.%s" % (type(a).__module__, type(a).__qualname__))
    if target is not None and target is _mp_pool_worker():
        # A pool worker: its task and result queues must be shmkit's.
        for what, q in zip(("task queue", "result queue"), args[:2]):
            if queue_classes is None or not isinstance(q, queue_classes[1]):
                out.append("pool worker's %s is %s.%s" % (what, type(q).__module__, type(q).__qualname__))
    return out


def _mp_pool_worker():
    import multiprocessing.pool
    return multiprocessing.pool.worker


class CheckedProcess(multiprocessing.Process):
    """The tests' Process: in the child, reports (to REPORT_DIR) whether
    what it is about to use is shmkit's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shmkit_report_dir = REPORT_DIR

    def start(self):
        target = getattr(self._target, "__qualname__", repr(self._target))
        super().start()  # (which drops _target)
        if self._shmkit_report_dir is not None:
            STARTED[self.pid] = (target, self)

    def run(self):
        if self._shmkit_report_dir is not None:
            problems = replacement_problems(self._args, self._kwargs, self._target)
            path = os.path.join(self._shmkit_report_dir, str(os.getpid()))
            with open(path + ".tmp", "w") as f:
                f.write("; ".join(problems) if problems else "ok")
            os.rename(path + ".tmp", path)
        super().run()


def check_children(method):
    """Failures for the children started under `method`: each must have
    reported, and reported shmkit's objects."""
    bad = []
    if not STARTED:
        bad.append("no test started a child: the check saw nothing")
    unstarted = 0
    for pid, (target, proc) in sorted(STARTED.items()):
        try:
            with open(os.path.join(REPORT_DIR, str(pid))) as f:
                report = f.read()
        except FileNotFoundError:
            if target == "worker" and proc.exitcode == -signal.SIGTERM:
                # A pool worker that Pool.terminate() stopped while it was
                # still starting (spawn, forkserver): it never ran, so
                # never used anything.
                unstarted += 1
                continue
            bad.append("child %d (%s) never reported what it used" % (pid, target))
            continue
        if report != "ok":
            bad.append("child %d (%s): %s" % (pid, target, report))
    print("cpython_tests: %s: %d child(ren) checked, %d bad, %d pool worker(s) terminated before "
          "running" % (method, len(STARTED), len(bad), unstarted), flush=True)
    for b in bad:
        print("cpython_tests: %s: %s" % (method, b), flush=True)
    return not bad


class ShmkitProcessesMixin(tm.ProcessesMixin):
    """CPython's processes mixin with shmkit's objects."""
    Process = CheckedProcess


# How many shmkit queues and pools the tests made here (each checked at
# creation), for the per-start-method check that they were used at all.
MADE = {"Queue": 0, "JoinableQueue": 0, "SimpleQueue": 0, "Pool": 0}
HARNESS_MP = None

if pools_ready is not None:
    import types

    def _checked_queue(kind, index):
        def make(*args, **kwargs):
            q = getattr(shmkit_mp, kind)(*args, **kwargs)
            if not isinstance(q, queue_classes[index]):
                raise AssertionError("shmkit.multiprocessing.%s() made a %s.%s"
                                     % (kind, type(q).__module__, type(q).__qualname__))
            MADE[kind] += 1
            return q
        make.__name__ = make.__qualname__ = kind
        return make

    class CheckedPool(shmkit_pool.Pool):
        """shmkit's Pool (what shmkit.multiprocessing.Pool makes), with
        CheckedProcess workers; checks its queues are shmkit's."""

        @staticmethod
        def Process(ctx, *args, **kwds):
            # The workers run under the harness's start method, which is
            # the default context's: a CheckedProcess of that method.
            assert ctx.get_start_method() == multiprocessing.get_start_method(), ctx
            return CheckedProcess(*args, **kwds)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for what in ("_inqueue", "_outqueue", "_change_notifier"):
                q = getattr(self, what)
                if not isinstance(q, queue_classes[1]):
                    raise AssertionError("the pool's %s is a %s.%s" % (what, type(q).__module__,
                                                                     type(q).__qualname__))
            MADE["Pool"] += 1

    def _checked_pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        # What shmkit.multiprocessing.Pool(...) does, with the checks above.
        return CheckedPool(processes, initializer, initargs, maxtasksperchild,
                           context=shmkit_mp.get_context())
    _checked_pool.__name__ = _checked_pool.__qualname__ = "Pool"

    class HarnessMultiprocessing(types.ModuleType):
        """The test module's `multiprocessing`: shmkit.multiprocessing, with
        its queue and pool factories checked and counted."""

        def __getattr__(self, name):
            return getattr(shmkit_mp, name)

    HARNESS_MP = HarnessMultiprocessing("multiprocessing")
    HARNESS_MP.Queue = _checked_queue("Queue", 0)
    HARNESS_MP.SimpleQueue = _checked_queue("SimpleQueue", 1)
    HARNESS_MP.JoinableQueue = _checked_queue("JoinableQueue", 2)
    HARNESS_MP.Pool = _checked_pool
    ShmkitProcessesMixin.Queue = staticmethod(HARNESS_MP.Queue)
    ShmkitProcessesMixin.JoinableQueue = staticmethod(HARNESS_MP.JoinableQueue)
    ShmkitProcessesMixin.Pool = staticmethod(HARNESS_MP.Pool)
    tm.multiprocessing = HARNESS_MP


if sharedctypes is not None:
    for _n in ("Value", "Array", "RawValue", "RawArray"):
        setattr(ShmkitProcessesMixin, _n, staticmethod(getattr(sharedctypes, _n)))
    tm.Value = sharedctypes.Value
    tm.copy = sharedctypes.copy
    tm.HAS_SHAREDCTYPES = True
if synchronize is not None:
    for _n in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier"):
        if hasattr(synchronize, _n):
            setattr(ShmkitProcessesMixin, _n, staticmethod(getattr(synchronize, _n)))
if shared_memory is not None:
    tm.shared_memory = shared_memory
    tm.HAS_SHMEM = True
    multiprocessing.shared_memory = shared_memory
    sys.modules["multiprocessing.shared_memory"] = shared_memory
    # The tests name the manager as multiprocessing.managers.SharedMemoryManager:
    # shmkit's, counted, so the run can prove its manager tests used it.
    import multiprocessing.managers

    class CountedSharedMemoryManager(shared_memory.SharedMemoryManager):
        """shmkit's manager; counts the managers the tests start here."""
        started = 0

        def start(self, *args, **kwargs):
            super().start(*args, **kwargs)
            type(self).started += 1

    CountedSharedMemoryManager.__qualname__ = "SharedMemoryManager"
    multiprocessing.managers.SharedMemoryManager = CountedSharedMemoryManager


def _skip(reason):
    def skipped(self):
        self.skipTest(reason)
    return skipped


# The combined classes live in this module (children started by spawn or
# forkserver find them here by name, as CPython's do in its test modules).
for _name, _module in CLASSES.items():
    if _module is None:
        continue
    _base = getattr(tm, _name)
    _body = {"__module__": __name__}
    for _test, _reason in SKIPS.get(_name, {}).items():
        _body[_test] = _skip(_reason)
    _cls = type("WithProcesses" + _name[1:], (_base, ShmkitProcessesMixin, unittest.TestCase), _body)
    globals()[_cls.__name__] = _cls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--methods", default="fork,spawn,forkserver")
    args, rest = parser.parse_known_args()
    missing = [n for n, m in CLASSES.items() if m is None]
    if missing:
        sys.exit("cpython_tests: shmkit modules missing for " + ", ".join(missing))
    # What the tests see is shmkit's, not the stdlib's.
    assert tm.shared_memory is shared_memory and tm.Value is sharedctypes.Value
    assert sys.modules["multiprocessing.shared_memory"] is shared_memory
    import multiprocessing.managers
    assert multiprocessing.managers.SharedMemoryManager is CountedSharedMemoryManager
    assert issubclass(tm.multiprocessing.managers.SharedMemoryManager, shared_memory.SharedMemoryManager)
    assert not replacement_problems(), replacement_problems()
    assert tm.multiprocessing is HARNESS_MP and HARNESS_MP.Pool is _checked_pool
    # shmkit.multiprocessing's own Pool (what the checked one mirrors) is
    # shmkit's Pool on shmkit queues, under every start method.
    for method in args.methods.split(","):
        with shmkit_mp.get_context(method).Pool(1) as p:
            assert type(p) is shmkit_pool.Pool, type(p)
            assert all(isinstance(q, queue_classes[1]) for q in (p._inqueue, p._outqueue, p._change_notifier))
            assert p.apply(abs, (-3,)) == 3
        p.join()
    # Installed-package runs (ctest, release): shmkit must come from the venv
    # the wheel was installed into, never from the build tree or checkout.
    venv = os.environ.get("SHMKIT_EXPECT_INSTALLED")
    if venv:
        venv = os.path.realpath(venv)
        for m in (shared_memory, sharedctypes, synchronize, shmkit_mp, shmkit_pool):
            where = os.path.realpath(m.__file__)
            if not where.startswith(venv + os.sep):
                sys.exit("cpython_tests: %s was imported from %s, not from the installed wheel in %s"
                         % (m.__name__, where, venv))
    print("cpython_tests: %s with shmkit from %s" % (tm.__file__, shared_memory.__file__))
    global REPORT_DIR
    ok = True
    for method in args.methods.split(","):
        print("=== start method", method, flush=True)
        multiprocessing.set_start_method(method, force=True)
        REPORT_DIR = tempfile.mkdtemp(prefix="shmkit_cpython_tests_")
        STARTED.clear()
        names = [c for c in globals() if c.startswith("WithProcesses")]
        suite = unittest.TestSuite()
        loader = unittest.TestLoader()
        for n in names:
            suite.addTests(loader.loadTestsFromTestCase(globals()[n]))
        verbosity = 2 if "-v" in rest else 1
        result = unittest.TextTestRunner(verbosity=verbosity).run(suite)
        ok = result.wasSuccessful() and ok
        # CPython's SharedMemoryManager tests ran against shmkit's manager
        # (each starts at least one), not the stdlib's.
        manager_tests = [t for n in names for t in unittest.TestLoader().getTestCaseNames(globals()[n])
                         if ("SharedMemoryManager" in t or "SharedMemoryServer" in t)
                         and t not in SKIPS.get("_TestSharedMemory", {})]
        if CountedSharedMemoryManager.started < len(manager_tests):
            print("cpython_tests: %s: %d SharedMemoryManager test(s) ran but shmkit's manager was "
                  "started %d time(s)" % (method, len(manager_tests), CountedSharedMemoryManager.started))
            ok = False
        print("cpython_tests: %s: shmkit's SharedMemoryManager started %d time(s) by %s"
              % (method, CountedSharedMemoryManager.started, ", ".join(sorted(manager_tests))), flush=True)
        CountedSharedMemoryManager.started = 0
        # The queue and pool tests made shmkit's queues and pools here.
        ran = {n[len("WithProcesses"):] for n in names}
        print("cpython_tests: %s: made %s" % (method, ", ".join("%d shmkit %s" % (v, k) for k, v in MADE.items())),
              flush=True)
        if "TestQueue" in ran and (MADE["Queue"] == 0 or MADE["JoinableQueue"] == 0):
            print("cpython_tests: %s: the queue tests ran but made no shmkit Queue or JoinableQueue" % method)
            ok = False
        if any(c[1:] in ran for c in POOL_CLASSES) and MADE["Pool"] == 0:
            print("cpython_tests: %s: the pool tests ran but made no shmkit Pool" % method)
            ok = False
        for k in MADE:
            MADE[k] = 0
        for p in multiprocessing.active_children():
            p.join(60)
        multiprocessing.process._cleanup()
        ok = check_children(method) and ok
        shutil.rmtree(REPORT_DIR, ignore_errors=True)
        REPORT_DIR = None
    for cls, tests in SKIPS.items():
        for test, reason in tests.items():
            print("skipped %s.%s: %s" % (cls, test, reason))
    # The tracker worked in this run's registry, not the user's.
    if os.environ["SHMKIT_TRACKER_REGISTRY"] == REGISTRY and not os.path.exists("/dev/shm/" + REGISTRY):
        print("cpython_tests: the run's own tracker registry %s was never created" % REGISTRY)
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
