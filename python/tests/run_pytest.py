"""Runs the shmkit pytest suite with the interpreter that runs this script:
``python tests/run_pytest.py [pytest args]``.

An interpreter without pytest of its own (a pyenv build: the package index
is not reachable here) borrows Debian's python3-pytest, a pure-Python
package: its directory is appended to sys.path (so the interpreter's own
packages still come first). $SHMKIT_PY_DEBIAN_PYTHON names the interpreter
that has it (default /usr/bin/python3).
"""
import os
import subprocess
import sys


def main():
    try:
        import pytest
    except ImportError:
        pytest = borrow_debians_pytest()
    return pytest.main(sys.argv[1:])


def borrow_debians_pytest():
    debian = os.environ.get("SHMKIT_PY_DEBIAN_PYTHON", "/usr/bin/python3")
    where = subprocess.run(
        [debian, "-c", "import os, pytest; print(os.path.dirname(os.path.dirname(pytest.__file__)))"],
        capture_output=True, text=True)
    if where.returncode != 0:
        sys.exit("run_pytest: no pytest for %s, nor for %s (apt-get install python3-pytest)"
                 % (sys.executable, debian))
    sys.path.append(where.stdout.strip())
    print("run_pytest: pytest borrowed from", where.stdout.strip(), flush=True)
    import pytest
    return pytest


# Children started by spawn/forkserver import this file as __mp_main__:
# they must not run the suite again.
if __name__ == "__main__":
    sys.exit(main())
