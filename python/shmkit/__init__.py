"""shmkit for Python: shared memory, typed shared objects, robust locks,
atomics and queues over the shmkit C++ library, byte-compatible with CPython
and with C++ programs that use shmkit. Linux only.

The map of the package:

* ``shmkit.shared_memory``: ``SharedMemory``, ``ShareableList``,
  ``SharedMemoryManager``; a drop-in for ``multiprocessing.shared_memory``
  (the same names, signatures, exceptions and bytes).
* ``shmkit.sharedctypes``: ``RawValue``, ``RawArray``, ``Value``, ``Array``,
  ``copy``, ``synchronized``; a drop-in for ``multiprocessing.sharedctypes``,
  shared with C++ by name, with atomic ``fetch_add`` and friends.
* ``shmkit.synchronize``: ``Lock``, ``RLock``, ``Semaphore``,
  ``BoundedSemaphore``, ``Condition``, ``Event``, ``Barrier`` (as
  ``multiprocessing``'s), plus ``RobustLock``, whose holder's death is
  reported (``OwnerDiedError``) instead of hanging the others.
* ``shmkit.queues``: ``SpscQueue``, ``MpmcQueue`` (lock-free, typed items),
  ``SeqLock``, ``BroadcastRing``; C++ programs attach them by name.
* ``shmkit.mpqueues``: ``Queue``, ``SimpleQueue``, ``JoinableQueue`` (also
  as ``shmkit.Queue`` and so on): drop-ins for multiprocessing's, Python
  objects of any size over one shared ring of bytes.
* ``shmkit.get_context(method=None)``: a ``multiprocessing`` context whose
  locks, shared values and queues are shmkit's, and whose ``Pool`` runs on
  shmkit queues (``shmkit.context``, ``shmkit.pool``);
  ``import shmkit.multiprocessing as multiprocessing`` is the one-line
  switch for a whole program.
* ``shmkit.mpi``: with mpi4py, numpy arrays held once per node.
* ``python -m shmkit ls|show|rm|gc``: the ``shmkit`` command-line tool.

Every block a shmkit process creates with ``track=True`` (the default) is
unlinked by shmkit's tracker once every process that registered it has
died, and never while one lives; a block another program created is never
removed by shmkit.
"""
import os as _os
import typing as _typing

__version__ = "0.1.0"
# shmkit.mpi is left out: it needs mpi4py, which `from shmkit import *` must not.
__all__ = ["shared_memory", "sharedctypes", "synchronize", "queues", "mpqueues", "Queue",
           "SimpleQueue", "JoinableQueue", "get_context", "__version__"]

# The tracker's watcher program (shmkit/tracker.hpp) ships inside the
# package; $SHMKIT_WATCHER, when set, still wins.
_watcher = _os.path.join(_os.path.dirname(__file__), "shmkit-watcher")
if "SHMKIT_WATCHER" not in _os.environ and _os.access(_watcher, _os.X_OK):
    _os.environ["SHMKIT_WATCHER"] = _watcher
del _watcher


def get_context(method: "_typing.Optional[str]" = None) -> "_typing.Any":
    """A multiprocessing context for start method `method` ("fork", "spawn",
    "forkserver"; None: multiprocessing's current one) whose shared objects
    (locks, values, queues, Pool's queues) are shmkit's; Process, Pipe and
    Manager stay multiprocessing's. See shmkit.context."""
    from .context import get_context as _get_context
    return _get_context(method)


_MPQUEUES = ("Queue", "SimpleQueue", "JoinableQueue")


def __getattr__(name: str) -> object:
    # shmkit.Queue and friends, imported on first use (they import
    # multiprocessing's pickler; a plain `import shmkit` does not).
    if name in _MPQUEUES:
        from . import mpqueues
        return getattr(mpqueues, name)
    raise AttributeError(f"module 'shmkit' has no attribute {name!r}")
