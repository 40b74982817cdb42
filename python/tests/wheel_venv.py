"""Builds the shmkit wheel with one interpreter and installs it into a fresh
venv of that interpreter (ctest python_wheel, python_wheel_extra<N> and
python_wheel_other_interpreters: the fixtures the Python suites then run
from, so they test what a user installs, not the build tree).

    wheel_venv.py --python PY --venv DIR --wheel-dir DIR --cache DIR
                  [--system-site-packages] [--skip-missing]

* The wheel: ``PY -m build --wheel --no-isolation`` where PY has ``build``
  (Debian: python3-build), else ``PY -m pip wheel --no-build-isolation
  --no-deps``; the backend's cache ($SHMKIT_BUILD_CACHE) is --cache, in the
  build tree, so the C++ core is built once and reused by every interpreter
  and nothing is written to ~/.cache.
* Nothing may be written into the source tree: the untracked and ignored
  files under python/ (``git status``) must be the same before and after.
* The venv: ``PY -m venv [--system-site-packages]`` (so Debian's numpy,
  pytest, hypothesis and mypy stay visible), then ``venv/bin/python -m pip
  install --no-index --no-deps`` of the wheel.
* Then the venv's interpreter, started in an empty directory with no
  PYTHONPATH, must import shmkit from the venv, its compiled modules and its
  bundled watcher and command-line tool.
* --skip-missing: PY not present is a skip (printed, exit 0), not a failure.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
ROOT = os.path.dirname(PYDIR)

PROBE = r"""
import os, subprocess, sys
venv = os.path.realpath(sys.argv[1])
import shmkit, shmkit._core, shmkit._sync, shmkit._queues
import shmkit.shared_memory, shmkit.sharedctypes, shmkit.synchronize, shmkit.queues
for m in (shmkit, shmkit._core, shmkit.shared_memory, shmkit.sharedctypes, shmkit.synchronize,
          shmkit.queues, shmkit._sync, shmkit._queues):
    assert os.path.realpath(m.__file__).startswith(venv + os.sep), (m.__name__, m.__file__, venv)
assert shmkit._core._noop() is None
here = os.path.dirname(os.path.realpath(shmkit.__file__))
assert os.path.realpath(os.environ["SHMKIT_WATCHER"]) == os.path.join(here, "shmkit-watcher")
# A tracked block: the bundled watcher must start and answer.
m = shmkit.shared_memory.SharedMemory(create=True, size=64, track=True)
m.buf[:2] = b"ok"
other = shmkit.shared_memory.SharedMemory(m.name, track=False)
assert bytes(other.buf[:2]) == b"ok"
other.close(); m.close(); m.unlink()
# The console script and python -m shmkit: the bundled command.
for cmd in ([os.path.join(os.path.dirname(sys.executable), "shmkit"), "--help"],
            [sys.executable, "-m", "shmkit", "--help"]):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "ls" in r.stdout + r.stderr, (cmd, r)
print("wheel_venv: shmkit imported from", os.path.dirname(shmkit.__file__))
"""


def log(*a):
    print("wheel_venv:", *a, flush=True)


def run(cmd, **kw):
    log("$", " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def source_tree_state():
    """The untracked and ignored paths under python/ (None: not a git checkout)."""
    r = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--ignored", "--untracked-files=all",
                        "--", "python"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    # (New files only: "??" untracked, "!!" ignored. Edits to tracked files
    # are a developer's, made while the test runs.)
    return sorted(line for line in r.stdout.splitlines()
                  if line[:2] in ("??", "!!") and "__pycache__" not in line)


def has_module(py, name):
    return subprocess.run([py, "-c", "import " + name], capture_output=True).returncode == 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", required=True)
    p.add_argument("--venv", required=True)
    p.add_argument("--wheel-dir", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--system-site-packages", action="store_true")
    p.add_argument("--skip-missing", action="store_true")
    a = p.parse_args()
    a.venv, a.wheel_dir, a.cache = (os.path.abspath(x) for x in (a.venv, a.wheel_dir, a.cache))

    if not (os.path.isfile(a.python) and os.access(a.python, os.X_OK)) and not shutil.which(a.python):
        if a.skip_missing:
            log("SKIP: no interpreter", a.python)
            return 0
        sys.exit("wheel_venv: no interpreter " + a.python)
    for d in (a.venv, a.wheel_dir):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(a.wheel_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHMKIT_WATCHER")}
    env["SHMKIT_BUILD_CACHE"] = os.path.abspath(a.cache)
    env.setdefault("SHMKIT_BUILD_JOBS", "2")

    before = source_tree_state()
    t0 = time.monotonic()
    if has_module(a.python, "build"):
        run([a.python, "-m", "build", "--wheel", "--no-isolation", "--outdir", a.wheel_dir, PYDIR], env=env)
    else:
        run([a.python, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
             "-w", a.wheel_dir, PYDIR], env=env)
    t1 = time.monotonic()
    wheels = glob.glob(os.path.join(a.wheel_dir, "shmkit-*.whl"))
    if len(wheels) != 1:
        sys.exit("wheel_venv: expected one wheel in %s, found %s" % (a.wheel_dir, wheels))
    after = source_tree_state()
    if before is not None and after != before:
        sys.exit("wheel_venv: the wheel build wrote into the source tree: %s"
                 % sorted(set(after) - set(before)))

    venv_cmd = [a.python, "-m", "venv"] + (["--system-site-packages"] if a.system_site_packages else [])
    run(venv_cmd + [a.venv], env=env)
    vpy = os.path.join(a.venv, "bin", "python")
    run([vpy, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check", wheels[0]],
        env=env)
    t2 = time.monotonic()

    with tempfile.TemporaryDirectory() as cwd:
        env["SHMKIT_TRACKER_REGISTRY"] = "shmkit_wheel_venv_registry_%d" % os.getpid()
        r = subprocess.run([vpy, "-c", PROBE, a.venv], cwd=cwd, env=env)
        try:
            os.unlink("/dev/shm/" + env["SHMKIT_TRACKER_REGISTRY"])
        except FileNotFoundError:
            pass
    if r.returncode != 0:
        sys.exit("wheel_venv: the installed package failed its probe (exit %d)" % r.returncode)
    log("%s: wheel %s built in %.1f s, venv + install %.1f s" % (a.python, os.path.basename(wheels[0]),
                                                                t1 - t0, t2 - t1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
