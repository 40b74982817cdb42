"""One rank of the shmkit.mpi tests (run by run_mpi_tests.py under mpirun).

    node_array_worker.py exact VIRTUAL_NODES
    node_array_worker.py squat VIRTUAL_NODES
    node_array_worker.py kill VIRTUAL_NODES [broken]

"broken": every rank's stderr, which its tracker watcher inherits, is first
made a pipe with no reader (as once mpirun has exited).

Prints "rank R: ..." lines the driver checks; exits non-zero on a failed
check. A watchdog (SIGALRM, 60 s) ends a rank that hangs.
"""
import os
import signal
import sys

signal.alarm(60)

import numpy  # noqa: E402
from mpi4py import MPI  # noqa: E402

from shmkit.mpi import NodeView  # noqa: E402
from shmkit.shared_memory import SharedMemory  # noqa: E402

N = 1_000_000


def fail(msg):
    print("rank %d: FAIL %s" % (MPI.COMM_WORLD.Get_rank(), msg), flush=True)
    MPI.COMM_WORLD.Abort(3)


def exact(node):
    table = node.shared_array("table", (N // 1000, 1000), "q",
                              fill=lambda a: a.__setitem__(..., numpy.arange(N).reshape(a.shape) % 977))
    # One copy per node: every rank of the node maps the same bytes.
    out = node.shared_array("out", node.node_size, "d")
    flat = table.reshape(-1)
    mine = int(flat[node.node_rank::node.node_size].sum())
    out[node.node_rank] = float(mine)
    node.node_comm.Barrier()
    node_sum = int(out.sum())  # every rank reads what the others wrote
    if node_sum != int(flat.sum()):
        fail("node sum %d != the table's %d" % (node_sum, int(flat.sum())))
    total = 0
    if node.is_leader:
        total = node.leaders_comm.allreduce(node_sum, op=MPI.SUM)
    total = node.node_comm.bcast(total, root=0)
    serial = int((numpy.arange(N) % 977).sum()) * node.node_count
    if total != serial:
        fail("total %d != serial %d" % (total, serial))
    names = node.node_comm.allgather(os.path.basename(_block_of(table)))
    if len(set(names)) != 1 or not names[0].startswith(node.prefix):
        fail("the node's ranks see different blocks: %s" % names)
    node.free(out)
    node.free(table)
    print("rank %d: node %d/%d rank %d/%d total %d serial %d OK"
          % (node.rank, node.node_index, node.node_count, node.node_rank, node.node_size,
             total, serial), flush=True)


def _block_of(array):
    obj = array
    while True:
        if isinstance(obj, numpy.ndarray) and obj.base is not None:
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            return obj.__dict__["_shmkit_place"].name


def squat(node):
    # The last node's leader squats the name its node will use next.
    squatter = None
    if node.node_index == node.node_count - 1 and node.is_leader:
        squatter = SharedMemory(node.next_name("table"), create=True, size=4096, track=False)
    node.comm.Barrier()
    try:
        node.shared_array("table", 1000, "d")
        outcome = "ok"
    except Exception as e:  # noqa: BLE001 - the driver compares what every rank got
        outcome = "%s: %s" % (type(e).__name__, e)
    outcomes = node.node_comm.allgather(outcome)
    if len(set(outcomes)) != 1:
        fail("the node's ranks got different outcomes: %s" % outcomes)
    if squatter is not None:
        if bytes(squatter.buf[:8]) != b"\0" * 8:
            fail("the squatter's block was touched")
        squatter.close()
        squatter.unlink()
    print("rank %d: node %d: %s" % (node.rank, node.node_index, outcome), flush=True)


def kill(node):
    node.shared_array("table", 1000, "d")
    node.shared_array("more", 1000, "q")
    node.shared_array("extra", 8, "b")  # more blocks than each node has ranks
    node.comm.Barrier()
    if node.rank == node.size - 1:
        print("rank %d: killing myself" % node.rank, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    node.comm.Barrier()  # never completes: mpirun ends the job
    fail("the barrier completed without the killed rank")


def main():
    scenario, virtual = sys.argv[1], int(sys.argv[2])
    if sys.argv[3:] == ["broken"]:
        r, w = os.pipe()
        os.close(r)
        os.dup2(w, 2)
        os.close(w)
    node = NodeView(MPI.COMM_WORLD, virtual_nodes=virtual)
    {"exact": exact, "squat": squat, "kill": kill}[scenario](node)
    node.close()


if __name__ == "__main__":
    main()
