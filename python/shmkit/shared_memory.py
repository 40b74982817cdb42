"""Drop-in for :mod:`multiprocessing.shared_memory` (CPython 3.13's API) over
shmkit's C++ blocks.

* :class:`SharedMemory` ``(name=None, create=False, size=0, *, track=True)``:
  CPython's signature, names, exceptions and pickling. The block is mapped by
  shmkit (mode 0600 whatever the umask, memory reserved at create so a full
  /dev/shm is ``OSError(ENOSPC)`` at create, never SIGBUS later). ``buf`` is
  a memoryview over the mapping; ``close()`` raises :class:`BufferError`
  while views of it exist (slices, ctypes objects), as CPython's does. A
  consumer that holds no view but keeps the memory (numpy's
  ``ndarray(shape, dtype, buffer=shm.buf)``) keeps the block mapped: close()
  returns, and the unmap waits for that array (CPython's unmaps under it:
  SIGSEGV at the next read).
* ``track=True`` registers the block with shmkit's tracker, which unlinks a
  block a shmkit process created once every process that registered it has
  died, and never while one of them lives (CPython's resource_tracker
  unlinks blocks other processes still use, gh-82300). Attaching registers
  use, never ownership: a block CPython's own module (or any other program)
  created is never unlinked by shmkit, however its shmkit users end.
  ``unlink()`` removes every registration of the block.
* :class:`ShareableList`: CPython's exact bytes, read and written by the C++
  ShareableList, so either side can create and the other attach. Beyond
  CPython: a str/bytes ending in NUL reads back exactly (gh-106939) and str
  slots are sized by UTF-8 bytes (gh-88336); see shmkit/shareable_list.hpp.
* :class:`SharedMemoryManager`: a context manager over shmkit's manager
  server (shmkit/manager.hpp), which unlinks every block it made at
  shutdown, and also when the process that started it dies, SIGKILL
  included. Its wire protocol is shmkit's own (not CPython's pickles): other
  processes join with ``SharedMemoryManager(address, authkey, connect=True)``.
"""
from __future__ import annotations

import os
import secrets
import types
from functools import partial
from typing import Any, Iterable, Iterator, Optional, Union, cast

from . import _core

__all__ = ["SharedMemory", "ShareableList", "SharedMemoryManager"]

# What a ShareableList holds.
_Item = Union[int, float, bool, str, bytes, None]

_O_CREX = os.O_CREAT | os.O_EXCL
_USE_POSIX = True
# CPython's: names drawn for create=True are "/psm_" + 8 hex digits.
_SHM_SAFE_NAME_LENGTH = 14
_SHM_NAME_PREFIX = "/psm_"


def _make_filename() -> str:
    """A random block name, as CPython draws it (with the leading slash)."""
    nbytes = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    return _SHM_NAME_PREFIX + secrets.token_hex(nbytes)


class SharedMemory:
    """Creates a new shared memory block or attaches to an existing one.

    ``name`` is the block's name in /dev/shm (random when creating without
    one); ``create`` makes a new block of ``size`` bytes (FileExistsError if
    the name is taken); otherwise the block must exist (FileNotFoundError)
    and its own size is used. ``track`` registers the block with shmkit's
    tracker (see the module docstring)."""

    # Defaults; enable close() and unlink() to run without errors.
    _name: Optional[str] = None
    _fd = -1
    _mapping: Optional[_core.Mapping] = None
    _buf: Optional[memoryview] = None
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True
    _track = True

    def __init__(self, name: "str | None" = None, create: bool = False, size: int = 0, *,
                 track: bool = True) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        self._track = track
        if name is None:
            while True:
                name = _make_filename()
                try:
                    mapping = _core.create(name[1:], size, track)
                except FileExistsError:
                    continue
                break
        else:
            if not isinstance(name, str):
                raise TypeError("'name' must be str, not %s" % type(name).__name__)
            if self._flags & os.O_EXCL:
                mapping = _core.create(name, size, track)
            elif self._flags & os.O_CREAT:
                # A subclass's create-or-attach (CPython's _flags hook).
                try:
                    mapping = _core.attach(name, track)
                except FileNotFoundError:
                    if size <= 0:
                        raise ValueError("cannot create the block %r without a size" % name) from None
                    mapping = _core.create(name, size, track)
            else:
                mapping = _core.attach(name, track)
            name = "/" + name
        self._name = name
        self._mapping = mapping
        self._fd = mapping.fd
        self._size = mapping.size
        self._buf = memoryview(cast(Any, mapping))  # (a buffer: the stubs' __buffer__)

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self) -> tuple[type[SharedMemory], tuple[str, bool, int]]:
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview:
        "A memoryview of contents of the shared memory block."
        return cast(memoryview, self._buf)  # None only once closed, as CPython's

    @property
    def name(self) -> str:
        "Unique name that identifies the shared memory block."
        reported = cast(str, self._name)  # set by __init__
        if self._prepend_leading_slash and reported and reported.startswith("/"):
            reported = reported[1:]
        return reported

    @property
    def size(self) -> int:
        "Size in bytes."
        return self._size

    def close(self) -> None:
        """Closes access to the shared memory from this instance but does
        not destroy the shared memory block. BufferError while a view of
        ``buf`` (a slice, a ctypes object) is alive; a numpy array made with
        ``buffer=shm.buf`` holds no view, so close() returns and the block
        stays mapped until that array is gone."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mapping is not None and not self._mapping.closed:
            self._mapping.close()
        self._fd = -1

    def unlink(self) -> None:
        """Requests that the underlying shared memory block be destroyed
        (its name removed; mappings stay valid until closed). Once, across
        all handles: FileNotFoundError the second time. Removes the block's
        tracker registrations."""
        if not self._name:
            return
        if self._mapping is not None and self._name == "/" + self._mapping.name:
            self._mapping.unlink()  # by this handle: forgets its tracker registrations
        else:
            _core.unlink(self.name)  # _name was changed: unlink what it names now


class ShareableList:
    """A fixed-length list of int, float, bool, str, bytes and None in one
    shared block, in CPython's layout. ``ShareableList(sequence)`` creates
    (``name=`` to choose the name), ``ShareableList(name=...)`` attaches."""

    def __init__(self, sequence: Optional[Iterable[_Item]] = None, *,
                 name: "str | None" = None) -> None:
        self._init(sequence, name, True)

    def _init(self, sequence: Optional[Iterable[_Item]], name: Optional[str], track: bool) -> None:
        if name is None or sequence is not None:
            # Registered as this process's creation (track): a tracked
            # attach alone registers use, and the tracker never unlinks a
            # block only used.
            access = _core.list_create(name, () if sequence is None else sequence, track)
            try:
                self.shm = SharedMemory(access_name(access, name), track=track)
            except BaseException:
                access.close()
                _core.unlink(access_name(access, name))
                raise
        else:
            access = _core.list_attach(name)
            self.shm = SharedMemory(name, track=track)
        self._access = access
        self._list_len = access.length()
        # Bound C methods: sl[i] costs one Python frame and one C call.
        self._get = access.get
        self._set = access.set

    @classmethod
    def _attach(cls, name: str, track: bool) -> "ShareableList":
        self = cls.__new__(cls)
        self._init(None, name, track)
        return self

    def _get_packing_format(self, position: int) -> str:
        "The struct format of the item at position (CPython's private helper)."
        return self._access.format(position)

    def __getitem__(self, position: int) -> _Item:
        return self._get(position)

    def __setitem__(self, position: int, value: _Item) -> None:
        self._set(position, value)

    def __iter__(self) -> Iterator[_Item]:
        get = self._get
        for i in range(self._list_len):
            yield get(i)

    def __reduce__(self) -> tuple[partial[ShareableList], tuple[()]]:
        return partial(self.__class__, name=self.shm.name), ()

    def __len__(self) -> int:
        return self._list_len

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self)}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        "The struct packing format used by all currently stored items."
        return self._access.format(None)

    def count(self, value: object) -> int:
        "L.count(value) -> integer -- return number of occurrences of value."
        return sum(value == entry for entry in self)

    def index(self, value: object) -> int:
        """L.index(value) -> integer -- return first index of value.
        Raises ValueError if the value is not present."""
        for position, entry in enumerate(self):
            if value == entry:
                return position
        raise ValueError(f"{value!r} not in this container")

    __class_getitem__ = classmethod(types.GenericAlias)


def access_name(access: _core.ListAccess, name: Optional[str]) -> str:
    return name if name is not None else access.name


class SharedMemoryManager:
    """A server process that creates shared blocks on request and unlinks
    every one of them at shutdown (``with SharedMemoryManager() as smm:``).

    ``SharedMemoryManager()`` makes a new server at a fresh private address
    with a random authkey (``start()`` or ``with`` starts it);
    ``SharedMemoryManager(address, authkey)`` one at that address;
    ``SharedMemoryManager(address, authkey, connect=True)`` joins a server
    another process (Python or C++) started."""

    def __init__(self, address: "str | None" = None, authkey: "bytes | None" = None, *,
                 connect: bool = False) -> None:
        self._m = _core.Manager(address, authkey, connect)
        self._connected = connect
        self._process: Optional[_ServerProcess] = None

    @property
    def address(self) -> str:
        return self._m.address

    @property
    def authkey(self) -> bytes:
        return self._m.authkey

    def start(self) -> None:
        """Starts the server (a forked process running shmkit's C++ server,
        which ignores SIGINT as CPython's does)."""
        self._m.start()
        self._process = _ServerProcess(self._m.server_pid)

    def shutdown(self) -> None:
        """Unlinks every block the server made and stops it."""
        if self._m.started or self._connected:
            self._m.shutdown()

    def __enter__(self) -> "SharedMemoryManager":
        if not self._m.started and not self._connected:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _check(self) -> None:
        if not self._m.started and not self._connected:
            raise ValueError("the SharedMemoryManager is not started")

    def SharedMemory(self, size: int) -> SharedMemory:
        """A new SharedMemory of ``size`` bytes owned by the server."""
        self._check()
        return SharedMemory(self._m.create_shared_memory(size), track=False)

    def ShareableList(self, sequence: Iterable[_Item]) -> ShareableList:
        """A new ShareableList of ``sequence`` owned by the server."""
        self._check()
        return ShareableList._attach(self._m.create_shareable_list(list(sequence)), False)

    def list_blocks(self) -> list[tuple[str, str, int]]:
        """[(name, kind, size)] of the blocks the server owns."""
        return self._m.list()

    def release(self, name: str) -> None:
        """Unlinks one block the server owns (CPython's release_segment)."""
        self._m.release(name)


class _ServerProcess:
    """What CPython's ``smm._process`` offers that callers use: the pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
