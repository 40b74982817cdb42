"""CPython's own tests of multiprocessing's synchronisation primitives,
run with shmkit.synchronize's classes in place of multiprocessing's.

The test classes _TestLock, _TestSemaphore, _TestCondition, _TestEvent and
_TestBarrier of the interpreter's ``test._test_multiprocessing`` are combined
with the processes mixin, as CPython's own test_multiprocessing_* modules do,
with Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier
taken from shmkit, once per start method (fork, spawn, forkserver): the
spawn and forkserver runs pickle shmkit's primitives to the children, which
CPython's own primitives only allow while spawning.

Run with pytest, or directly: ``python3 test_cpython_synchronize.py``.
Fails when the interpreter has no ``test`` package (Debian's
libpython3.X-testsuite; scripts/install-deps.sh installs it): a missing
package is an incomplete install, never a pass.

Skipped tests (each patches or reads CPython's private internals):
  none so far; see SKIPPED below.
"""
import faulthandler
import multiprocessing
import sys
import unittest

try:
    import test._test_multiprocessing as cpython_tests
except ImportError as e:  # pragma: no cover - depends on the interpreter
    cpython_tests = None
    _import_error = e

from shmkit import synchronize as S

# name -> reason, for tests that exercise CPython's implementation rather
# than the API (none needed so far).
SKIPPED: dict = {}

START_METHODS = ("fork", "spawn", "forkserver")
CLASSES = ("_TestLock", "_TestSemaphore", "_TestCondition", "_TestEvent", "_TestBarrier")

if cpython_tests is None:
    _missing = (f"CPython's test package is missing for {sys.executable} ({_import_error}): "
                f"apt-get install libpython3.{sys.version_info[1]}-testsuite (scripts/install-deps.sh)")
    print("FAIL: " + _missing, file=sys.stderr)

    class MissingCPythonTests(unittest.TestCase):
        def test_cpython_synchronize(self):
            self.fail(_missing)
else:
    def _mixin(method):
        ctx = multiprocessing.get_context(method)

        class ShmkitMixin(cpython_tests.ProcessesMixin):
            Process = ctx.Process
            Lock = staticmethod(S.Lock)
            RLock = staticmethod(S.RLock)
            Semaphore = staticmethod(S.Semaphore)
            BoundedSemaphore = staticmethod(S.BoundedSemaphore)
            Condition = staticmethod(S.Condition)
            Event = staticmethod(S.Event)
            Barrier = staticmethod(S.Barrier)
            # Value/Array stay multiprocessing's (the tests use them as
            # shared counters): shmkit.sharedctypes is tested on its own.
            Value = staticmethod(ctx.Value)
            Array = staticmethod(ctx.Array)

            @classmethod
            def setUpClass(cls):
                super().setUpClass()
                # The tests' own helpers (DummyList) use the default context.
                cls._old_method = multiprocessing.get_start_method(allow_none=True)
                multiprocessing.set_start_method(method, force=True)
                # A watchdog: a hang dumps every thread's stack and exits.
                faulthandler.dump_traceback_later(600, exit=True)

            @classmethod
            def tearDownClass(cls):
                faulthandler.cancel_dump_traceback_later()
                multiprocessing.set_start_method(cls._old_method, force=True)
                super().tearDownClass()

        return ShmkitMixin

    for _method in START_METHODS:
        _Mixin = _mixin(_method)
        for _name in CLASSES:
            _base = getattr(cpython_tests, _name)
            _new = "WithShmkit" + _method.capitalize() + _name[1:]
            _cls = type(_new, (_base, _Mixin, unittest.TestCase), {"__module__": __name__})
            _cls.__qualname__ = _new
            for _test, _reason in SKIPPED.items():
                if hasattr(_cls, _test):
                    setattr(_cls, _test, unittest.skip(_reason)(getattr(_cls, _test)))
            globals()[_new] = _cls
    del _method, _Mixin, _name, _base, _new, _cls

    def setUpModule():
        multiprocessing.set_forkserver_preload(["shmkit.synchronize"])


if __name__ == "__main__":
    unittest.main()
