"""Lock-free bounded queues in shared memory, shared by name with C++.

``SpscQueue`` (one producer, one consumer at a time) and ``MpmcQueue`` (any
number of each, survives a claimant killed mid-operation) are the C++
``shmkit::SpscQueue<T>`` / ``shmkit::MpmcQueue<T>`` blocks
(``shmkit/lockfree/*.hpp``), with the item type chosen here:

* ``item="q"`` (default): one array/struct typecode (``b B h H i I l L q Q f
  d ? c``): ``put(42)``, ``get() -> 42``. Attaches to a C++ queue of the
  matching type (``'d'`` is ``SpscQueue<double>``; ``'l'`` is ``'q'``).
* ``item="<struct format>"`` with ``type_name=``: tuples packed with
  :class:`struct.Struct` (native alignment). ``type_name`` is what C++'s
  ``shmkit::TypeName<T>::value`` says for the struct (``"Quote/v1"``); the
  format's size must be C's ``sizeof(T)`` (add trailing ``x`` padding).
* ``item=numpy.dtype(...)`` with ``type_name=``: raw items; ``get_many``
  returns a numpy array over the bytes popped (no further copy).
* ``item=bytes, maxbytes=N``: bytes of up to N bytes (a uint32 length, then
  the data; the slot is 4 + N rounded up to 8 bytes, and its type name
  ``shmkit.bytes/<slot - 4>``, so handles whose N round to the same slot
  attach to each other; each refuses puts longer than its own N).

``put(item, block=True, timeout=None)`` raises :class:`queue.Full` on
timeout, ``get(block=True, timeout=None)`` :class:`queue.Empty`, as the
``queue`` module does; ``put_many(items, timeout=None)`` puts every item (a
sequence, or for raw/struct items a buffer of whole items), ``get_many(max,
block=True, timeout=None)`` waits for one item then takes up to ``max``.
Waiting releases the GIL; Ctrl-C interrupts it.

Zero copy (SpscQueue): ``with q.get_view(max) as batch:`` gives up to
``max`` items in place (``numpy.frombuffer(batch, dtype)`` or
``memoryview(batch)``, no copy); the slots go back to the producer when the
view is released, which raises ``BufferError`` while an array or memoryview
over it is still alive (export counting), so no view ever sees a slot being
reused. A view never blocks (it is empty when nothing is there), stops at the
end of the ring (the next one continues from its start), and while it is
outstanding this handle's get/get_many raise RuntimeError.

Create with ``SpscQueue(capacity=1024, item="d")`` (a fresh ``psm_`` name,
or ``name=``), attach with ``SpscQueue(name, item="d")``; a queue pickles as
its name and item type. The creator's object unlinks the block when it is
collected or its process exits (and the resource tracker does so if the
creator is killed); call ``unlink()`` yourself to remove it earlier. That
finalizer removes only the very file its creator made: a block re-created
under the same name since (by anyone) is left alone.
"""
from __future__ import annotations

import functools
import os
import queue as _queue_module
import re
import struct
import weakref
from typing import Any, Optional, Tuple

from . import _owned, _queues

__all__ = ["SpscQueue", "MpmcQueue", "SeqLock", "BroadcastRing", "BroadcastReader", "Lapped",
           "Full", "Empty", "supported_item_sizes"]

Lapped = _queues.Lapped
BroadcastReader = _queues.BroadcastReader
Full = _queue_module.Full
Empty = _queue_module.Empty

_TYPECODES = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "l": 8, "L": 8,
              "f": 4, "d": 8, "?": 1, "c": 1}


def supported_item_sizes() -> list[int]:
    """The item sizes (bytes) a queue may have."""
    return _queues.supported_sizes()


def _struct_alignment(fmt: str) -> int:
    align = 1
    for code in re.findall(r"[a-zA-Z?]", fmt):
        if code in "xspP":
            a = 8 if code == "P" else 1
        else:
            a = struct.calcsize(code)
        align = max(align, a)
    return align


_ItemSpec = Tuple[int, int, Optional[str], Optional[str], str, int, Optional[struct.Struct], Any]


def _item_spec(item: Any, type_name: Optional[str], maxbytes: Optional[int]) -> _ItemSpec:
    """(size, align, typecode, type_name, mode, maxbytes, struct, dtype)."""
    if item is bytes:
        if maxbytes is None or maxbytes < 0:
            raise ValueError("a bytes queue needs maxbytes >= 0")
        size = (4 + maxbytes + 7) // 8 * 8
        return size, 4, None, type_name or f"shmkit.bytes/{size - 4}", "y", maxbytes, None, None
    if isinstance(item, str):
        if item in _TYPECODES:
            code: Optional[str] = {"l": "q", "L": "Q"}.get(item, item)
            size = _TYPECODES[item]
            return size, size, code, None, "s", 0, None, None
        st = struct.Struct(item)
        if st.format[:1] in ("<", ">", "!", "=") and not type_name:
            pass
        if not type_name:
            raise ValueError("a queue of structs needs type_name= (C++'s shmkit::TypeName<T>::value)")
        return st.size, _struct_alignment(item), None, type_name, "t", 0, st, None
    # A numpy dtype (or anything with itemsize/alignment).
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional
        raise TypeError("item must be a typecode, a struct format, bytes or a numpy dtype") from None
    dt = np.dtype(item)
    if dt.hasobject:
        raise TypeError("a numpy dtype with Python objects cannot live in shared memory")
    code = dt.char if (dt.isbuiltin and dt.char in _TYPECODES and dt.byteorder in "=|") else None
    if code is not None and not type_name:
        code = {"l": "q", "L": "Q"}.get(code, code)
        return dt.itemsize, dt.alignment, code, None, "r", 0, None, dt
    if not type_name:
        raise ValueError("a queue of a structured dtype needs type_name= (C++'s TypeName<T>::value)")
    return dt.itemsize, dt.alignment, None, type_name, "r", 0, None, dt


class _QueueBase(_queues._Queue):
    _kind = ""
    _spec: tuple[Any, Optional[str], Optional[int]]
    _dtype: Any
    _finalizer: weakref.finalize
    get: Any  # the C method, or for a numpy dtype a partial of _dtype_get

    def __new__(cls, name: Optional[str] = None, capacity: Optional[int] = None, item: Any = "q", *,
                create: Optional[bool] = None, type_name: Optional[str] = None,
                maxbytes: Optional[int] = None, track: bool = True) -> Any:
        if create is None:
            create = capacity is not None
        if create and capacity is None:
            raise ValueError("creating a queue needs a capacity (a power of two)")
        if not create and name is None:
            raise ValueError("attaching a queue needs its name")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        if capacity is not None and (not isinstance(capacity, int) or capacity <= 0):
            raise ValueError("capacity must be a positive power of two")
        size, align, code, tname, mode, mb, st, dt = _item_spec(item, type_name, maxbytes)
        args = (cls._kind, name, bool(create), capacity or 0, size, align, code, tname, mode, mb, st)
        new = super().__new__
        self = _owned.make_tracked(lambda t: new(cls, *args, track=t), bool(track and create))
        self._spec = (item, type_name, maxbytes)
        self._dtype = dt
        if dt is not None:
            # get() of a numpy dtype queue returns a numpy scalar; every
            # other queue's get/put are the C methods, with no wrapper.
            self.get = functools.partial(_dtype_get, self)
        if create:
            self._finalizer = _creator_finalizer(self)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        item, type_name, maxbytes = self._spec
        return (_attach, (type(self), self.name, item, type_name, maxbytes))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} capacity={self.capacity} itemsize={self.itemsize}>"

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def get_nowait(self) -> Any:
        return self.get(False)

    def get_many(self, max: int, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Waits (up to timeout) for one item, then takes up to `max`. A list,
        or for a numpy dtype a numpy array over the popped bytes."""
        if self._dtype is not None:
            import numpy as np
            raw = self.get_many_bytes(max, block, timeout)
            return np.frombuffer(raw, dtype=self._dtype)
        return super().get_many(max, block, timeout)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()


def _dtype_get(q: Any, block: bool = True, timeout: Optional[float] = None) -> Any:
    import numpy as np
    return np.frombuffer(_queues._Queue.get(q, block, timeout), dtype=q._dtype)[0]


class _Unlinker:
    """What the creator's finalizer holds instead of the object: its name."""
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def unlink(self) -> None:
        try:
            os.unlink("/dev/shm/" + self.name)
        except FileNotFoundError:
            pass


def _creator_finalizer(obj: Any) -> weakref.finalize:
    """Unlinks obj's block when obj is collected or the process exits, in
    the creating process only, and only while the name still holds the file
    created here (its identity is taken right after the create, before
    anyone else could have had a reason to replace it): a block re-created
    under the same name by someone else is left alone."""
    return weakref.finalize(obj, _owned.unlink_if_creator, _Unlinker(obj.name), os.getpid(),
                            _owned.file_id(obj.name))


def _attach(cls: Any, name: str, item: Any, type_name: Optional[str], maxbytes: Optional[int]) -> Any:
    return cls(name, item=item, type_name=type_name, maxbytes=maxbytes, create=False)


class SpscQueue(_QueueBase):
    """A bounded single-producer single-consumer queue (shmkit::SpscQueue<T>):
    SpscQueue(name=None, capacity=None, item='q', *, create=None, type_name=None,
    maxbytes=None)."""

    _kind = "spsc"


class MpmcQueue(_QueueBase):
    """A bounded multi-producer multi-consumer queue (shmkit::MpmcQueue<T>),
    same arguments as SpscQueue. A producer or consumer killed mid-operation
    never blocks the others for long (see shmkit/lockfree/mpmc_queue.hpp)."""

    _kind = "mpmc"


class _Named:
    """Creation/attach arguments and pickling shared by SeqLock and
    BroadcastRing."""

    name: str
    _spec: tuple[Any, Optional[str], Optional[int]]
    _dtype: Any
    _finalizer: weakref.finalize

    def _finish(self, create: bool, spec: tuple[Any, Optional[str], Optional[int]], dt: Any) -> None:
        self._spec = spec
        self._dtype = dt
        if create:
            self._finalizer = _creator_finalizer(self)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class SeqLock(_Named, _queues._SeqLock):
    """One writer publishes a value, any number of readers in any processes
    read it without locks and never see a torn value (shmkit::SeqLock<T>):
    SeqLock(name=None, item='d', *, create=None, type_name=None,
    maxbytes=None, initial=None). store(value), read(timeout=None),
    try_read() -> value or None, version."""

    def __new__(cls, name: Optional[str] = None, item: Any = "d", *, create: Optional[bool] = None,
                type_name: Optional[str] = None, maxbytes: Optional[int] = None,
                initial: Any = None, track: bool = True) -> Any:
        if create is None:
            create = name is None
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        size, align, code, tname, mode, mb, st, dt = _item_spec(item, type_name, maxbytes)
        args = (name, bool(create), size, align, code, tname, mode, mb, st, initial)
        new = super().__new__
        self = _owned.make_tracked(lambda t: new(cls, *args, track=t), bool(track and create))
        self._finish(create, (item, type_name, maxbytes), dt)
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        item, type_name, maxbytes = self._spec
        return (_attach_seqlock, (type(self), self.name, item, type_name, maxbytes))


def _attach_seqlock(cls: Any, name: str, item: Any, type_name: Optional[str],
                    maxbytes: Optional[int]) -> Any:
    return cls(name, item, create=False, type_name=type_name, maxbytes=maxbytes)


class BroadcastRing(_Named, _queues._BroadcastRing):
    """One writer publishes a stream, any number of readers each read all of
    it at their own pace (shmkit::BroadcastRing<T>); the writer never waits,
    a reader that falls `capacity` behind gets Lapped(lost):
    BroadcastRing(name=None, capacity=None, item='q', *, create=None,
    type_name=None, maxbytes=None). push(value); reader(cursor=None|'oldest'|n)
    returns a BroadcastReader with read(block=True, timeout=None) (queue.Empty
    on timeout), cursor and backlog()."""

    def __new__(cls, name: Optional[str] = None, capacity: Optional[int] = None, item: Any = "q", *,
                create: Optional[bool] = None, type_name: Optional[str] = None,
                maxbytes: Optional[int] = None, track: bool = True) -> Any:
        if create is None:
            create = capacity is not None
        if create and capacity is None:
            raise ValueError("creating a BroadcastRing needs a capacity (a power of two)")
        if not create and name is None:
            raise ValueError("attaching a BroadcastRing needs its name")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        size, align, code, tname, mode, mb, st, dt = _item_spec(item, type_name, maxbytes)
        args = (name, bool(create), capacity or 0, size, align, code, tname, mode, mb, st)
        new = super().__new__
        self = _owned.make_tracked(lambda t: new(cls, *args, track=t), bool(track and create))
        self._finish(create, (item, type_name, maxbytes), dt)
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        item, type_name, maxbytes = self._spec
        return (_attach_ring, (type(self), self.name, item, type_name, maxbytes))


def _attach_ring(cls: Any, name: str, item: Any, type_name: Optional[str],
                 maxbytes: Optional[int]) -> Any:
    return cls(name, item=item, create=False, type_name=type_name, maxbytes=maxbytes)
