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

``context`` may be any multiprocessing context: its start method picks the
shmkit context used (``Pool(context=multiprocessing.get_context("spawn"))``
runs on shmkit's spawn context).
"""
from __future__ import annotations

import multiprocessing.pool as _mp_pool
import time
from typing import Any, Callable, Iterable, Optional

from .context import shmkit_twin

__all__ = ["Pool"]


class Pool(_mp_pool.Pool):
    """multiprocessing.pool.Pool on shmkit queues (see the module docstring)."""

    # (Set by multiprocessing's __init__; typeshed does not declare them.)
    _ctx: Any
    _change_notifier: Any

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable[..., object]] = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None,
                 context: Any = None) -> None:
        super().__init__(processes, initializer, initargs, maxtasksperchild,
                         context=shmkit_twin(context))

    def _setup_queues(self) -> None:
        # (multiprocessing's goes through q._writer.send/q._reader.recv;
        # shmkit's SimpleQueue has those facades too, but put/get are the
        # queue's own calls.)
        self._inqueue = self._ctx.SimpleQueue()
        self._outqueue = self._ctx.SimpleQueue()
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
