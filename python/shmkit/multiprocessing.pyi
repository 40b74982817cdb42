# Types of shmkit.multiprocessing (a module whose names are bound at import
# time): the replaced factories with shmkit's types, everything else
# multiprocessing's own.
from multiprocessing import (
    AuthenticationError as AuthenticationError,
    BufferTooShort as BufferTooShort,
    Manager as Manager,
    Pipe as Pipe,
    Process as Process,
    ProcessError as ProcessError,
    TimeoutError as TimeoutError,
    active_children as active_children,
    allow_connection_pickling as allow_connection_pickling,
    cpu_count as cpu_count,
    current_process as current_process,
    freeze_support as freeze_support,
    get_all_start_methods as get_all_start_methods,
    get_logger as get_logger,
    get_start_method as get_start_method,
    log_to_stderr as log_to_stderr,
    parent_process as parent_process,
    reducer as reducer,
    set_executable as set_executable,
    set_forkserver_preload as set_forkserver_preload,
    set_start_method as set_start_method,
)
from typing import Any, Callable, Iterable, Optional

from . import shared_memory as shared_memory
from . import sharedctypes as sharedctypes
from . import synchronize as synchronize
from .context import ShmkitContext
from .mpqueues import JoinableQueue as _JoinableQueue
from .mpqueues import Queue as _Queue
from .mpqueues import SimpleQueue as _SimpleQueue
from .pool import Pool as _Pool

REPLACED: tuple[str, ...]
__all__: list[str]
SUBDEBUG: int
SUBWARNING: int

def Lock() -> synchronize.Lock: ...
def RLock() -> synchronize.RLock: ...
def Condition(lock: Any = None) -> synchronize.Condition: ...
def Semaphore(value: int = 1) -> synchronize.Semaphore: ...
def BoundedSemaphore(value: int = 1) -> synchronize.BoundedSemaphore: ...
def Event() -> synchronize.Event: ...
def Barrier(parties: int, action: Optional[Callable[..., object]] = None,
            timeout: Optional[float] = None) -> synchronize.Barrier: ...
def RawValue(typecode_or_type: Any, *args: Any) -> Any: ...
def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any: ...
def Value(typecode_or_type: Any, *args: Any, lock: Any = True) -> Any: ...
def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any: ...
def Queue(maxsize: int = 0) -> _Queue: ...
def JoinableQueue(maxsize: int = 0) -> _JoinableQueue: ...
def SimpleQueue() -> _SimpleQueue: ...
def Pool(processes: Optional[int] = None, initializer: Optional[Callable[..., object]] = None,
         initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None, *,
         apply_spin: float = ...) -> _Pool: ...
def get_context(method: Optional[str] = None) -> ShmkitContext: ...
# Submodules of multiprocessing (pool, connection, managers, queues, ...).
def __getattr__(name: str) -> Any: ...
