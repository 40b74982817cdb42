"""shmkit for Python: shared memory, typed shared objects, robust locks,
atomics and queues over the shmkit C++ library, byte-compatible with CPython
and with C++ programs.

Drop-ins for the standard library:

* ``shmkit.shared_memory``: ``SharedMemory``, ``ShareableList``,
  ``SharedMemoryManager`` (``multiprocessing.shared_memory``).
* ``shmkit.sharedctypes``: ``RawValue``, ``RawArray``, ``Value``, ``Array``,
  ``copy``, ``synchronized`` (``multiprocessing.sharedctypes``).
* ``shmkit.synchronize``: ``Lock``, ``RLock``, ``Semaphore``, ... .
"""
import os as _os

__version__ = "0.1.0"

# The tracker's watcher program (shmkit/tracker.hpp) ships inside the
# package; $SHMKIT_WATCHER, when set, still wins.
_watcher = _os.path.join(_os.path.dirname(__file__), "shmkit-watcher")
if "SHMKIT_WATCHER" not in _os.environ and _os.access(_watcher, _os.X_OK):
    _os.environ["SHMKIT_WATCHER"] = _watcher
del _watcher
