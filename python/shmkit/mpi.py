"""shmkit.mpi: the node-local layer of an mpi4py program.

MPI between nodes, shmkit within one, as ``shmkit::mpi`` does it in C++
(include/shmkit/mpi.hpp): a :class:`NodeView` splits a communicator into
nodes (``MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)``), gives the node and
leaders communicators, and makes objects that exist *once per node* in a
named shmkit block the node's leader creates and the other ranks attach.

    from mpi4py import MPI
    from shmkit.mpi import NodeView

    node = NodeView(MPI.COMM_WORLD)
    table = node.shared_array("table", (1000, 1000), "d",
                              fill=lambda a: a.__setitem__(..., load()))  # leader only
    # every rank of the node: a numpy view of the one copy (read-only here)
    part = table[node.node_rank::node.node_size].sum()
    ...
    node.free(table)   # collective over the node; or leave it to exit

Contract
  * Collective calls (the constructor, :meth:`NodeView.shared_array`,
    :meth:`NodeView.free`) must be made by every rank of the communicator
    (the constructor) or of the node (the others), in the same order.
  * Names: ``shmkit.mpi.<job>.n<node>.<seq>.<label>``, the same scheme as
    C++ (``<job>``: 8 random hex digits drawn by rank 0, prefixed by
    ``$SHMKIT_MPI_JOB-`` when set), so ``shmkit ls`` lists a job's blocks.
    The block is a typed Array (``shmkit::RawArray<T>`` in C++ attaches it).
  * Errors: if the leader cannot create the block (a name already taken,
    no space), every rank of that node raises the same exception (type and
    message); if any rank cannot attach, every rank of the node raises that
    rank's exception. No rank is left waiting in a collective.
  * Crashes: every rank registers the block with shmkit's tracker before
    ``shared_array`` returns, so when every rank of the job is gone (normal
    exit, ``MPI_Abort``, SIGKILL) the tracker's watchers unlink it; nothing
    stays in /dev/shm.
  * ``virtual_nodes=K`` (or ``$SHMKIT_MPI_VIRTUAL_NODES``) splits each host
    into K nodes of consecutive ranks, so multi-node paths run on one
    machine.

Requires mpi4py (Debian: python3-mpi4py) and numpy.
"""
from __future__ import annotations

import os
import re
import secrets
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy
from numpy.typing import NDArray
from mpi4py import MPI

from . import sharedctypes

__all__ = ["NodeView"]

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_JOB_TAG = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")

# numpy dtype -> the typecode shmkit's typed Array records (LP64 Linux).
_TYPECODES = {numpy.dtype(c): c for c in "bBhHiIlLqQfd"}


def _virtual_from_env() -> int:
    v = os.environ.get("SHMKIT_MPI_VIRTUAL_NODES", "")
    if not v:
        return 0
    try:
        k = int(v, 10)
    except ValueError:
        k = -1
    if k < 0:
        raise ValueError('shmkit: mpi: $SHMKIT_MPI_VIRTUAL_NODES "%s" is not a count of '
                         "virtual nodes (0 or more)" % v)
    return k


def _draw_job() -> str:
    job = secrets.token_hex(4)
    tag = os.environ.get("SHMKIT_MPI_JOB", "")
    if tag:
        if not _JOB_TAG.match(tag):
            raise ValueError('shmkit: mpi: $SHMKIT_MPI_JOB "%s" is not 1-32 of [A-Za-z0-9_-]' % tag)
        job = tag + "-" + job
    return job


def _outcome(fn: Callable[[], Any]) -> Tuple[Any, Optional[Exception]]:
    """(result, None) or (None, exception)."""
    try:
        return fn(), None
    except Exception as e:  # every failure travels to the node's ranks
        return None, e


class NodeView:
    """The node view of a communicator (collective over ``comm``).

    Attributes: ``comm`` (a duplicate of the one given), ``node_comm``,
    ``leaders_comm`` (one rank per node; ``MPI.COMM_NULL`` elsewhere),
    ``rank``, ``size``, ``node_index``, ``node_count``, ``node_rank``,
    ``node_size``, ``is_leader``, ``virtual_nodes``, ``job``.
    """

    def __init__(self, comm: Optional[MPI.Comm] = None, virtual_nodes: Optional[int] = None):
        if virtual_nodes is None:
            virtual_nodes = _virtual_from_env()
        if virtual_nodes < 0:
            raise ValueError("shmkit: mpi: virtual_nodes must be >= 0")
        self.virtual_nodes = virtual_nodes
        self.comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        host = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        if virtual_nodes > 0:
            # Consecutive host ranks form each virtual node, as in C++.
            color = host.Get_rank() * virtual_nodes // host.Get_size()
            self.node_comm = host.Split(color, host.Get_rank())
            host.Free()
        else:
            self.node_comm = host
        self.node_rank = self.node_comm.Get_rank()
        self.node_size = self.node_comm.Get_size()
        self.is_leader = self.node_rank == 0
        self.leaders_comm = self.comm.Split(0 if self.is_leader else MPI.UNDEFINED, self.rank)
        ids = None
        if self.is_leader:
            ids = (self.leaders_comm.Get_rank(), self.leaders_comm.Get_size())
        self.node_index, self.node_count = self.node_comm.bcast(ids, root=0)
        job, err = _outcome(_draw_job) if self.rank == 0 else (None, None)
        job, err = self.comm.bcast((job, err), root=0)
        if err is not None:
            raise err
        self.job = job
        self._seq = 0

    # ------------------------------------------------------------ names
    @property
    def prefix(self) -> str:
        """The prefix of every block of this job."""
        return "shmkit.mpi.%s." % self.job

    def next_name(self, label: str) -> str:
        """The name the next collective call with ``label`` will use."""
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ValueError('shmkit: mpi: label "%s" is not 1-64 of [A-Za-z0-9_-]' % (label,))
        return "%sn%d.%d.%s" % (self.prefix, self.node_index, self._seq, label)

    # ------------------------------------------------------------ objects
    def shared_array(self, label: str, shape: Union[int, Sequence[int]], dtype: Any = "d",
                     fill: Optional[Callable[[NDArray[Any]], None]] = None) -> NDArray[Any]:
        """A numpy array held once per node (collective over the node).

        The leader creates a typed Array block of ``prod(shape)`` elements
        of ``dtype`` (zero-filled), calls ``fill(array)`` on it if given,
        and only then are the other ranks let attach. Returns this rank's
        zero-copy view, shaped ``shape``; the block stays mapped while the
        view (or anything made from it) lives. Writes by any rank are seen
        by the node's others (synchronise them yourself: a barrier, a lock,
        shmkit atomics).
        """
        dt = numpy.dtype(dtype)
        code = _TYPECODES.get(dt)
        shape_t = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
        count = int(numpy.prod(shape_t, dtype=numpy.int64))
        # Arguments are checked on every rank alike (so all raise together).
        if code is None:
            raise TypeError("shmkit: mpi: dtype %s has no shmkit typecode (use one of %s)"
                            % (dt, ", ".join(sorted(_TYPECODES[d] for d in _TYPECODES))))
        if count < 1 or any(d < 0 for d in shape_t):
            raise ValueError("shmkit: mpi: shape %r holds no element" % (shape_t,))
        # Step 1: the leader names and creates (and fills) the block; its
        # outcome reaches every rank of the node.
        created = None
        if self.is_leader:
            def make() -> Tuple[str, Any]:
                name = self.next_name(label)
                arr = sharedctypes.RawArray(code, count, name=name, track=True)
                if fill is not None:
                    try:
                        fill(numpy.asarray(arr).reshape(shape_t))
                    except BaseException:
                        _unlink_quietly(arr)
                        raise
                return name, arr
            created, err = _outcome(make)
            name = created[0] if created else None
        else:
            name, err = None, None
        name, err = self.node_comm.bcast((name, err), root=0)
        self._seq += 1
        if err is not None:
            raise err
        # Step 2: the others attach; the first failure (lowest node rank)
        # reaches every rank, and the leader removes the block.
        if self.is_leader:
            assert created is not None
            arr, err = created[1], None
        else:
            arr, err = _outcome(lambda: sharedctypes.RawArray(code, count, name=name, create=False,
                                                              track=True))
        first = self.node_comm.allreduce(self.node_rank if err is not None else self.node_size,
                                         op=MPI.MIN)
        if first < self.node_size:
            err = self.node_comm.bcast(err, root=first)
            if self.is_leader:
                _unlink_quietly(arr)
            assert err is not None  # rank `first` failed: its exception
            raise err
        return numpy.asarray(arr).reshape(shape_t)

    def free(self, array: NDArray[Any]) -> None:
        """Collective over the node: after every rank has called it, the
        leader unlinks the block behind ``array`` (the ranks' views stay
        valid until dropped). Optional: without it, the block goes when
        every rank of the job has exited."""
        self.node_comm.Barrier()
        if self.is_leader:
            obj = array
            while True:  # ndarray views -> the memoryview -> the ctypes array
                if isinstance(obj, numpy.ndarray) and obj.base is not None:
                    obj = obj.base
                elif isinstance(obj, memoryview):
                    obj = obj.obj
                else:
                    break
            place = getattr(obj, "__dict__", {}).get("_shmkit_place") if obj is not None else None
            if place is None:
                raise ValueError("shmkit: mpi: free() takes an array made by shared_array()")
            try:
                place.mapping.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Frees the communicators (not collective with anything else)."""
        for c in ("leaders_comm", "node_comm", "comm"):
            comm = getattr(self, c)
            if comm != MPI.COMM_NULL:
                comm.Free()
            setattr(self, c, MPI.COMM_NULL)


def _unlink_quietly(arr: Any) -> None:
    place = arr.__dict__.get("_shmkit_place")
    if place is not None:
        try:
            place.mapping.unlink()
        except FileNotFoundError:
            pass
