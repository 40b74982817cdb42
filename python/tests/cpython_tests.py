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
shmkit too. Each class runs under every start method given (default: fork,
spawn and forkserver).

CPython's test_shared_memory_cleaned_after_process_termination runs the
stdlib module in a child (``-E``) and then unregisters the name from this
process's CPython resource tracker, which never had it: that tracker prints
a KeyError traceback. It is CPython's test talking to CPython's tracker, not
a failure.

    python cpython_tests.py [-m fork,spawn,forkserver] [-v] [unittest args]
"""
import argparse
import importlib
import multiprocessing
import sys
import unittest

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
# CPython's private internals.
SKIPS = {}


class ShmkitProcessesMixin(tm.ProcessesMixin):
    """CPython's processes mixin with shmkit's objects."""


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
    if hasattr(shared_memory, "SharedMemoryManager"):
        import multiprocessing.managers
        multiprocessing.managers.SharedMemoryManager = shared_memory.SharedMemoryManager


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
    print("cpython_tests: %s with shmkit from %s" % (tm.__file__, shared_memory.__file__))
    ok = True
    for method in args.methods.split(","):
        print("=== start method", method, flush=True)
        multiprocessing.set_start_method(method, force=True)
        names = [c for c in globals() if c.startswith("WithProcesses")]
        suite = unittest.TestSuite()
        loader = unittest.TestLoader()
        for n in names:
            suite.addTests(loader.loadTestsFromTestCase(globals()[n]))
        verbosity = 2 if "-v" in rest else 1
        result = unittest.TextTestRunner(verbosity=verbosity).run(suite)
        ok = ok and result.wasSuccessful()
        multiprocessing.process._cleanup()
    for cls, tests in SKIPS.items():
        for test, reason in tests.items():
            print("skipped %s.%s: %s" % (cls, test, reason))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
