"""multiprocessing contexts whose shared objects are shmkit's.

``shmkit.get_context(method=None)`` returns, for each start method (fork,
spawn, forkserver), a context derived from multiprocessing's own
(``multiprocessing.context.ForkContext`` and so on), so that code written
for a context (``ctx.Process``, ``ctx.Pool``, ``ProcessPoolExecutor(mp_context=
ctx)``) takes it unchanged:

* ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
  ``Event``, ``Barrier`` are ``shmkit.synchronize``'s;
* ``Value``, ``Array``, ``RawValue``, ``RawArray`` are
  ``shmkit.sharedctypes``'s;
* ``Queue``, ``SimpleQueue``, ``JoinableQueue`` are shmkit's object queues
  (``shmkit.Queue`` and friends);
* ``Pool`` is ``shmkit.pool.Pool`` (multiprocessing's Pool with its task and
  result traffic on shmkit queues);
* everything else (``Process``, ``Pipe``, ``Manager``, ``cpu_count``,
  ``set_executable``, ``set_forkserver_preload``, the exceptions...) is
  multiprocessing's own, untouched.

``get_context(None)`` is the context of multiprocessing's current start
method, fixed at the call, as ``multiprocessing.get_context()`` is;
``ctx.get_context(m)`` on any shmkit context is shmkit's context for ``m``.
The start method itself is multiprocessing's single setting:
``shmkit.multiprocessing.set_start_method`` sets it for both.

``DEFAULT`` is the context behind ``shmkit.multiprocessing``'s top-level
functions: each call follows the start method current at that call.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.context as _mpc
from typing import Any, Callable, Iterable, Optional, cast

__all__ = ["get_context", "ShmkitContext", "ForkContext", "SpawnContext", "ForkServerContext",
           "DefaultContext", "DEFAULT", "is_shmkit_context"]


class ShmkitContext(_mpc.BaseContext):
    """What every shmkit context overrides (multiprocessing's BaseContext
    gives the rest). Not used alone: see ForkContext and its siblings."""

    # The concrete context behind a call (for the default context, the one
    # of the start method current at the call).
    def get_context(self, method: Optional[str] = None) -> Any:
        if method is None:
            return self
        try:
            ctx = _concrete_contexts[method]
        except KeyError:
            raise ValueError("cannot find context for %r" % (method,)) from None
        ctx._check_available()
        return ctx

    # --- shmkit.synchronize

    def Lock(self) -> Any:
        """A shmkit.synchronize.Lock."""
        from .synchronize import Lock
        return Lock()

    def RLock(self) -> Any:
        """A shmkit.synchronize.RLock."""
        from .synchronize import RLock
        return RLock()

    def Condition(self, lock: Any = None) -> Any:
        """A shmkit.synchronize.Condition (its lock a shmkit Lock or RLock)."""
        from .synchronize import Condition
        return Condition(lock)

    def Semaphore(self, value: int = 1) -> Any:
        """A shmkit.synchronize.Semaphore."""
        from .synchronize import Semaphore
        return Semaphore(value)

    def BoundedSemaphore(self, value: int = 1) -> Any:
        """A shmkit.synchronize.BoundedSemaphore."""
        from .synchronize import BoundedSemaphore
        return BoundedSemaphore(value)

    def Event(self) -> Any:
        """A shmkit.synchronize.Event."""
        from .synchronize import Event
        return Event()

    def Barrier(self, parties: int, action: Optional[Callable[..., object]] = None,
                timeout: Optional[float] = None) -> Any:
        """A shmkit.synchronize.Barrier."""
        from .synchronize import Barrier
        return Barrier(parties, cast(Optional[Callable[[], None]], action), timeout)

    # --- shmkit.sharedctypes

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """A shmkit.sharedctypes.RawValue."""
        from .sharedctypes import RawValue
        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """A shmkit.sharedctypes.RawArray."""
        from .sharedctypes import RawArray
        return RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """A shmkit.sharedctypes.Value (lock=True: its lock in its block)."""
        from .sharedctypes import Value
        return Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
        """A shmkit.sharedctypes.Array."""
        from .sharedctypes import Array
        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self.get_context())

    # --- shmkit's object queues and the pool on them

    def Queue(self, maxsize: int = 0) -> Any:
        """A shmkit.Queue."""
        from .mpqueues import Queue
        return Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize: int = 0) -> Any:
        """A shmkit.JoinableQueue."""
        from .mpqueues import JoinableQueue
        return JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self) -> Any:
        """A shmkit.SimpleQueue."""
        from .mpqueues import SimpleQueue
        return SimpleQueue(ctx=self.get_context())

    def Pool(self, processes: Optional[int] = None, initializer: Optional[Callable[..., object]] = None,
             initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None, *,
             apply_spin: float = 100e-6) -> Any:
        """A shmkit.pool.Pool: multiprocessing's Pool on shmkit queues
        (apply_spin: how long apply() looks for its own result itself)."""
        from .pool import Pool
        return Pool(processes, initializer, initargs, maxtasksperchild, context=self.get_context(),
                    apply_spin=apply_spin)

    def __repr__(self) -> str:
        return "<shmkit context %s>" % (self.get_start_method(allow_none=True),)


class ForkContext(ShmkitContext, _mpc.ForkContext):
    """multiprocessing's fork context with shmkit's shared objects."""


class SpawnContext(ShmkitContext, _mpc.SpawnContext):
    """multiprocessing's spawn context with shmkit's shared objects."""


class ForkServerContext(ShmkitContext, _mpc.ForkServerContext):
    """multiprocessing's forkserver context with shmkit's shared objects."""


_concrete_contexts: dict[str, ShmkitContext] = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


class DefaultContext(ShmkitContext):
    """The context behind shmkit.multiprocessing's functions: each factory
    uses the shmkit context of multiprocessing's start method current at
    the call; the start method is multiprocessing's own setting."""

    Process = _mpc.Process  # multiprocessing.Process (follows the start method)

    def get_context(self, method: Optional[str] = None) -> Any:
        if method is None:
            return _concrete_contexts[multiprocessing.get_context().get_start_method()]
        return super().get_context(method)

    def get_start_method(self, allow_none: bool = False) -> Any:
        return multiprocessing.get_start_method(allow_none)

    def set_start_method(self, method: Optional[str], force: bool = False) -> None:
        multiprocessing.set_start_method(method, force)

    def get_all_start_methods(self) -> list[str]:
        return list(multiprocessing.get_all_start_methods())

    def __repr__(self) -> str:
        return "<shmkit default context (start method %s)>" % (self.get_start_method(allow_none=True),)


DEFAULT = DefaultContext()


def get_context(method: Optional[str] = None) -> Any:
    """shmkit's context for start method `method` ("fork", "spawn",
    "forkserver"; None: multiprocessing's current one, which this fixes
    as multiprocessing.get_context() does). ValueError for an unknown
    method."""
    return DEFAULT.get_context(method)


def is_shmkit_context(ctx: Any) -> bool:
    """Whether ctx is one of shmkit's contexts."""
    return isinstance(ctx, ShmkitContext)


def shmkit_twin(ctx: Any) -> Any:
    """shmkit's concrete context for the start method of `ctx` (None:
    the current one); ctx itself if it is already a concrete shmkit one."""
    if ctx is None:
        return get_context()
    if isinstance(ctx, ShmkitContext):
        return ctx.get_context()
    return get_context(ctx.get_start_method())
