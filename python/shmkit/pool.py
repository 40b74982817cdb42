"""multiprocessing's Pool with its task and result traffic on shmkit queues.

``shmkit.pool.Pool`` (what a shmkit context's ``ctx.Pool(...)`` returns) is
a subclass of ``multiprocessing.pool.Pool``: the same API (``map``,
``imap``, ``imap_unordered``, ``starmap``, ``apply``, the ``*_async`` forms
with ``callback``/``error_callback``, ``maxtasksperchild``, ``initializer``,
``close``/``terminate``/``join``, the context manager), the same worker
function, the same handler threads. What changes is the three queues its
``context`` makes: the task queue the workers read (``_inqueue``), the
result queue they write (``_outqueue``) and the change notifier that wakes
the worker-handler thread are ``shmkit.SimpleQueue``s of that shmkit
context, so a task and its result each cost one pickle and one message in a
shared ring instead of a pipe write and read under a lock. The handler
worker-handler thread waits (``multiprocessing.connection.wait``) on the
change notifier's doorbell and the workers' sentinels; unlike
multiprocessing's it does not also wake for every result.

A worker that dies (killed, ``os._exit``) is replaced by the worker-handler
thread, as multiprocessing's; the task it was running is lost as with
multiprocessing: its result never arrives, so ``get()`` without a timeout
waits for ever and ``get(timeout)`` raises ``multiprocessing.TimeoutError``
(use ``concurrent.futures.ProcessPoolExecutor``, which reports
``BrokenProcessPool``, when a death must be reported). A worker killed in
the middle of taking a task from the queue loses at most that task (the
shmkit queue's crash contract); no other task or result is lost or
corrupted, and the pool goes on.

``terminate()`` stops the workers with SIGTERM while some may be waiting in
the task queue; the queue's crash contract makes that safe (stdlib instead
takes the task queue's reader lock for good first).

``apply``/``apply_async`` put their task into the task queue themselves,
in the calling thread, when nothing is waiting for the task-handler thread
and the queue has room at once; otherwise (and for ``map`` and friends)
the task goes through that thread, as multiprocessing's. A hand-off to a
thread costs a wake-up (tens of microseconds on a VM), a third of the
round trip. What multiprocessing promises still holds: ``apply_async``
never blocks, a task that cannot be pickled fails its own result
(``get()`` raises the pickling error), and tasks are not ordered between
jobs (a task may overtake a ``map`` whose chunks the thread is still
putting, as two workers' tasks overtake each other).

``context`` may be any multiprocessing context: its start method picks the
shmkit context used (``Pool(context=multiprocessing.get_context("spawn"))``
runs on shmkit's spawn context).
"""
from __future__ import annotations

import functools
import multiprocessing.pool as _mp_pool
import queue as _queue
import time
from typing import Any, Callable, Iterable, Optional

from .context import shmkit_twin

__all__ = ["Pool"]


class Pool(_mp_pool.Pool):
    """multiprocessing.pool.Pool on shmkit queues (see the module docstring)."""

    # (Set by multiprocessing's __init__; typeshed does not declare them.)
    _ctx: Any
    _change_notifier: Any
    _taskqueue: Any
    _check_running: Callable[[], None]

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable[..., object]] = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None,
                 context: Any = None) -> None:
        super().__init__(processes, initializer, initargs, maxtasksperchild,
                         context=shmkit_twin(context))

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: Any = {},
                    callback: Optional[Callable[[Any], object]] = None,
                    error_callback: Optional[Callable[[BaseException], object]] = None) -> Any:
        """multiprocessing.pool.Pool.apply_async: the same result, put into
        the task queue by this thread when it can be done without waiting
        (see the module docstring)."""
        self._check_running()
        # (ApplyResult's _job and _set are not in typeshed either.)
        result: Any = _mp_pool.ApplyResult(self, callback, error_callback)
        task = (result._job, 0, func, args, kwds)
        # Behind tasks the task-handler thread has not taken yet, the task
        # waits its turn there (the queue keeps the callers' order).
        if self._taskqueue.empty():
            try:
                self._put_nowait(task)
                return result
            except _queue.Full:  # the ring has no room now: never block here
                pass
            except BaseException as e:  # what the task-handler thread would report
                result._set(0, (False, e))
                if not isinstance(e, Exception):
                    raise  # (KeyboardInterrupt: the task was not put)
                return result
        self._taskqueue.put(([task], None))
        return result

    def _setup_queues(self) -> None:
        # (multiprocessing's goes through q._writer.send/q._reader.recv;
        # shmkit's SimpleQueue has those facades too, but put/get are the
        # queue's own calls.)
        self._inqueue = self._ctx.SimpleQueue()
        self._outqueue = self._ctx.SimpleQueue()
        # apply_async's put, which never waits (queue.Full instead).
        self._put_nowait = functools.partial(self._inqueue._q.put_obj, block=False)
        self._quick_put = self._inqueue.put
        self._quick_get = self._outqueue.get

    def _get_sentinels(self) -> list[Any]:
        # What the worker-handler thread waits on besides the workers'
        # sentinels: the change notifier only. multiprocessing's also waits
        # on the result queue, so that thread wakes for every result; it
        # needs none of them (the cache's emptying, close and terminate all
        # put into the notifier, and a worker's exit is its sentinel), and
        # leaving the result queue's doorbell unarmed spares each result a
        # write to it and the result-handler thread a drain.
        return [self._change_notifier._reader]

    @staticmethod
    def _help_stuff_finish(inqueue: Any, task_handler: Any, size: int) -> None:
        # terminate(): the task-handler thread may be blocked putting into a
        # full task queue; take tasks out, without ever blocking, until it
        # has seen TERMINATE and left or the queue is empty. (multiprocessing
        # takes the task queue's reader lock for good first, so that its
        # poll-then-recv cannot lose a race to a worker; shmkit's workers
        # take no lock, so a blocking get here could wait for ever.)
        while task_handler.is_alive():
            if not inqueue.get_many(64, block=False):
                break
            time.sleep(0)
