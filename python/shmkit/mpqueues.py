"""Python objects between processes: ``Queue``, ``SimpleQueue`` and
``JoinableQueue``, drop-ins for ``multiprocessing``'s, over one shared ring
of bytes (``shmkit._queues.ByteQueue``, the C++ ``shmkit::ByteQueue``).

* The same signatures, results and exceptions as ``multiprocessing.Queue``
  and friends: ``Queue(maxsize=0, *, ctx=None)``, ``put(obj, block=True,
  timeout=None)`` (``queue.Full``), ``get(block=True, timeout=None)``
  (``queue.Empty``), ``put_nowait``/``get_nowait``, ``qsize``, ``empty``,
  ``full``, ``close`` (then ``ValueError`` from ``put``/``get``),
  ``join_thread``, ``cancel_join_thread``; ``JoinableQueue.task_done``/``join``;
  ``SimpleQueue.put/get/empty/close``. Beyond CPython: ``put_many(objs)`` and
  ``get_many(max)`` (batches).
* Objects are pickled with ``multiprocessing.reduction.ForkingPickler``
  (protocol 5, one pickler reused per thread), so shmkit objects,
  SharedMemory blocks, Values and locks travel by name, as with
  multiprocessing. A ``bytes`` object is not pickled at all (one tag byte,
  then its bytes). A ``put`` made while one pickles on the same thread (by
  a reducer, a ``__del__``, a signal handler) pickles with a pickler of its
  own, and a ``put`` that fails part-way leaves nothing for the next.
* With a maxsize, ``get`` releases the semaphore once it has taken the
  message and before unpickling it, as CPython does: a message that fails
  to unpickle still gives its room back.
* Out-of-band buffers (pickle protocol 5: numpy arrays, ``PickleBuffer``)
  are not copied into the pickle: their bytes are gathered straight into the
  message (no concatenation in Python), and on ``get`` the object is
  rebuilt over slices of the received message. Zero copy on the consumer
  side when the message travelled out of line (longer than
  ``out_of_line_threshold``, 1 MiB by default: its own block, mapped by the
  consumer; a numpy array received keeps that mapping alive); a message in
  the ring is copied once out of it (the buffers into ``bytearray``s, so
  arrays come back writable, as multiprocessing's do).
* Sizes: any. A message up to the threshold travels in the ring
  (``ring_bytes``, 4 MiB by default; a keyword beyond CPython's signature),
  longer ones out of line.
* Waiting releases the GIL; Ctrl-C (SIGINT) interrupts any blocking call.
* Waitable: ``SimpleQueue._reader.fileno()`` (and ``Queue._reader``) is the
  queue's doorbell, a FIFO readable while a message may be there, for
  ``multiprocessing.connection.wait``, selectors and asyncio
  (``loop.add_reader``). It costs nothing until someone asks for it; after
  that a producer writes one byte per empty-to-non-empty transition.
* Crash semantics (shmkit/lockfree/byte_queue.hpp): a producer or consumer
  killed mid-message loses at most that message (``losses``); the others go
  on. A stopped one (SIGSTOP) delays only its own message.

Differences from CPython:

* No feeder thread: ``put`` writes into shared memory before it returns
  (a pickling error is raised by ``put`` itself), so ``join_thread`` and
  ``cancel_join_thread`` have nothing to do, and a process may exit at once
  after a ``put``: its messages stay in the queue.
* ``maxsize=0`` is bounded by the ring: when the ring is full (4 MiB of
  small messages, about 30,000 small dicts), ``put`` waits for room
  (``block=False``: ``queue.Full``). CPython's unbounded queue buffers in
  the producer's feeder thread instead.
* ``qsize()`` with ``maxsize=0`` counts records in the ring (messages being
  written and read included); with a maxsize, as CPython, from the
  semaphore.
* ``SimpleQueue._rlock``/``_wlock`` are process-local locks (the ring needs
  none); ``_reader``/``_writer`` are facades over the one queue:
  ``recv``/``poll``/``fileno``/``close`` and ``send``/``close``.
* A queue pickles only while spawning a child (``assert_spawning``, as
  CPython), as its block's name: it travels by name. The creating object
  removes the block when it is collected or its process exits.
"""
from __future__ import annotations

import os
import pickle
import secrets
import struct
import threading
import time
import types
import weakref
from multiprocessing import context as _context
from multiprocessing import util as _util
from multiprocessing.reduction import ForkingPickler
from queue import Empty, Full
from typing import Any, Iterable, Optional

from . import _owned, _queues

__all__ = ["Queue", "SimpleQueue", "JoinableQueue", "Full", "Empty"]

DEFAULT_RING_BYTES = 1 << 22
DEFAULT_OUT_OF_LINE_THRESHOLD = 1 << 20

try:
    import multiprocessing.synchronize as _mp_synchronize
    _SEM_VALUE_MAX: int = getattr(_mp_synchronize, "SEM_VALUE_MAX")
except ImportError:  # pragma: no cover - no sem_open on this platform
    _SEM_VALUE_MAX = 2 ** 31 - 1

# ------------------------------------------------------------ encoding
#
# A message is one of
#   * a pickle (protocol 5: it starts with PROTO, 0x80);
#   * _TAG_BYTES then the bytes of a `bytes` object (not pickled);
#   * _TAG_BUFFERS, the header (_HEAD: tag, buffer count, pickle length),
#     the buffer lengths (u64 each), the pickle, then each out-of-band
#     buffer, every one starting at a multiple of _ALIGN from the message's
#     start.

_TAG_PICKLE = 0x80
_TAG_BYTES = 1
_TAG_BUFFERS = 2
_HEAD = struct.Struct("<BxxxIQ")
_ALIGN = 64
_PAD = bytes(_ALIGN)
_loads = pickle.loads


class _Sink:
    """The pickler's file: every write is one part of the message (gathered
    by put_parts, never joined)."""

    __slots__ = ("write",)
    write: Any


class _Encoder:
    """One thread's pickler, reused (clear_memo) for every message."""

    __slots__ = ("chunks", "buffers", "dump", "clear_memo", "reducers")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.buffers: list[pickle.PickleBuffer] = []
        sink = _Sink()
        sink.write = self.chunks.append
        pickler = ForkingPickler(sink, 5, True, self.buffers.append)  # type: ignore[call-arg]
        self.dump = pickler.dump
        self.clear_memo = pickler.clear_memo
        # ForkingPickler copies the registered reducers when made: a pickler
        # made before a later register() would not see it.
        self.reducers = len(_extra_reducers)

    def finish(self) -> tuple[Any, ...]:
        """The message's parts after a dump (the chunks and buffers are
        handed over: the lists are emptied)."""
        chunks = self.chunks
        if not self.buffers:
            if len(chunks) == 1:
                return (chunks.pop(),)
            data = tuple(chunks)
            chunks.clear()
            return data
        raws = [b.raw() for b in self.buffers]
        self.buffers.clear()
        data = tuple(chunks)
        chunks.clear()
        plen = sum(len(c) for c in data)
        n = len(raws)
        head = _HEAD.pack(_TAG_BUFFERS, n, plen) + struct.pack(f"<{n}Q", *[r.nbytes for r in raws])
        parts: list[Any] = [head, *data]
        pos = len(head) + plen
        for r in raws:
            p = _pad(pos)
            if p:
                parts.append(_PAD[:p])
            parts.append(r)
            pos += p + r.nbytes
        return tuple(parts)


_local = threading.local()
# register() adds to this very dict
_extra_reducers: dict[Any, Any] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]


def _pad(n: int) -> int:
    return -n % _ALIGN


def _encode(obj: Any) -> tuple[Any, ...]:
    """The parts of obj's message (ByteQueue.put_obj calls it for anything
    but an exact bytes object, which it sends itself, when it has no
    encoder factory)."""
    e: Optional[_Encoder] = getattr(_local, "encoder", None)
    if e is None or e.reducers != len(_extra_reducers):
        e = _Encoder()
    # Checked out while it pickles: a put made meanwhile on this thread (by
    # a reducer, a __del__, a signal handler) makes an encoder of its own.
    _local.encoder = None
    try:
        e.dump(obj)
        return e.finish()
    finally:
        e.clear_memo()
        e.chunks.clear()  # (empty after finish(); what a failure left)
        e.buffers.clear()
        _local.encoder = e


def _thread_encoder() -> tuple[Any, ...]:
    """A new encoder for ByteQueue.put_obj, which drives it itself and keeps
    one per thread: (dump, clear_memo, chunks, buffers, the registered
    reducers, their count when it was made, finish)."""
    e = _Encoder()
    return (e.dump, e.clear_memo, e.chunks, e.buffers, _extra_reducers, e.reducers, e.finish)


def _decode_buffers(mv: memoryview, copy: bool) -> Any:
    _, n, plen = _HEAD.unpack_from(mv)
    lens = struct.unpack_from(f"<{n}Q", mv, _HEAD.size)
    pos = _HEAD.size + 8 * n
    data = mv[pos:pos + plen]
    pos += plen
    buffers: list[Any] = []
    for ln in lens:
        pos += _pad(pos)
        b = mv[pos:pos + ln]
        buffers.append(bytearray(b) if copy else b)
        pos += ln
    return _loads(data, buffers=buffers)


def _decode(msg: Any) -> Any:
    """The object of a message from ByteQueue._get_message: bytes (it came
    in the ring) or a writable ByteMessage (out of line: zero copy)."""
    if type(msg) is bytes:
        tag = msg[0]
        if tag == _TAG_PICKLE:
            return _loads(msg)
        if tag == _TAG_BYTES:
            return msg[1:]
        if tag == _TAG_BUFFERS:
            return _decode_buffers(memoryview(msg), True)
    else:
        mv = memoryview(msg)
        tag = mv[0]
        if tag == _TAG_PICKLE:
            return _loads(mv)
        if tag == _TAG_BYTES:
            return mv[1:].tobytes()
        if tag == _TAG_BUFFERS:
            return _decode_buffers(mv, False)
    raise ValueError(f"shmkit queue: a message that no shmkit Queue wrote (tag {tag})")


def _drop_blocks(ref: "weakref.ref[Any]") -> None:
    q = ref()
    if q is not None:
        q.drop_out_of_line_blocks()


def _drop_blocks_at_exit(q: Any) -> None:
    _util.Finalize(q, _drop_blocks, args=(weakref.ref(q),), exitpriority=10)


def _codec(q: Any) -> Any:
    """q (a ByteQueue) with put_obj/get_obj's codec set, and the
    out-of-line blocks it keeps let go when this process ends, and when a
    child that multiprocessing forked with it ends: such children end with
    os._exit after their finalizers, before any destructor could run."""
    q.set_codec(_encode, _decode, _loads, _thread_encoder)
    _drop_blocks_at_exit(q)
    _util.register_after_fork(q, _drop_blocks_at_exit)
    return q


def _attach(name: str) -> Any:
    return _codec(_queues.ByteQueue.attach(name))


# ------------------------------------------------------------ the block

class _Unlinker:
    """What the creator's finalizer holds instead of the queue: its name."""
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def unlink(self) -> None:
        _queues.unlink_byte_queue(self.name)


def _new_block(ring_bytes: Optional[int], threshold: Optional[int]) -> Any:
    ring = DEFAULT_RING_BYTES if ring_bytes is None else ring_bytes
    thr = DEFAULT_OUT_OF_LINE_THRESHOLD if threshold is None else threshold
    for _ in range(16):
        name = "psm_" + secrets.token_hex(4)
        try:
            q = _owned.make_tracked(lambda t: _queues.ByteQueue.create(name, ring, thr, t), True)
        except FileExistsError:
            continue
        return _codec(q)
    raise FileExistsError("shmkit queue: no free block name")


def _own(owner: Any, q: Any) -> None:
    # The creating process only, and only while the name holds the file made
    # here: a block re-created under the name since is left alone.
    weakref.finalize(owner, _owned.unlink_if_creator, _Unlinker(q.name), os.getpid(),
                     _owned.file_id(q.name))


def _deadline_left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


# ------------------------------------------------------------ Queue

class Queue:
    """multiprocessing.Queue(maxsize=0) on a shmkit ByteQueue (see the
    module's docstring); keywords beyond CPython's: ring_bytes (a power of
    two >= 1024) and out_of_line_threshold."""

    def __init__(self, maxsize: int = 0, *, ctx: Any = None, ring_bytes: Optional[int] = None,
                 out_of_line_threshold: Optional[int] = None) -> None:
        bounded = maxsize > 0
        if not bounded:
            maxsize = _SEM_VALUE_MAX
        self._q = _new_block(ring_bytes, out_of_line_threshold)
        self._maxsize = maxsize
        if bounded:
            from .synchronize import BoundedSemaphore
            self._sem: Any = BoundedSemaphore(maxsize)
        else:
            self._sem = None
        self._opid = os.getpid()
        _own(self, self._q)
        self._after_init()

    def _after_init(self) -> None:
        self._closed = False
        self._joincancelled = False
        self._reader = _Reader(self)
        self._writer = _Writer(self)
        self._poll = self._reader.poll
        if self._sem is not None:
            self._q.set_taken(self._sem.release)
        else:
            # Unbounded: put and get are the C methods themselves (no Python
            # frame), unless a subclass overrides them; close() removes them.
            cls = type(self)
            if cls.put is Queue.put:
                setattr(self, "put", self._q.put_obj)
            if cls.get is Queue.get:
                setattr(self, "get", self._q.get_obj)

    def _half_closed(self) -> None:
        pass  # closing Queue._reader or _writer stops only that end, here

    def __getstate__(self) -> Any:
        _context.assert_spawning(self)
        return (self._q.name, self._maxsize, self._sem, self._opid)

    def __setstate__(self, state: Any) -> None:
        name, self._maxsize, self._sem, self._opid = state
        self._q = _attach(name)
        self._after_init()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._q.name!r} maxsize={self._maxsize}>"

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        sem = self._sem
        if timeout is not None and timeout < 0:
            timeout = 0
        if sem is None:
            self._q.put_obj(obj, block, timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if not sem.acquire(block, timeout):
            raise Full
        try:
            self._q.put_obj(obj, block, None if deadline is None else _deadline_left(deadline))
        except BaseException:
            sem.release()
            raise

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        # (A bounded queue's handle releases the semaphore itself once it
        # has taken a message, before unpickling it: set_taken.)
        return self._q.get_obj(block, timeout)

    def put_nowait(self, obj: Any) -> None:
        return self.put(obj, False)

    def get_nowait(self) -> Any:
        return self.get(False)

    def put_many(self, objs: Iterable[Any], block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts every object in order (each waits up to what is left of the
        timeout); queue.Full names how many went in (.count)."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        n = 0
        for obj in objs:
            try:
                self.put(obj, block, None if deadline is None else _deadline_left(deadline))
            except Full as e:
                e.count = n  # type: ignore[attr-defined]
                raise
            n += 1

    def get_many(self, max: int, block: bool = True, timeout: Optional[float] = None) -> list[Any]:
        """Waits (up to timeout) for one object, then takes up to `max` that
        are there; [] when none came in time."""
        out: list[Any] = []
        if max <= 0:
            return out
        try:
            out.append(self.get(block, timeout))
            while len(out) < max:
                out.append(self.get(False))
        except Empty:
            pass
        return out

    def qsize(self) -> int:
        self._check_closed()
        if self._sem is not None:
            return int(self._maxsize - self._sem.get_value())
        return int(self._q.size())

    def empty(self) -> bool:
        if self._closed:
            # As CPython: close() takes effect once the queue was used here.
            if self._q.closed:
                raise OSError(f"Queue {self!r} is closed")
            return bool(self._q.empty())
        return bool(self._q.empty())

    def full(self) -> bool:
        self._check_closed()
        if self._sem is not None:
            return bool(self._sem.get_value() == 0)
        return False

    def close(self) -> None:
        """No more put/get through this object (ValueError); unmaps the
        queue unless another thread of this process waits on it. The block
        itself stays for the other processes (its creator removes it when
        collected or at exit)."""
        self._closed = True
        self.__dict__.pop("put", None)
        self.__dict__.pop("get", None)
        if not self._q.used:
            return  # as CPython's: a no-op until the queue was put to here
        try:
            self._q.close()
        except RuntimeError:  # another thread waits in it: unmapped when collected
            pass

    def join_thread(self) -> None:
        """Nothing to wait for: there is no feeder thread (put writes into
        shared memory before it returns)."""
        assert self._closed, f"Queue {self!r} not closed"

    def cancel_join_thread(self) -> None:
        """Nothing to cancel: there is no feeder thread."""
        self._joincancelled = True

    def _terminate_broken(self) -> None:
        self.close()

    def _reset(self) -> None:
        pass

    def _after_fork(self) -> None:
        pass

    # The doorbell, for code that waits on several queues at once.
    def fileno(self) -> int:
        """The doorbell descriptor: readable while a message may be there."""
        self._check_closed()
        return int(self._q.fileno())

    @property
    def name(self) -> str:
        """The name of the queue's block (/dev/shm/<name>)."""
        return str(self._q.name)

    @property
    def losses(self) -> dict[str, int]:
        """Messages lost to processes that died holding them (byte_queue.hpp)."""
        return dict(self._q.losses)

    __class_getitem__ = classmethod(types.GenericAlias)


# ------------------------------------------------------------ JoinableQueue

class JoinableQueue(Queue):
    """multiprocessing.JoinableQueue(maxsize=0): a Queue with task_done()
    and join() (a shmkit Semaphore counts unfinished tasks, a shmkit
    Condition wakes join)."""

    def __init__(self, maxsize: int = 0, *, ctx: Any = None, ring_bytes: Optional[int] = None,
                 out_of_line_threshold: Optional[int] = None) -> None:
        super().__init__(maxsize, ctx=ctx, ring_bytes=ring_bytes,
                         out_of_line_threshold=out_of_line_threshold)
        from .synchronize import Condition, Semaphore
        self._unfinished_tasks = Semaphore(0)
        self._cond = Condition()

    def __getstate__(self) -> Any:
        return Queue.__getstate__(self) + (self._cond, self._unfinished_tasks)

    def __setstate__(self, state: Any) -> None:
        Queue.__setstate__(self, state[:-2])
        self._cond, self._unfinished_tasks = state[-2:]

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        # Counted before it can be taken (a consumer's task_done may come
        # before this put returns), taken back if it does not go in.
        self._unfinished_tasks.release()
        try:
            Queue.put(self, obj, block, timeout)
        except BaseException:
            with self._cond:
                self._unfinished_tasks.acquire(False)
                if self._unfinished_tasks.get_value() == 0:
                    self._cond.notify_all()
            raise

    def task_done(self) -> None:
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError("task_done() called too many times")
            if self._unfinished_tasks.get_value() == 0:
                self._cond.notify_all()

    def join(self) -> None:
        with self._cond:
            while self._unfinished_tasks.get_value() != 0:
                self._cond.wait()


# ------------------------------------------------------------ SimpleQueue

def _closed_handle(*args: Any, **kwargs: Any) -> Any:
    raise OSError("handle is closed")


class _Reader:
    """The reading end of a queue, as multiprocessing's Pool and
    ProcessPoolExecutor use it: recv(), poll(timeout=0.0), fileno(),
    close() (of this end, in this process)."""

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self.closed = False
        self.recv = owner._q.get_obj

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether a message is there, waiting up to timeout (None: for
        ever) for one; takes nothing."""
        if self.closed:
            raise OSError("handle is closed")
        return bool(self._owner._q.wait_message(timeout))

    def fileno(self) -> int:
        """The doorbell descriptor (multiprocessing.connection.wait,
        selectors): readable while a message may be there."""
        if self.closed:
            raise OSError("handle is closed")
        return int(self._owner._q.fileno())

    def close(self) -> None:
        self.closed = True
        self.recv = _closed_handle
        self._owner._half_closed()


class _Writer:
    """The writing end of a queue (q._writer.send/close)."""

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self.closed = False
        self.send = owner._q.put_obj

    def close(self) -> None:
        self.closed = True
        self.send = _closed_handle
        self._owner._half_closed()


class SimpleQueue:
    """multiprocessing.SimpleQueue() on a shmkit ByteQueue: put(obj), get(),
    empty(), close(); keywords beyond CPython's: ring_bytes,
    out_of_line_threshold."""

    def __init__(self, *, ctx: Any = None, ring_bytes: Optional[int] = None,
                 out_of_line_threshold: Optional[int] = None) -> None:
        self._q = _new_block(ring_bytes, out_of_line_threshold)
        _own(self, self._q)
        self._after_init()

    def _after_init(self) -> None:
        self._reader = _Reader(self)
        self._writer = _Writer(self)
        self._poll = self._reader.poll
        # put and get are the C methods themselves (no Python frame) until
        # their end is closed.
        setattr(self, "put", self._q.put_obj)
        setattr(self, "get", self._q.get_obj)
        # Process-local: the ring needs no lock; these are for code that
        # takes them as CPython's SimpleQueue allows (Pool does).
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()

    def __getstate__(self) -> Any:
        _context.assert_spawning(self)
        return self._q.name

    def __setstate__(self, state: Any) -> None:
        self._q = _attach(state)
        self._after_init()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._q.name!r}>"

    def _half_closed(self) -> None:
        if self._reader.closed:
            self.__dict__.pop("get", None)
        if self._writer.closed:
            self.__dict__.pop("put", None)
        if self._reader.closed and self._writer.closed:
            try:
                self._q.close()
            except RuntimeError:  # another thread waits in it: unmapped when collected
                pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def empty(self) -> bool:
        return not self._reader.poll()

    def get(self) -> Any:
        if self._reader.closed:
            raise OSError("handle is closed")
        return self._q.get_obj()

    def put(self, obj: Any) -> None:
        if self._writer.closed:
            raise OSError("handle is closed")
        self._q.put_obj(obj)

    def put_many(self, objs: Iterable[Any]) -> None:
        for obj in objs:
            self.put(obj)

    def get_many(self, max: int, block: bool = True, timeout: Optional[float] = None) -> list[Any]:
        """Waits (up to timeout) for one object, then takes up to `max`."""
        if self._reader.closed:
            raise OSError("handle is closed")
        out: list[Any] = []
        if max <= 0:
            return out
        try:
            out.append(self._q.get_obj(block, timeout))
            while len(out) < max:
                out.append(self._q.get_obj(False))
        except Empty:
            pass
        return out

    def fileno(self) -> int:
        return self._reader.fileno()

    @property
    def name(self) -> str:
        return str(self._q.name)

    __class_getitem__ = classmethod(types.GenericAlias)
