#!/usr/bin/env python3
"""Installs the shmkit Python package into the interpreter that runs this
script, with pip (a thin wrapper; the pip line is the documented way):

    python3 python/install.py                 # pip install --no-build-isolation ./python
    python3 python/install.py --user          # ... --user
    python3 python/install.py --target DIR    # ... --target DIR
    python3 python/install.py -- --break-system-packages   # more pip options after --

It runs ``<this interpreter> -m pip install --no-build-isolation --no-deps
<checkout>/python``: the in-tree PEP 517 backend (python/_build) builds the
C++ core once into a cache shared by every interpreter ($SHMKIT_BUILD_CACHE,
or --cache; default ~/.cache/shmkit/...) and the extension for this
interpreter, offline, from Debian's packages only (scripts/install-deps.sh).
Nothing is written into the checkout. ``pip uninstall shmkit`` removes it.

Debian's own /usr/bin/python3 refuses installs into its site-packages
(PEP 668, "externally-managed-environment"): install into a venv instead
(``python3 -m venv --system-site-packages ~/venv/shmkit``, then run this
script, or the pip line, with that venv's python), or use --user/--target,
or pass ``-- --break-system-packages`` only if you must.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def pip_command(args, extra):
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
           "--disable-pip-version-check"]
    if args.user:
        cmd.append("--user")
    if args.target:
        cmd += ["--target", os.path.abspath(args.target), "--upgrade"]
    return cmd + list(extra) + [HERE]


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="pip install --user")
    where.add_argument("--target", help="pip install --target DIR (put DIR on PYTHONPATH)")
    parser.add_argument("--cache", help="the build cache ($SHMKIT_BUILD_CACHE)")
    parser.add_argument("-j", "--jobs", type=int, help="build parallelism ($SHMKIT_BUILD_JOBS)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.cache:
        env["SHMKIT_BUILD_CACHE"] = os.path.abspath(args.cache)
    if args.jobs:
        env["SHMKIT_BUILD_JOBS"] = str(args.jobs)
    cmd = pip_command(args, extra)
    print("install.py: " + " ".join(cmd), flush=True)
    os.execve(sys.executable, cmd, env)


if __name__ == "__main__":
    main()
