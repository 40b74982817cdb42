"""Fixtures shared by the shmkit pytest suite."""
import os
import sys

# The suite runs against the package on PYTHONPATH (a build tree's site
# directory, set by ctest); a test run from the source tree without it
# would import nothing useful, so say so plainly.
try:
    import shmkit  # noqa: F401
except ImportError as e:  # pragma: no cover
    sys.exit("shmkit is not importable (%s): run through ctest, or set PYTHONPATH to "
             "build/release/python/site-main" % e)
