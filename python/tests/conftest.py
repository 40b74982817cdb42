"""Fixtures shared by the shmkit pytest suite.

* The suite runs against the installed package (ctest, release: the wheel
  in a fresh venv, whose interpreter runs the suite; $SHMKIT_EXPECT_INSTALLED
  names that venv, and a shmkit imported from anywhere else fails the run)
  or against the package on PYTHONPATH (ctest, sanitizer builds: a build
  tree's site-<tag> directory).
* The tracker's registry is this run's own ($SHMKIT_TRACKER_REGISTRY), so
  tests never touch the user's, and it is removed at the end.
* ``names`` hands out unique block names and fails the test if any of them
  is still in /dev/shm at its end (a leak), removing it.
"""
import atexit
import itertools
import os
import sys

import pytest

try:
    import shmkit  # noqa: F401
except ImportError as e:  # pragma: no cover
    sys.exit("shmkit is not importable (%s): run through ctest, or set PYTHONPATH to "
             "build/release/python/site-main" % e)


def installed_where_expected(module_file):
    """None, or why `module_file` is not in the venv $SHMKIT_EXPECT_INSTALLED
    names (a silent fall-back to the build tree or the checkout)."""
    venv = os.environ.get("SHMKIT_EXPECT_INSTALLED")
    if not venv:
        return None
    venv = os.path.realpath(venv)
    where = os.path.realpath(module_file)
    if not where.startswith(venv + os.sep):
        return "shmkit was imported from %s, not from the installed wheel in %s" % (where, venv)
    return None


_problem = installed_where_expected(shmkit.__file__)
if _problem:
    sys.exit("conftest: " + _problem)

REGISTRY = "shmkit_pytest_registry_%d" % os.getpid()
os.environ.setdefault("SHMKIT_TRACKER_REGISTRY", REGISTRY)

_counter = itertools.count()


def block_exists(name):
    return os.path.exists("/dev/shm/" + name)


def _remove_registry():
    if os.getpid() == int(REGISTRY.rsplit("_", 1)[1]) and block_exists(REGISTRY):
        os.unlink("/dev/shm/" + REGISTRY)


# At exit, after the finalizers of objects still alive (which may touch the
# registry: atexit runs last what was registered first).
atexit.register(_remove_registry)


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
