"""The package itself: the compiled modules load from the tree under test,
and the tracker's watcher program ships with them."""
import os

import shmkit
import shmkit._core


def test_extension_loads_from_the_package_under_test():
    assert os.path.dirname(shmkit._core.__file__) == os.path.dirname(shmkit.__file__)
    assert shmkit._core._noop() is None
    assert shmkit._core._noop(1, 2, 3) is None


def test_watcher_is_bundled_and_used():
    bundled = os.path.join(os.path.dirname(shmkit.__file__), "shmkit-watcher")
    assert os.access(bundled, os.X_OK)
    assert os.environ["SHMKIT_WATCHER"] == bundled
