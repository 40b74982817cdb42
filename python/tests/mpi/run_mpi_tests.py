"""shmkit.mpi under mpirun (ctest python_mpi): an mpi4py job whose nodes
share numpy arrays through shmkit.

    run_mpi_tests.py MPIEXEC [MPIEXEC_FLAG...]

Each scenario runs under a wall-clock limit and gets its own job tag
($SHMKIT_MPI_JOB) so that its blocks can be found in /dev/shm afterwards:
none may remain, whatever happened to the job.
"""
import os
import re
import secrets
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "node_array_worker.py")
failures = []


def leftovers(tag, wait=10.0):
    """Blocks of job `tag` still in /dev/shm after up to `wait` seconds
    (the tracker's watchers of killed ranks unlink asynchronously)."""
    deadline = time.monotonic() + wait
    while True:
        left = [n for n in os.listdir("/dev/shm") if n.startswith("shmkit.mpi.%s-" % tag)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def run(mpiexec, flags, ranks, scenario, virtual, *extra, limit=120):
    tag = "py" + secrets.token_hex(4)
    env = dict(os.environ, SHMKIT_MPI_JOB=tag)
    cmd = [mpiexec, *flags, "-np", str(ranks), sys.executable, WORKER, scenario, str(virtual), *extra]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = None, (e.stdout or b"").decode() + (e.stderr or b"").decode()
    took = time.monotonic() - t0
    left = leftovers(tag)
    for name in left:  # reported by the caller; nothing else would remove them
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass
    return rc, out, took, left


def check(name, ok, detail):
    print("%-60s %s" % (name, "ok" if ok else "FAILED"), flush=True)
    if not ok:
        failures.append(name)
        print(detail, flush=True)


def main():
    mpiexec, flags = sys.argv[1], sys.argv[2:]
    for ranks, virtual in ((1, 0), (2, 0), (4, 0), (4, 2), (4, 4)):
        rc, out, took, left = run(mpiexec, flags, ranks, "exact", virtual)
        # mpirun may join the ranks' lines: match each report, not whole lines.
        oks = len(re.findall(r"rank \d+: node \d+/\d+ rank \d+/\d+ total \d+ serial \d+ OK", out))
        check("exact: %d ranks, %d virtual nodes" % (ranks, virtual),
              rc == 0 and oks == ranks and not left, "rc=%s ok-lines=%d left=%s\n%s" % (rc, oks, left, out))

    rc, out, took, left = run(mpiexec, flags, 4, "squat", 2)
    node1 = re.findall(r"rank \d+: node 1: (ok|\w+Error: [^\n]*?)(?=rank \d+:|$)", out, re.M)
    node0 = re.findall(r"rank \d+: node 0: (ok|\w+Error: [^\n]*?)(?=rank \d+:|$)", out, re.M)
    check("squat: the leader's FileExistsError reaches both ranks of node 1",
          rc == 0 and len(node1) == 2 and len(set(node1)) == 1 and node1[0].startswith("FileExistsError")
          and node0 == ["ok", "ok"] and not left,
          "rc=%s node0=%s node1=%s left=%s\n%s" % (rc, node0, node1, left, out))

    rc, out, took, left = run(mpiexec, flags, 4, "kill", 2, limit=90)
    check("kill: a SIGKILLed rank ends the job non-zero, no block remains",
          rc not in (0, None) and "killing myself" in out and not left,
          "rc=%s took=%.1fs left=%s\n%s" % (rc, took, left, out))

    # Each watcher reports what it unlinked on its rank's stderr, whose reader
    # (mpirun) may be gone by then: the write must not kill it between two
    # unlinks. Each node has 3 blocks (table, more, extra) and 2 ranks, so
    # watchers that each die at their first report leave one at least.
    rc, out, took, left = run(mpiexec, flags, 4, "kill", 2, "broken", limit=90)
    check("kill, stderr with no reader: no block remains",
          rc not in (0, None) and "killing myself" in out and not left,
          "rc=%s took=%.1fs left=%s\n%s" % (rc, took, left, out))
    if failures:
        print("FAILED: %s" % ", ".join(failures))
        return 1
    print("all shmkit.mpi scenarios passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
