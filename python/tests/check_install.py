"""The install command's test (ctest python_install): ``python/install.py
--target DIR`` (which is ``pip install --no-build-isolation --target DIR
./python``) with this interpreter, then the package imported from DIR by a
fresh interpreter started elsewhere: it must be that copy, with its
compiled modules, its bundled watcher program and command-line tool. The
install must leave no new file under python/ in the checkout."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from wheel_venv import PROBE, source_tree_state  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cache", required=True, help="the backend's build cache")
parser.add_argument("--target", required=True)
args = parser.parse_args()
target = os.path.abspath(args.target)
shutil.rmtree(target, ignore_errors=True)

before = source_tree_state()
env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHMKIT_WATCHER")}
subprocess.run([sys.executable, os.path.join(HERE, "..", "install.py"), "--target", target,
                "--cache", args.cache, "-j", "2"], check=True, env=env)
after = source_tree_state()
if before is not None and after != before:
    sys.exit("check_install: the install wrote into the source tree: %s" % sorted(set(after) - set(before)))
if not any(n.startswith("shmkit-") and n.endswith(".dist-info") for n in os.listdir(target)):
    sys.exit("check_install: pip wrote no shmkit-*.dist-info into " + target)

env["PYTHONPATH"] = target
env["SHMKIT_TRACKER_REGISTRY"] = "shmkit_pyinstall_registry_%d" % os.getpid()
# (The probe's console-script check looks next to sys.executable: a --target
# install has none, so it is given a bin directory of its own.)
with tempfile.TemporaryDirectory() as cwd:
    probe = PROBE.replace('os.path.join(os.path.dirname(sys.executable), "shmkit")',
                          'os.path.join(venv, "bin", "shmkit")')
    r = subprocess.run([sys.executable, "-c", probe, target], cwd=cwd, env=env)
subprocess.run(["rm", "-f", "/dev/shm/" + env["SHMKIT_TRACKER_REGISTRY"]])
if r.returncode != 0:
    sys.exit("check_install: the installed package failed its probe (exit %d)" % r.returncode)
print("check_install: ok")
