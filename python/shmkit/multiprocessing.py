"""``import shmkit.multiprocessing as multiprocessing``: the one-line switch.

Every top-level name of the ``multiprocessing`` package is here. Those that
make shared objects are shmkit's, through ``shmkit.context.DEFAULT`` (the
shmkit context of multiprocessing's current start method, looked up at each
call):

    Lock RLock Semaphore BoundedSemaphore Condition Event Barrier
    Value Array RawValue RawArray Queue SimpleQueue JoinableQueue Pool
    get_context

and so are the submodules ``shared_memory``, ``sharedctypes`` and
``synchronize`` (shmkit's drop-ins). Everything else is multiprocessing's
own object, not a copy: ``Process``, ``Pipe``, ``Manager``,
``current_process``, ``active_children``, ``cpu_count``, the exceptions,
``set_start_method``/``get_start_method`` (one setting, shared with
multiprocessing), ``set_executable``, ``set_forkserver_preload``,
``freeze_support``, ``get_logger``..., and any submodule not named above
(``multiprocessing.pool``, ``.connection``, ``.managers``, ``.queues``,
``.process``, ``.util``...), which an attribute of this module reaches as
``multiprocessing.<name>`` does.
"""
import multiprocessing as _mp

from . import shared_memory, sharedctypes, synchronize
from .context import DEFAULT as _DEFAULT

# What this module replaces: methods of shmkit's default context (each
# looks up the start method at its call). Every other top-level name is
# multiprocessing's own object, not a copy.
REPLACED = ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier",
            "Value", "Array", "RawValue", "RawArray", "Queue", "SimpleQueue", "JoinableQueue",
            "Pool", "get_context")
__all__ = list(_mp.__all__)
for _name in __all__:
    globals()[_name] = getattr(_DEFAULT if _name in REPLACED else _mp, _name)
del _name

SUBDEBUG = _mp.SUBDEBUG
SUBWARNING = _mp.SUBWARNING


def __getattr__(name):
    # Submodules (multiprocessing.pool, .connection, .managers, ...) and
    # anything multiprocessing gains later: multiprocessing's own.
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(_mp, name)
    except AttributeError:
        pass
    import importlib
    try:
        return importlib.import_module("multiprocessing." + name)
    except ImportError:
        raise AttributeError("module %r has no attribute %r" % (__name__, name)) from None


def __dir__():
    return sorted(set(globals()) | set(dir(_mp)))
