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

``apply`` then waits for its result by looking at the result queue
itself, spinning (without the GIL, never sleeping; busy for 20
microseconds, then yielding the CPU between looks) for up to
``apply_spin`` seconds (100 microseconds by default; a keyword of the
constructor, 0 turns it off), and takes its own result off the queue when
it comes in that time: a round trip to a worker that is itself still
spinning for its next task then costs no wake-up at all. Past that time
it leaves the result to the result-handler thread and waits as
multiprocessing's does. A result of another job that the spin takes is
delivered by it when that job has no callbacks (delivering only sets the
job's result), and otherwise put back on the queue for the result-handler
thread when the spin ends, so that callbacks still run in that thread
only. The spin costs up to ``apply_spin`` of CPU per ``apply`` whose task
runs longer.

Every wait for a result without a timeout waits in slices of 0.1 s, where
multiprocessing's waits without one: ``apply``, ``map``, ``starmap``, the
``get()`` and ``wait()`` of the results ``apply_async``, ``map_async`` and
``starmap_async`` return, and the iterators of ``imap`` and
``imap_unordered``. CPython can leave a SIGINT pending through a lock wait
without a timeout (when the signal comes between its last look for
signals and the wait), and Ctrl-C then never interrupts that wait; a timed
wait returns, and the pending ``KeyboardInterrupt`` is raised then. The
results are subclasses of multiprocessing's (``isinstance`` holds), with
the same methods; only the waits differ.

``context`` may be any multiprocessing context: its start method picks the
shmkit context used (``Pool(context=multiprocessing.get_context("spawn"))``
runs on shmkit's spawn context).
"""
from __future__ import annotations

import functools
import multiprocessing as _mp
import multiprocessing.pool as _mp_pool
import queue as _queue
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from .context import shmkit_twin

__all__ = ["Pool"]

# How often apply()'s spin looks at whether the result-handler thread has
# delivered its result meanwhile.
_LOOK = 10e-6
# How long a wait for a result without a timeout waits at a time.
_SLICE = 0.1
# (multiprocessing's chunk runner; typeshed does not declare it.)
_MAPSTAR: Callable[..., Any] = getattr(_mp_pool, "mapstar")

# Why the waits come in slices: CPython runs a signal's handler only between
# bytecodes. A SIGINT whose C-level handler runs after the last look but
# before a lock wait with no timeout is left pending while that wait
# blocks, and the wait (a result's Event.wait() or Condition.wait()) then
# never ends (seen under load: map() not interrupted by Ctrl-C, in stdlib's
# pool as in this one). A wait with a timeout returns, and the pending
# KeyboardInterrupt is raised then.


if TYPE_CHECKING:  # (generic in typeshed only)
    _IMapBase = _mp_pool.IMapIterator[Any]
    _IMapUnorderedBase = _mp_pool.IMapUnorderedIterator[Any]
else:
    _IMapBase = _mp_pool.IMapIterator
    _IMapUnorderedBase = _mp_pool.IMapUnorderedIterator


def _wait(self: Any, timeout: Optional[float] = None) -> None:
    # ApplyResult.wait (MapResult's too) in slices when without a timeout.
    if timeout is not None:
        return _mp_pool.ApplyResult.wait(self, timeout)
    while not self.ready():
        _mp_pool.ApplyResult.wait(self, _SLICE)
    return None


def _next(self: Any, timeout: Optional[float] = None) -> Any:
    # IMapIterator.next (IMapUnorderedIterator's too) in slices when
    # without a timeout.
    if timeout is not None:
        return _mp_pool.IMapIterator.next(self, timeout)
    while True:
        try:
            return _mp_pool.IMapIterator.next(self, _SLICE)
        except _mp.TimeoutError:
            pass


class _ApplyResult(_mp_pool.ApplyResult[Any]):
    """multiprocessing.pool.ApplyResult whose wait() without a timeout (and
    so get()) waits in slices."""

    wait = _wait


class _MapResult(_mp_pool.MapResult[Any]):
    """multiprocessing.pool.MapResult, waiting in slices (_wait)."""

    wait = _wait


class _IMapIterator(_IMapBase):
    """multiprocessing.pool.IMapIterator whose next() without a timeout
    waits in slices."""

    next = _next
    __next__ = _next


class _IMapUnorderedIterator(_IMapUnorderedBase):
    """multiprocessing.pool.IMapUnorderedIterator, waiting in slices
    (_next)."""

    next = _next
    __next__ = _next


class Pool(_mp_pool.Pool):
    """multiprocessing.pool.Pool on shmkit queues (see the module docstring)."""

    # (Set by multiprocessing's __init__; typeshed does not declare them.)
    _ctx: Any
    _change_notifier: Any
    _taskqueue: Any
    _check_running: Callable[[], None]
    _cache: Any
    _result_handler: Any

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable[..., object]] = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None,
                 context: Any = None, *, apply_spin: float = 100e-6) -> None:
        if not apply_spin >= 0:
            self._state = _mp_pool.INIT  # (what Pool.__del__ reads)
            raise ValueError("apply_spin must be a non-negative number of seconds")
        self._apply_spin = float(apply_spin)
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
        result: Any = _ApplyResult(self, callback, error_callback)
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

    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: Any = {}) -> Any:
        """multiprocessing.pool.Pool.apply: the same result, which this
        thread may take off the result queue itself (see the module
        docstring)."""
        result = self.apply_async(func, args, kwds)
        if self._apply_spin > 0:
            self._collect(result)
        return result.get()

    def _map_async(self, *args: Any, **kwargs: Any) -> Any:
        # (map, starmap and their *_async forms) multiprocessing's result,
        # made to wait in slices: the subclass adds no state, so the object
        # only changes class.
        result = super()._map_async(*args, **kwargs)  # type: ignore[misc]
        result.__class__ = _MapResult
        return result

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = 1) -> Any:
        """multiprocessing.pool.Pool.imap, whose iterator waits in slices."""
        return self._imap(super().imap, _IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = 1) -> Any:
        """multiprocessing.pool.Pool.imap_unordered, whose iterator waits in
        slices."""
        return self._imap(super().imap_unordered, _IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(self, imap: Callable[..., Any], cls: type, func: Callable[..., Any], iterable: Iterable[Any],
              chunksize: Any) -> Any:
        self._check_running()
        if chunksize == 1 or not chunksize >= 1:
            # (multiprocessing's: its iterator, or its ValueError; or, for a
            # NaN chunksize, its generator, which then fails as it does)
            result = imap(func, iterable, chunksize)
            if isinstance(result, _mp_pool.IMapIterator):
                result.__class__ = cls
            return result
        # multiprocessing's chunked form hands out a generator over an
        # iterator it keeps to itself; its tasks are those of a chunksize-1
        # imap of mapstar over the chunks, which is what this runs.
        result = imap(_MAPSTAR, _mp_pool.Pool._get_tasks(func, iterable, chunksize), 1)  # type: ignore[attr-defined]
        result.__class__ = cls
        return (item for chunk in result for item in chunk)

    def _collect(self, result: Any) -> None:
        # Take results off the result queue until `result` is ready or the
        # spin's time is out. The result-handler thread reads the same
        # queue: whichever takes a message delivers it. That thread sleeps
        # in the futex while we spin, so a result that comes within the
        # spin is ours to take nearly always; if it wins one, ready() says
        # so at our next look.
        q = self._outqueue._q
        held: list[Any] = []  # for the result-handler thread, put back at the end
        try:
            start = time.monotonic()
            deadline = start + self._apply_spin
            while not result.ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # The spin lets go of the GIL, so that thread can take our
                # result while we look (its pop holds the GIL): look at
                # ready() again at least every _LOOK seconds. The spin is
                # busy for its first 20 us from `start`, then yields the
                # CPU between looks (to a peer that shares it: the worker,
                # on a busy machine).
                try:
                    if not q.spin_for_message(min(left, _LOOK), start):
                        continue
                    msg = q.get_obj(False)
                except _queue.Empty:
                    continue  # another consumer (the result-handler thread) took it
                except (OSError, ValueError):
                    return  # the queue was closed under us: leave it to result.get()
                if not self._deliver(msg, result):
                    held.append(msg)
        finally:
            for msg in held:
                self._give_back(msg)

    def _deliver(self, msg: Any, mine: Any, callbacks_here: bool = False) -> bool:
        # What the result-handler thread does with a message, for those that
        # run no user code: a result of our job, or of a job without
        # callbacks (its _set only stores the value and sets its event).
        # False for the others: the result-handler thread's sentinel (None)
        # and results whose callbacks must run in that thread (unless
        # `callbacks_here`: they run in this thread then).
        if msg is None:
            return False
        job, i, obj = msg
        r = self._cache.get(job)
        if r is None:
            return True  # a job already gone: the result-handler thread drops these too
        if not callbacks_here and r is not mine and (getattr(r, "_callback", None) is not None
                                                     or getattr(r, "_error_callback", None) is not None):
            return False
        r._set(i, obj)
        return True

    def _give_back(self, msg: Any) -> None:
        # Puts a message back for the result-handler thread. The queue has
        # room unless results pile up faster than that thread takes them;
        # then wait for room while it runs (it takes messages until it has
        # taken its sentinel). A message that cannot be put back (the
        # queue is closed, or pickling it again fails) is delivered here.
        q = self._outqueue._q
        while True:
            try:
                q.put_obj(msg, True, 0.05)
                return
            except _queue.Full:
                if self._result_handler.is_alive():
                    continue
            except Exception:
                pass
            break
        self._deliver(msg, None, callbacks_here=True)

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
