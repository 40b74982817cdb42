#!/usr/bin/env python3
"""Builds the shmkit Python package and installs it into the interpreter
that runs this script:

    python3 python/install.py            # into that interpreter's site-packages
    python3 python/install.py --user     # into its user site-packages
    python3 python/install.py --target DIR

Offline, with Debian's packages only (cmake, g++, the interpreter's -dev
package and shmkit's own dependencies: scripts/install-deps.sh); no pip,
setuptools or network. Works for any CPython 3.8+ with its headers,
including pyenv builds without setuptools. The build (CMake, Release,
library and extension only) is kept in build/python-<tag> under the
repository, so a second install is incremental. A ``shmkit-<version>.dist-info``
is written next to the package, so ``pip uninstall shmkit`` removes it.
"""
import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "0.1.0"


def default_destination(user: bool) -> str:
    if user:
        import site
        return site.getusersitepackages()
    return sysconfig.get_path("platlib")


def build(build_dir: str, jobs: int) -> str:
    """Configures and builds the package for sys.executable; returns the
    directory holding the built ``shmkit`` package."""
    configure = [
        "cmake", "-S", ROOT, "-B", build_dir,
        "-DCMAKE_BUILD_TYPE=Release",
        "-DSHMKIT_BUILD_TESTS=OFF", "-DSHMKIT_BUILD_BENCH=OFF",
        "-DSHMKIT_BUILD_TOOLS=OFF", "-DSHMKIT_BUILD_EXAMPLES=OFF",
        "-DSHMKIT_BUILD_SHARED=OFF", "-DSHMKIT_BUILD_PYTHON=ON",
        "-DSHMKIT_PYTHON_EXTRA=",
        "-DPython3_EXECUTABLE=" + sys.executable,
    ]
    if shutil.which("ninja") and not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True)
    subprocess.run(["cmake", "--build", build_dir, "-j", str(jobs), "--target", "shmkit_python_main"],
                   check=True)
    package = os.path.join(build_dir, "python", "site-main", "shmkit")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        sys.exit("install.py: the build made no package in " + package +
                 " (is the -dev package of " + sys.executable + " installed?)")
    return package


def record_line(dest: str, path: str) -> str:
    with open(path, "rb") as f:
        digest = base64.urlsafe_b64encode(hashlib.sha256(f.read()).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (os.path.relpath(path, dest), digest, os.path.getsize(path))


def install(package: str, dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    target = os.path.join(dest, "shmkit")
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = os.path.join(dest, "shmkit-%s.dist-info" % VERSION)
    if os.path.exists(info):
        shutil.rmtree(info)
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: shmkit\nVersion: %s\n"
                "Summary: Shared memory, robust locks, atomics and queues, byte-compatible "
                "with CPython and C++\n" % VERSION)
    with open(os.path.join(info, "INSTALLER"), "w") as f:
        f.write("shmkit-install.py\n")
    files = []
    for base, _, names in os.walk(target):
        files += [os.path.join(base, n) for n in sorted(names)]
    files += [os.path.join(info, "METADATA"), os.path.join(info, "INSTALLER")]
    with open(os.path.join(info, "RECORD"), "w") as f:
        for path in files:
            f.write(record_line(dest, path) + "\n")
        f.write(os.path.relpath(os.path.join(info, "RECORD"), dest) + ",,\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install into the user site-packages")
    where.add_argument("--target", help="install into this directory (put it on PYTHONPATH)")
    parser.add_argument("--build-dir", help="CMake build directory (default build/python-<tag>)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    tag = "%s-%d.%d" % (sys.implementation.cache_tag, *sys.version_info[:2])
    build_dir = args.build_dir or os.path.join(
        ROOT, "build", "python-" + tag + "-" +
        hashlib.sha1(sys.executable.encode()).hexdigest()[:8])
    dest = os.path.abspath(args.target) if args.target else default_destination(args.user)
    if not args.target and os.path.exists(dest) and not os.access(dest, os.W_OK):
        sys.exit("install.py: %s is not writable: run as its owner, or use --user or --target DIR"
                 % dest)
    package = build(build_dir, args.jobs)
    install(package, dest)
    print("install.py: shmkit %s installed for %s in %s" % (VERSION, sys.executable, dest))


if __name__ == "__main__":
    main()
