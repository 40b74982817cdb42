"""Process-shared synchronisation primitives: a drop-in for
``multiprocessing.synchronize`` on shmkit's futex primitives, plus a robust
lock.

``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
``Event`` and ``Barrier`` have multiprocessing's signatures, results and
exceptions (``acquire(block=True, timeout=None)``, context managers, an RLock
released by a thread that does not hold it raises ``AssertionError``, a
BoundedSemaphore released past its bound raises ``ValueError``, Barrier raises
``threading.BrokenBarrierError``). Unlike CPython's they are

* picklable to *any* process (spawned, forkserver, an unrelated one that
  unpickles the bytes), not only to children being spawned: each primitive
  lives in its own named shared memory block (``/dev/shm/psm_XXXXXXXX``,
  a shmkit typed block of kind ``sync``, see ``shmkit/sync/standalone.hpp``)
  which a C++ process can attach too;
* cheap: ``Lock.acquire``/``release`` are the C methods of the extension type
  (METH_FASTCALL) with no Python wrapper, one CAS each when uncontended.

Waiting releases the GIL and sleeps in 20 ms slices; Ctrl-C (SIGINT) raises
``KeyboardInterrupt`` in a blocked ``acquire``/``wait``, as CPython's does.

Lifetime: the block is removed (``shm_unlink``) when the object that created
it is garbage collected or its process exits, as CPython unlinks its named
semaphores; processes that attached it keep using their mapping. A creator
killed by a signal leaves nothing behind either: the block is registered with
shmkit's resource tracker, whose watcher unlinks it when the creator dies.
Unpickling after the creator is gone raises ``FileNotFoundError``.

Beyond CPython: ``RobustLock``, a lock whose holder may die. The next
``acquire()`` raises ``OwnerDiedError`` *with the lock held*: repair the data,
call ``make_consistent()``, then ``release()``. Releasing without
``make_consistent()`` makes the lock unusable for good: every later acquire
raises ``NotRecoverableError`` (never hangs).
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
import weakref
from time import monotonic as _monotonic
from typing import Any, Callable, Optional, TypeVar, cast

from . import _owned, _sync
from ._sync import NotRecoverableError, OwnerDiedError

__all__ = [
    "Lock", "RLock", "RobustLock", "Semaphore", "BoundedSemaphore", "Condition",
    "Event", "Barrier", "OwnerDiedError", "NotRecoverableError",
]

_LOCK_TYPES = (_sync.Mutex, _sync.RecursiveMutex, _sync.RobustMutex)
_T = TypeVar("_T", bound="_Shared")
_warned_untracked = False


def _new_block(prim: Any, payload_init: bytes = b"", params: tuple[int, ...] = ()) -> "_sync.TypedBlock":
    """A new named block holding one `prim` (zero bytes, or payload_init)."""
    args = (None, _sync.KIND_SYNC, None, prim.TYPE_NAME, prim.SIZE, prim.ALIGN, 1, 0, prim.SIZE,
            params, b"", payload_init)

    def warn(e: OSError) -> None:
        # No tracker watcher program (an unusual install): the block is
        # still unlinked by its creator's finalizer, only not after SIGKILL.
        global _warned_untracked
        if not _warned_untracked:
            warnings.warn(f"shmkit.synchronize: resource tracker unavailable ({e}); a creator "
                          "killed by a signal will leave its blocks in /dev/shm",
                          RuntimeWarning, stacklevel=5)
            _warned_untracked = True

    return _owned.make_tracked(lambda t: _sync.TypedBlock.create(*args, track=t), True, warn=warn)


def _attach_block(prim: Any, name: str) -> "_sync.TypedBlock":
    if not isinstance(name, str):
        raise TypeError(f"block name must be str, not {type(name).__name__}")
    return _sync.TypedBlock.attach(name, _sync.KIND_SYNC, None, prim.TYPE_NAME, prim.SIZE,
                                   prim.ALIGN)


def _own(obj: Any, block: "_sync.TypedBlock") -> None:
    # Only the creating process removes the name (a forked child holds a copy
    # of the creator's object), and only while the name still holds the file
    # created here (its identity taken right after the create): a block
    # re-created under the name by someone else is left alone.
    weakref.finalize(obj, _owned.unlink_if_creator, block, os.getpid(), _owned.file_id(block.name))


def _make(cls: type, prim: Any, block: "_sync.TypedBlock") -> Any:
    self = prim.__new__(cls, block, block.payload_offset)
    self._block = block
    return self


def _rebuild(cls: type, prim: Any, name: str, state: Any = None) -> Any:
    self = _make(cls, prim, _attach_block(prim, name))
    if state is not None:
        self._setstate(state)
    return self


class _Shared:
    """Mixin: creation, naming and pickling of a primitive in its own block."""

    __slots__ = ()
    _prim: Any
    _block: _sync.TypedBlock

    @classmethod
    def _create(cls: type[_T], payload_init: bytes = b"", params: tuple[int, ...] = ()) -> _T:
        block = _new_block(cls._prim, payload_init, params)
        self = _make(cls, cls._prim, block)
        _own(self, block)
        return cast(_T, self)

    @classmethod
    def attach(cls: type[_T], name: str) -> _T:
        """The primitive in block `name` (made by another process, Python or
        C++: shmkit::StandaloneSync). FileNotFoundError if there is none,
        ValueError if the block holds something else."""
        return cast(_T, _rebuild(cls, cls._prim, name))

    @property
    def name(self) -> str:
        """The name of the block holding this primitive (attachable by C++)."""
        return self._block.name

    def _getstate(self) -> Any:
        return None

    def _setstate(self, state: Any) -> None:
        pass

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._prim, self._block.name, self._getstate()))


class Lock(_Shared, _sync.Mutex):
    """multiprocessing.Lock: a non-recursive lock any process may release."""

    __slots__ = ("_block",)
    _prim = _sync.Mutex

    def __new__(cls, *, ctx: Any = None) -> "Lock":
        return cls._create()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({'locked' if self.locked() else 'unlocked'}) {self.name}>"


class RLock(_Shared, _sync.RecursiveMutex):
    """multiprocessing.RLock: the owning thread may acquire it again."""

    __slots__ = ("_block",)
    _prim = _sync.RecursiveMutex

    def __new__(cls, *, ctx: Any = None) -> "RLock":
        return cls._create()

    def __repr__(self) -> str:
        mine = self._is_mine()
        return f"<{type(self).__name__}(owned={mine}, count={self._count()}) {self.name}>"


class RobustLock(_Shared, _sync.RobustMutex):
    """A lock that survives a killed holder (shmkit::RobustMutex).

    acquire() raises OwnerDiedError when the previous holder died holding
    it; the caller then holds the lock, repairs what it guards, calls
    make_consistent() and release(). Not recursive; only the holder may
    release.
    """

    __slots__ = ("_block",)
    _prim = _sync.RobustMutex

    def __new__(cls, *, ctx: Any = None) -> "RobustLock":
        return cls._create()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._state()}) {self.name}>"


class Semaphore(_Shared, _sync.Semaphore):
    """multiprocessing.Semaphore(value=1)."""

    __slots__ = ("_block",)
    _prim = _sync.Semaphore

    def __new__(cls, value: int = 1, *, ctx: Any = None) -> "Semaphore":
        return cls._create(_sync.Semaphore._layout(value, 0))

    # multiprocessing.queues.Queue, built on a context's semaphores (as
    # ProcessPoolExecutor's call queue is, on a shmkit context), reads its
    # semaphores through `_semlock` (qsize, full, JoinableQueue.join).
    @property
    def _semlock(self) -> "Semaphore":
        return self

    def _get_value(self) -> int:
        return self.get_value()

    def _is_zero(self) -> bool:
        return self.get_value() == 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self.get_value()}) {self.name}>"


class BoundedSemaphore(Semaphore):
    """multiprocessing.BoundedSemaphore(value=1): release past the initial
    value raises ValueError."""

    __slots__ = ()

    def __new__(cls, value: int = 1, *, ctx: Any = None) -> "BoundedSemaphore":
        return cls._create(_sync.Semaphore._layout(value, value))

    def __repr__(self) -> str:
        return (f"<{type(self).__name__}(value={self.get_value()}, "
                f"maxvalue={self._max_value()}) {self.name}>")


class Event(_Shared, _sync.Event):
    """multiprocessing.Event: set(), clear(), is_set(), wait(timeout=None)."""

    __slots__ = ("_block",)
    _prim = _sync.Event

    def __new__(cls, *, ctx: Any = None) -> "Event":
        return cls._create()

    def __repr__(self) -> str:
        set_status = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {set_status}>"


class Condition:
    """multiprocessing.Condition(lock=None): `lock` is a shmkit Lock, RLock or
    RobustLock (a new RLock by default).

    The algorithm is multiprocessing's (three shmkit Semaphores: sleepers,
    woken, and the one the sleepers wait on), so notify(n) wakes exactly n
    waiters and a waiter that times out is accounted for. wait() releases
    every level of an RLock and restores them.
    """

    def __init__(self, lock: Any = None, *, ctx: Any = None) -> None:
        if lock is None:
            lock = RLock()
        if not isinstance(lock, _LOCK_TYPES):
            raise TypeError("shmkit Condition needs a shmkit lock (Lock, RLock, RobustLock), "
                            f"not {type(lock).__name__}")
        self.__setstate__((lock, Semaphore(0), Semaphore(0), Semaphore(0)))

    _lock: Any

    def __getstate__(self) -> tuple[Any, Semaphore, Semaphore, Semaphore]:
        return (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore)

    def __setstate__(self, state: tuple[Any, Semaphore, Semaphore, Semaphore]) -> None:
        (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore) = state
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *args: object) -> None:
        self._lock.__exit__(*args)

    def __repr__(self) -> str:
        waiters = self._sleeping_count.get_value() - self._woken_count.get_value()
        return f"<Condition({self._lock!r}, {waiters})>"

    def _levels(self) -> int:
        """How many times the caller holds the lock (AssertionError if not)."""
        lock = self._lock
        if isinstance(lock, _sync.RecursiveMutex):
            n: int = lock._count()
            if n == 0:
                raise AssertionError("must acquire() condition before using wait()")
            return n
        if isinstance(lock, _sync.Mutex) and not lock.locked():
            raise AssertionError("must acquire() condition before using wait()")
        return 1

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Releases the lock, sleeps until notified or `timeout` seconds,
        re-acquires it. False if the timeout passed."""
        levels = self._levels()
        # Announce ourselves, then give up the lock entirely.
        self._sleeping_count.release()
        for _ in range(levels):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            # Tell the notifier we are awake (or gave up), then take the lock back.
            self._woken_count.release()
            for _ in range(levels):
                self._lock.acquire()

    def notify(self, n: int = 1) -> None:
        """Wakes up to n waiters and returns once they have woken."""
        self._levels()
        if self._wait_semaphore.acquire(False):
            raise AssertionError("wait semaphore was not zero")
        # Waiters that timed out since the last notify were counted as
        # sleeping and have released woken_count: cancel them out.
        while self._woken_count.acquire(False):
            if not self._sleeping_count.acquire(False):
                raise AssertionError("woken waiters outnumber sleepers")
        woken = 0
        while woken < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            woken += 1
        if woken:
            for _ in range(woken):
                self._woken_count.acquire()
            # Waiters that timed out meanwhile did not take their unit.
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self) -> None:
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """Waits until predicate() is true (CPython's wait_for); returns its
        last value."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else _monotonic() + timeout
        waittime = timeout
        while not result:
            if endtime is not None:
                waittime = endtime - _monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class _BarrierWords:
    """The block holding a Barrier's two shared int32 (state, count)."""

    TYPE_NAME = "shmkit.synchronize.Barrier/v1"
    SIZE = 8
    ALIGN = 4

    def __init__(self, block: "_sync.TypedBlock") -> None:
        self._block = block
        off = block.payload_offset
        self.array = memoryview(cast(Any, block))[off:off + 8].cast("i")  # (a buffer)

    @classmethod
    def create(cls) -> "_BarrierWords":
        block = _new_block(cls)
        self = cls(block)
        _own(self, block)
        return self

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_BarrierWords.attach, (self._block.name,))

    @classmethod
    def attach(cls, name: str) -> "_BarrierWords":
        return cls(_attach_block(cls, name))


class Barrier(threading.Barrier):
    """multiprocessing.Barrier(parties, action=None, timeout=None): threading's
    algorithm (abort, reset, broken, n_waiting, BrokenBarrierError) over a
    shmkit Condition, its state in shared memory."""

    def __init__(self, parties: int, action: Optional[Callable[[], None]] = None,
                 timeout: Optional[float] = None, *, ctx: Any = None) -> None:
        if parties < 1:
            raise ValueError("parties must be > 0")
        self.__setstate__((parties, action, timeout, Condition(), _BarrierWords.create()))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self._parties, self._action, self._timeout, self._cond, self._words) = state
        self._array: memoryview = self._words.array

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._parties, self._action, self._timeout, self._cond, self._words)

    @property
    def _state(self) -> int:
        return self._array[0]

    @_state.setter
    def _state(self, value: int) -> None:
        self._array[0] = value

    @property
    def _count(self) -> int:
        return self._array[1]

    @_count.setter
    def _count(self, value: int) -> None:
        self._array[1] = value
