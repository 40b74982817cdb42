"""Fixtures shared by the shmkit pytest suite.

* The suite runs against the package on PYTHONPATH (a build tree's
  site-<tag> directory, set by ctest).
* The tracker's registry is this run's own ($SHMKIT_TRACKER_REGISTRY), so
  tests never touch the user's, and it is removed at the end.
* ``names`` hands out unique block names and fails the test if any of them
  is still in /dev/shm at its end (a leak), removing it.
"""
import itertools
import os
import sys

import pytest

try:
    import shmkit  # noqa: F401
except ImportError as e:  # pragma: no cover
    sys.exit("shmkit is not importable (%s): run through ctest, or set PYTHONPATH to "
             "build/release/python/site-main" % e)

REGISTRY = "shmkit_pytest_registry_%d" % os.getpid()
os.environ.setdefault("SHMKIT_TRACKER_REGISTRY", REGISTRY)

_counter = itertools.count()


def block_exists(name):
    return os.path.exists("/dev/shm/" + name)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("SHMKIT_TRACKER_REGISTRY") == REGISTRY and block_exists(REGISTRY):
        os.unlink("/dev/shm/" + REGISTRY)


class Names:
    def __init__(self, test):
        self.test = test
        self.made = []

    def __call__(self, tag="b"):
        n = "pyt_%d_%s_%d" % (os.getpid(), tag, next(_counter))
        self.made.append(n)
        return n

    def leaked(self):
        out = [n for n in self.made if block_exists(n)]
        for n in out:
            os.unlink("/dev/shm/" + n)
        return out


@pytest.fixture
def names(request):
    n = Names(request.node.name)
    yield n
    leaked = n.leaked()
    assert not leaked, "blocks left in /dev/shm: %s" % leaked


@pytest.fixture
def peer():
    """Path of the C++ peer program (python/tests/peers/core_peer.cpp)."""
    d = os.environ.get("SHMKIT_PY_PEERS")
    path = os.path.join(d, "core_peer") if d else None
    if not path or not os.access(path, os.X_OK):
        pytest.skip("the C++ peer is not built ($SHMKIT_PY_PEERS unset: run through ctest)")
    return path


def eventually(pred, timeout=10.0, step=0.01):
    """True as soon as pred() is, False after timeout seconds."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
