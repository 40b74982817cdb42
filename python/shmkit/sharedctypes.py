"""Drop-in for :mod:`multiprocessing.sharedctypes` over shmkit's typed blocks.

``RawValue``, ``RawArray``, ``Value``, ``Array``, ``copy`` and
``synchronized`` have CPython's signatures and return what CPython's return:
a ctypes object over shared bytes (the raw ones, and ``lock=False``), or a
``Synchronized``/``SynchronizedArray``/``SynchronizedString`` wrapper with
``get_lock()``, ``get_obj()`` and CPython's properties (a Structure's fields
too). Element types are typecodes or ctypes types, ``ctypes.Structure``
included (pointer types are refused: a pointer means nothing in another
process; an unknown typecode is TypeError naming it, as CPython's is a
TypeError). Arrays may be empty (``Array('i', [])``, ``RawArray('d', 0)``),
as CPython's; repr() of every object is CPython's (``c_int(3)``,
``<Synchronized wrapper for c_int(3)>``).

Where the bytes live: every object is its own typed block
(shmkit/typed_block.hpp, the layout of shmkit/object_layout.hpp), so C++'s
``shmkit::Value<T>``/``Array<T>`` attach it and the other way round.

* Unnamed objects get a fresh ``psm_`` name, are registered with shmkit's
  tracker (so a crash leaks nothing) and are unlinked when the creating
  process drops its object (or exits), as CPython frees its heap blocks.
  Other processes may use them while the creator keeps its object.
* ``name=`` makes a named object (``create=False`` attaches to an existing
  one, checking every header field): it lives until ``unlink()``, as C++
  objects do. A Structure shared with C++ names itself with
  ``_shmkit_type_name_`` (C++: ``shmkit::TypeName<T>``); otherwise its
  module-qualified name is used.
* Every object pickles by name, to any process (spawn, forkserver, an
  unrelated one), not only to forked children.
* ``lock=True`` (and ``None``) puts a recursive lock in the block (CPython's
  default RLock; C++ ``Value<T>``'s default ``RecursiveMutex``);
  ``lock="mutex"``/``"rlock"``/``"robust"`` pick the in-block lock kind
  (``"robust"``: when a holder was killed inside, the next accessor raises
  ``OwnerDiedError`` *holding the lock*: repair the value through
  ``get_obj()``, then ``get_lock().make_consistent()`` and ``release()``;
  these locks are not recursive, so do not use the accessors inside
  ``with v.get_lock():``);
  a lock object is used as given (CPython's ``lock=some_lock``);
  ``lock=False`` gives the raw ctypes object.

Beyond CPython, integer objects (typecodes b B h H i I l L q Q and their
ctypes types) have lock-free atomic operations: ``fetch_add``, ``fetch_sub``,
``exchange``, ``compare_exchange``, ``load``, ``store``, ``wait`` and
``notify`` (shmkit._sync.AtomicRef over the value's bytes). They do not take
the object's lock: mixing them with ``v.value += 1`` under the lock is a
race, as it would be in C++. An Array is a zero-copy numpy array with
``numpy.asarray(arr)``; its exports keep the block mapped.
"""
from __future__ import annotations

import ctypes
import errno
import os
import warnings
import weakref
from types import ModuleType
from typing import Any, Callable, Optional

from . import _core, _owned

_sync: Optional[ModuleType]
try:
    from . import _sync
except ImportError:  # built without shmkit._sync: no in-block locks, no atomics
    _sync = None

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized",
           "Synchronized", "SynchronizedArray", "SynchronizedString"]

typecode_to_type = {
    "c": ctypes.c_char, "u": ctypes.c_wchar,
    "b": ctypes.c_byte, "B": ctypes.c_ubyte,
    "h": ctypes.c_short, "H": ctypes.c_ushort,
    "i": ctypes.c_int, "I": ctypes.c_uint,
    "l": ctypes.c_long, "L": ctypes.c_ulong,
    "q": ctypes.c_longlong, "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float, "d": ctypes.c_double,
}

# ctypes' _type_ codes that are C++ typecodes too (python_typecode<T>()).
_CPP_TYPECODES = set("cbBhHiIqQfd?")
_INTEGER_CODES = set("bBhHiIlLqQ")
_POINTER_CODES = set("zZPOX")
_ATOMIC_OPS = ("fetch_add", "fetch_sub", "exchange", "compare_exchange", "load", "store",
               "wait", "notify")

_LOCK_KINDS = {"mutex": _core.LOCK_MUTEX, "rlock": _core.LOCK_RLOCK, "robust": _core.LOCK_ROBUST}
_LOCK_TYPES: dict[int, Any] = {}
if _sync is not None:
    _LOCK_TYPES = {_core.LOCK_MUTEX: _sync.Mutex, _core.LOCK_RLOCK: _sync.RecursiveMutex,
                   _core.LOCK_ROBUST: _sync.RobustMutex}


# ---------------------------------------------------------------- types

def _fingerprint(ctype: Any) -> tuple[str, int, int, str]:
    """(typecode, size, align, type name) as the typed block records it."""
    if isinstance(ctype, type) and issubclass(ctype, ctypes._SimpleCData):
        code: str = getattr(ctype, "_type_")
        if code in _POINTER_CODES:
            raise TypeError("shmkit: %s is a pointer type; a pointer means nothing in "
                            "another process" % ctype.__name__)
        if code in ("l", "L") and ctypes.sizeof(ctype) == 8:
            code = "q" if code == "l" else "Q"  # LP64, as C++'s python_typecode
        if code in _CPP_TYPECODES:
            return code, ctypes.sizeof(ctype), ctypes.alignment(ctype), ""
        return "", ctypes.sizeof(ctype), ctypes.alignment(ctype), "ctypes." + ctype.__name__
    if isinstance(ctype, type) and issubclass(ctype, (ctypes.Structure, ctypes.Union, ctypes.Array)):
        return "", ctypes.sizeof(ctype), ctypes.alignment(ctype), _type_name(ctype)
    raise TypeError("shmkit: an element type is a typecode or a ctypes type, not %r" % (ctype,))


def _type_name(ctype: Any) -> str:
    if issubclass(ctype, ctypes.Array):
        return "%s[%d]" % (_type_name(ctype._type_) if not issubclass(ctype._type_, ctypes._SimpleCData)
                           else "ctypes." + ctype._type_.__name__, ctype._length_)
    declared = ctype.__dict__.get("_shmkit_type_name_")
    if declared:
        return str(declared)
    return "%s.%s" % (ctype.__module__, ctype.__qualname__)


def _spec(ctype: Any) -> Any:
    """A picklable description of ctype (array types are not picklable)."""
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        return ("*", _spec(ctype._type_), ctype._length_)
    return ctype


def _from_spec(spec: Any) -> Any:
    if isinstance(spec, tuple):
        return _from_spec(spec[1]) * spec[2]
    return spec


_shared_classes: dict[Any, Any] = {}


def _shared_class(ctype: Any) -> Any:
    """A subclass of ctype whose instances over shared bytes pickle by name
    and offer atomic operations (integers)."""
    try:
        return _shared_classes[ctype]
    except KeyError:
        pass
    # The subclass prints as its ctypes type does (CPython's objects are of
    # that very type): c_int(3), <__main__.Point object at ...>, and for the
    # arrays made here <shmkit.sharedctypes.c_int_Array_2 object at ...>.
    body: dict[str, Any] = {"__reduce__": _reduce_raw, "__module__": ctype.__module__,
                            "__qualname__": ctype.__qualname__}
    if issubclass(ctype, ctypes.Array):
        body["__array__"] = _raw_array
    if issubclass(ctype, ctypes._SimpleCData):
        body["__repr__"] = _simple_repr
    cls = type(ctype)(ctype.__name__, (ctype,), body)
    _shared_classes[ctype] = cls
    _base_types[cls] = ctype
    return cls


_base_types: dict[Any, Any] = {}  # shared subclass -> its ctypes type


def _simple_repr(self: Any) -> str:
    """ctypes' repr of a simple value (c_int(3)), which ctypes gives only to
    instances of the simple type itself."""
    return "%s(%r)" % (_base_types[type(self)].__name__, self.value)


# ---------------------------------------------------------------- blocks

class _Place:
    """One object's block in this process: the mapping and how to name it."""
    __slots__ = ("mapping", "name", "offset", "count", "lock_kind", "spec", "is_array",
                 "__weakref__")

    def __init__(self, mapping: Any, name: str, offset: int, count: int, lock_kind: int, spec: Any,
                 is_array: bool) -> None:
        self.mapping = mapping
        self.name = name
        self.offset = offset
        self.count = count
        self.lock_kind = lock_kind
        self.spec = spec
        self.is_array = is_array


_warned_untracked = False


def _create(ctype: Any, count: int, is_array: bool, initial: Optional[bytes], lock_kind: int,
            name: Optional[str], track: Optional[bool] = None) -> _Place:
    global _warned_untracked
    code, size, align, tname = _fingerprint(ctype)
    explicit = track is not None
    if not explicit:
        track = name is None and not _warned_untracked
    create: Callable[..., tuple[Any, int, int, int, int]] = _core.create_object

    def registry_full(e: OSError) -> bool:
        return not explicit and e.errno == errno.ENOSPC and "regist" in str(e)

    def warn(e: OSError) -> None:
        # The tracker's registry is full (kMaxEntries live registrations):
        # go on untracked (unlinked with the object or at exit, but not
        # after a crash), and say so once.
        global _warned_untracked
        _warned_untracked = True
        warnings.warn("shmkit: the tracker's registry is full; further unnamed objects are "
                      "not tracked (%s)" % e, ResourceWarning, stacklevel=5)

    result = _owned.make_tracked(
        lambda t: create(name, is_array, code, size, align, tname, count, lock_kind, initial, t),
        bool(track), registry_full, warn)
    mapping, offset, count, lock_kind, _ = result
    return _Place(mapping, mapping.name, offset, count, lock_kind, _spec(ctype), is_array)


def _attach(ctype: Any, count: int, is_array: bool, lock_kind: int, name: str,
            track: bool = False) -> _Place:
    code, size, align, tname = _fingerprint(ctype)
    mapping, offset, count, lock_kind, _ = _core.attach_object(
        name, is_array, code, size, align, tname, count, lock_kind, track)
    return _Place(mapping, name, offset, count, lock_kind, _spec(ctype), is_array)


def _raw_object(place: _Place, ctype: Any, owner: bool) -> Any:
    """The ctypes object over the place's payload (a shared subclass of
    ctype, or of ctype * count for an array)."""
    t = ctype * place.count if place.is_array else ctype
    obj = _shared_class(t).from_buffer(place.mapping, place.offset)
    d = obj.__dict__
    d["_shmkit_place"] = place
    if _is_atomic(place, ctype):
        assert _sync is not None
        # Bound C methods in the instance: v.fetch_add(1) is one C call.
        _bind_atomics(d, _sync.AtomicRef._over(place.mapping, place.offset, _fingerprint(ctype)[0]))
    if owner:
        # Unlinks the block this process created, and only while its name
        # still holds that very file (never one re-created under the name
        # since); mapping.unlink() also drops the tracker's registrations.
        obj.__dict__["_shmkit_finalizer"] = weakref.finalize(
            obj, _owned.unlink_if_creator, place.mapping, os.getpid(),
            _owned.file_id(fd=place.mapping.fd))
    return obj


def _reduce_raw(obj: Any) -> Any:
    place = obj.__dict__.get("_shmkit_place")
    if place is None:  # not over a block (made directly from the class): by value
        return super(type(obj), obj).__reduce__()
    return _rebuild_raw, (place.spec, place.is_array, place.name, place.count, place.lock_kind)


def _rebuild_raw(spec: Any, is_array: bool, name: str, count: int, lock_kind: int) -> Any:
    elem = _from_spec(spec)  # the element type (an array's too)
    return _raw_object(_attach(elem, count, is_array, lock_kind, name), elem, False)


def _is_atomic(place: _Place, ctype: Any) -> bool:
    """Integer Values (not arrays) get the atomic operations."""
    return (_sync is not None and not place.is_array and isinstance(ctype, type)
            and issubclass(ctype, ctypes._SimpleCData) and getattr(ctype, "_type_") in _INTEGER_CODES)


def _bind_atomics(target_dict: dict[str, Any], ref: Any) -> None:
    for op in _ATOMIC_OPS:
        target_dict[op] = getattr(ref, op)


def _raw_array(self: Any, dtype: Any = None, copy: Optional[bool] = None) -> Any:
    import numpy
    a = numpy.asarray(memoryview(self))  # zero-copy; holds an export of the block
    return a if dtype is None else a.astype(dtype, copy=False)


# ---------------------------------------------------------------- public API

def _element_type(typecode_or_type: Any) -> Any:
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            # CPython raises TypeError here too ("this type has no size").
            raise TypeError("shmkit: an element type is a typecode or a ctypes type, not %r"
                            % (typecode_or_type,)) from None
    return typecode_or_type


def RawValue(typecode_or_type: Any, *args: Any, name: Optional[str] = None, create: bool = True,
             track: Optional[bool] = None) -> Any:
    """A ctypes object in shared memory (zero-filled, then ``type(*args)``).
    ``name=`` makes (or with ``create=False`` attaches) a named object.
    ``track=True`` registers this process's use of a named object with
    shmkit's tracker (the block is unlinked once every registered process
    has died); unnamed objects are always tracked, named ones by default
    not."""
    type_ = _element_type(typecode_or_type)
    if not create:
        return _raw_object(_attach(type_, 1, False, _core.LOCK_NONE, _need(name), bool(track)),
                           type_, False)
    initial = bytes(type_(*args)) if args else None
    place = _create(type_, 1, False, initial, _core.LOCK_NONE, name, track)
    return _raw_object(place, type_, name is None)


def RawArray(typecode_or_type: Any, size_or_initializer: Any = None, *, name: Optional[str] = None,
             create: bool = True, track: Optional[bool] = None) -> Any:
    """A ctypes array in shared memory: ``size`` zeros, or a copy of a
    sequence. ``name=``/``create=False``/``track=`` as RawValue."""
    type_ = _element_type(typecode_or_type)
    if not create:
        count = size_or_initializer if isinstance(size_or_initializer, int) else 0
        return _raw_object(_attach(type_, count, True, _core.LOCK_NONE, _need(name), bool(track)),
                           type_, False)
    count, initial = _array_init(type_, size_or_initializer)
    place = _create(type_, count, True, initial, _core.LOCK_NONE, name, track)
    return _raw_object(place, type_, name is None)


def _array_init(type_: Any, size_or_initializer: Any) -> tuple[int, Optional[bytes]]:
    if isinstance(size_or_initializer, int):
        return size_or_initializer, None
    seq = size_or_initializer
    if isinstance(seq, (bytes, bytearray)) and type_ is ctypes.c_char:
        return len(seq), bytes(seq)
    seq = list(seq)
    return len(seq), bytes((type_ * len(seq))(*seq))


def _need(name: Optional[str]) -> str:
    if name is None:
        raise ValueError("shmkit: create=False attaches by name: give name=")
    return name


def _lock_kind(lock: Any) -> tuple[int, Any]:
    """(in-block lock kind, external lock object or None)."""
    if lock is None or lock is True:
        return _core.LOCK_RLOCK, None
    if isinstance(lock, str) and lock in _LOCK_KINDS:
        return _LOCK_KINDS[lock], None
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return _core.LOCK_EXTERNAL, lock


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None,
          name: Optional[str] = None, create: bool = True, track: Optional[bool] = None) -> Any:
    """A synchronized shared object (CPython's Value); ``lock=False`` gives
    the raw ctypes object. See the module docstring for ``lock`` values and
    ``name=``/``create=False``; ``track=`` as RawValue."""
    type_ = _element_type(typecode_or_type)
    if lock is False:
        return RawValue(type_, *args, name=name, create=create, track=track)
    kind, external = _lock_kind(lock)
    if create:
        initial = bytes(type_(*args)) if args else None
        place = _create(type_, 1, False, initial, _in_block_or_none(kind), name, track)
    else:
        place = _attach(type_, 1, False, -1 if lock is True or lock is None else _in_block_or_none(kind),
                        _need(name), bool(track))
    return _wrap(place, type_, external, name is None and create)


def Array(typecode_or_type: Any, size_or_initializer: Any = None, *, lock: Any = True,
          ctx: Any = None, name: Optional[str] = None, create: bool = True,
          track: Optional[bool] = None) -> Any:
    """A synchronized shared array (CPython's Array); ``lock=False`` gives
    the raw ctypes array; ``track=`` as RawValue."""
    type_ = _element_type(typecode_or_type)
    if lock is False:
        return RawArray(type_, size_or_initializer, name=name, create=create, track=track)
    kind, external = _lock_kind(lock)
    if create:
        count, initial = _array_init(type_, size_or_initializer)
        place = _create(type_, count, True, initial, _in_block_or_none(kind), name, track)
    else:
        count = size_or_initializer if isinstance(size_or_initializer, int) else 0
        place = _attach(type_, count, True, -1 if lock is True or lock is None else _in_block_or_none(kind),
                        _need(name), bool(track))
    return _wrap(place, type_, external, name is None and create)


def _in_block_or_none(kind: int) -> int:
    # An external lock lives elsewhere: the block records "none", so C++
    # attaches it as a RawValue/RawArray and brings its own lock.
    return _core.LOCK_NONE if kind == _core.LOCK_EXTERNAL else kind


def _in_block_lock(place: _Place) -> Any:
    if place.lock_kind == _core.LOCK_NONE:
        return None
    if _sync is None:
        raise RuntimeError("shmkit: this object's lock is in its block and needs shmkit._sync, "
                           "which this build lacks")
    return _LOCK_TYPES[place.lock_kind]._over(place.mapping, _core.HEADER_SIZE)


def _wrap(place: _Place, type_: Any, external: Any, owner: bool) -> Any:
    obj = _raw_object(place, type_, owner)
    lock = external if external is not None else _in_block_lock(place)
    s = synchronized(obj, lock)
    s._place = place
    if "fetch_add" in obj.__dict__:
        for op in _ATOMIC_OPS:
            s.__dict__[op] = obj.__dict__[op]
    return s


def copy(obj: Any) -> Any:
    """A new raw shared object holding a copy of obj's bytes (CPython's copy)."""
    if isinstance(obj, SynchronizedBase):
        obj = obj.get_obj()
    type_ = _base_types.get(type(obj), type(obj))  # a shared object copies as its ctypes type
    if isinstance(obj, ctypes.Array):
        return RawArray(type_._type_, bytes(obj) if type_._type_ is ctypes.c_char else list(obj))
    new = RawValue(type_)
    ctypes.memmove(ctypes.addressof(new), ctypes.addressof(obj), ctypes.sizeof(obj))
    return new


def synchronized(obj: Any, lock: Any = None, ctx: Any = None) -> Any:
    """Wraps a ctypes object with a lock (a new shmkit RLock if None)."""
    assert not isinstance(obj, SynchronizedBase), "object already synchronized"
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    try:
        scls = _class_cache[cls]
    except KeyError:
        names = [field[0] for field in cls._fields_]
        d = {n: _make_property(n) for n in names}
        scls = _class_cache[cls] = type("Synchronized" + cls.__name__, (SynchronizedBase,), d)
    return scls(obj, lock, ctx)


_class_cache: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


_PROPERTY_TEMPLATE = """
def get(self):
    self.acquire()
    try:
        return self._obj.%s
    finally:
        self.release()
def set(self, value):
    self.acquire()
    try:
        self._obj.%s = value
    finally:
        self.release()
"""


def _make_property(name: str) -> Any:
    """A locked property reading self._obj.<name> directly (as CPython's:
    compiled per name, no getattr() call)."""
    if not name.isidentifier():
        raise ValueError("shmkit: field name %r is not an identifier" % name)
    ns: dict[str, Any] = {}
    exec(_PROPERTY_TEMPLATE % (name, name), ns)
    return property(ns["get"], ns["set"])


def _new_rlock(ctx: Any) -> Any:
    try:
        from .synchronize import RLock
        return RLock()
    except ImportError:
        import multiprocessing
        return (ctx or multiprocessing.get_context()).RLock()


class SynchronizedBase:
    """A shared ctypes object and the lock that guards it (CPython's)."""

    _place: Optional[_Place] = None

    def __init__(self, obj: Any, lock: Any = None, ctx: Any = None) -> None:
        self._obj = obj
        self._lock = lock if lock else _new_rlock(ctx)
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    def __reduce__(self) -> Any:
        place = self._obj.__dict__.get("_shmkit_place") if hasattr(self._obj, "__dict__") else None
        if place is None:
            raise TypeError("shmkit: only shared objects pickle (this one wraps a private ctypes object)")
        external = None if place.lock_kind != _core.LOCK_NONE else self._lock
        return _rebuild_synchronized, (place.spec, place.is_array, place.name, place.count,
                                       place.lock_kind, external)

    def get_obj(self) -> Any:
        return self._obj

    def get_lock(self) -> Any:
        return self._lock

    def unlink(self) -> None:
        """Removes a named object's block (others keep their mappings) and
        the tracker's registrations of it."""
        if self._place is None:
            raise ValueError("shmkit: this object wraps a private ctypes object: no block to unlink")
        self._place.mapping.unlink()

    @property
    def name(self) -> Optional[str]:
        "The object's block name."
        return self._place.name if self._place is not None else None

    def __repr__(self) -> str:
        return "<%s wrapper for %s>" % (type(self).__name__, self._obj)


def _rebuild_synchronized(spec: Any, is_array: bool, name: str, count: int, lock_kind: int,
                          external: Any) -> Any:
    elem = _from_spec(spec)
    return _wrap(_attach(elem, count, is_array, lock_kind, name), elem, external, False)


class Synchronized(SynchronizedBase):
    value = _make_property("value")


class SynchronizedArray(SynchronizedBase):

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: Any) -> Any:
        with self:
            return self._obj[i]

    def __setitem__(self, i: Any, value: Any) -> None:
        with self:
            self._obj[i] = value

    def __getslice__(self, start: int, stop: int) -> Any:
        with self:
            return self._obj[start:stop]

    def __setslice__(self, start: int, stop: int, values: Any) -> None:
        with self:
            self._obj[start:stop] = values

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> Any:
        """A zero-copy numpy view (unlocked: synchronise with get_lock())."""
        return _raw_array(self._obj, dtype)


class SynchronizedString(SynchronizedArray):
    value = _make_property("value")
    raw = _make_property("raw")
