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

# test class -> the shmkit module it needs (present in this build or not).
CLASSES = {
    "_TestSharedMemory": shared_memory,
    "_TestValue": sharedctypes,
    "_TestArray": sharedctypes,
    "_TestSharedCTypes": sharedctypes,
}
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
}

# Where children report what they use (set by main(); a child gets it with
# its CheckedProcess object).
REPORT_DIR = None
# pid -> target, for every CheckedProcess this process started.
STARTED = {}

# The stdlib modules whose objects must never reach a child.
_STDLIB_SHARED = ("multiprocessing.shared_memory", "multiprocessing.sharedctypes")


def replacement_problems(args=(), kwargs=None):
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
    for a in list(args) + list((kwargs or {}).values()):
        if type(a).__module__ in _STDLIB_SHARED:
            out.append("was given a stdlib %s.%s" % (type(a).__module__, type(a).__qualname__))
    return out


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
            STARTED[self.pid] = target

    def run(self):
        if self._shmkit_report_dir is not None:
            problems = replacement_problems(self._args, self._kwargs)
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
    for pid, target in sorted(STARTED.items()):
        try:
            with open(os.path.join(REPORT_DIR, str(pid))) as f:
                report = f.read()
        except FileNotFoundError:
            bad.append("child %d (%s) never reported what it used" % (pid, target))
            continue
        if report != "ok":
            bad.append("child %d (%s): %s" % (pid, target, report))
    print("cpython_tests: %s: %d child(ren) checked, %d bad" % (method, len(STARTED), len(bad)), flush=True)
    for b in bad:
        print("cpython_tests: %s: %s" % (method, b), flush=True)
    return not bad


class ShmkitProcessesMixin(tm.ProcessesMixin):
    """CPython's processes mixin with shmkit's objects."""
    Process = CheckedProcess


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
    # Installed-package runs (ctest, release): shmkit must come from the venv
    # the wheel was installed into, never from the build tree or checkout.
    venv = os.environ.get("SHMKIT_EXPECT_INSTALLED")
    if venv:
        venv = os.path.realpath(venv)
        for m in (shared_memory, sharedctypes, synchronize):
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
