"""The install command's test (ctest python_install): runs
``python/install.py --target DIR`` with this interpreter, then imports the
package from DIR in a fresh interpreter started elsewhere and checks it is
that copy, with its compiled module and its bundled watcher program."""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

parser = argparse.ArgumentParser()
parser.add_argument("--build-dir", required=True)
parser.add_argument("--target", required=True)
args = parser.parse_args()

subprocess.run([sys.executable, os.path.join(HERE, "..", "install.py"), "--build-dir", args.build_dir,
                "--target", args.target, "-j", "2"], check=True)

probe = r"""
import os, sys, shmkit, shmkit._core
target = sys.argv[1]
assert os.path.dirname(shmkit.__file__) == os.path.join(target, "shmkit"), shmkit.__file__
assert os.environ["SHMKIT_WATCHER"] == os.path.join(target, "shmkit", "shmkit-watcher")
assert shmkit._core._noop() is None
# Every module of the package must import from the installed copy: a
# module that fails to import is a broken install, never skipped.
import shmkit.shared_memory as sm, shmkit.sharedctypes, shmkit.synchronize, shmkit.queues
for m in (sm, shmkit.sharedctypes, shmkit.synchronize, shmkit.queues):
    assert os.path.dirname(m.__file__) == os.path.join(target, "shmkit"), m.__file__
# A tracked block: the bundled watcher must start and answer.
m = sm.SharedMemory(create=True, size=64, track=True)
m.buf[:2] = b"ok"
other = sm.SharedMemory(m.name, track=False)
assert bytes(other.buf[:2]) == b"ok"
other.close()
m.close()
m.unlink()
print("installed package ok:", shmkit.__file__)
"""
env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHMKIT_WATCHER")}
env["PYTHONPATH"] = os.path.abspath(args.target)
env["SHMKIT_TRACKER_REGISTRY"] = "shmkit_pyinstall_registry_%d" % os.getpid()
with tempfile.TemporaryDirectory() as cwd:
    r = subprocess.run([sys.executable, "-c", probe, os.path.abspath(args.target)], cwd=cwd, env=env)
subprocess.run(["rm", "-f", "/dev/shm/" + env["SHMKIT_TRACKER_REGISTRY"]])
if r.returncode != 0:
    sys.exit("check_install: the installed package failed its probe (exit %d)" % r.returncode)
print("check_install: ok")
