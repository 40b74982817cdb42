"""``python -m shmkit ls|show|rm|gc|demo ...``: the ``shmkit`` command.

It runs the program that ships inside the package (``shmkit-cli``, the same
C++ tool as the ``shmkit`` binary of a C++ install), with the package's
tracker watcher, so that the two never disagree. The ``shmkit`` console
script calls :func:`main`.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: Optional[List[str]] = None) -> int:
    """Replaces this process with the shmkit command-line tool."""
    args = sys.argv[1:] if argv is None else list(argv)
    cli = os.path.join(_HERE, "shmkit-cli")
    if not os.access(cli, os.X_OK):
        sys.stderr.write("shmkit: this install has no command-line tool (%s); it ships in the "
                         "wheel built by python/pyproject.toml\n" % cli)
        return 2
    watcher = os.path.join(_HERE, "shmkit-watcher")
    env = dict(os.environ)
    if "SHMKIT_WATCHER" not in env and os.access(watcher, os.X_OK):
        env["SHMKIT_WATCHER"] = watcher
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cli, ["shmkit"] + args, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
