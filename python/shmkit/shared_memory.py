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
* :class:`SharedMemoryManager`: CPython's BaseManager API (start with an
  initializer, join, connect, get_server, tuple addresses for loopback)
  over shmkit's manager server (shmkit/manager.hpp), which unlinks every
  block it made at shutdown, and also when the process that started it
  dies, SIGKILL included. Its wire protocol is shmkit's own (not CPython's
  pickles); its differences from CPython's are listed in its docstring.
"""
from __future__ import annotations

import os
import secrets
import types
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Optional, Union, cast

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


# Hosts that mean "this machine" in a (host, port) address: shmkit's manager
# listens on a Unix socket, so only these can be served or reached.
_LOOPBACK_NAMES = ("", "localhost", "0.0.0.0", "::", "::1", "ip6-localhost")


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.startswith("127.")


def _unix_address(address: object) -> Optional[str]:
    """The Unix socket address a manager address names: a str is one
    already (a path, or "@name" for an abstract one); a (host, port) tuple
    with a loopback host is "@shmkit-manager-port-<port>", or the default
    private socket (None) for port 0."""
    if address is None or isinstance(address, str):
        return address
    if (isinstance(address, tuple) and len(address) == 2 and isinstance(address[0], str)
            and isinstance(address[1], int) and not isinstance(address[1], bool)):
        host, port = address
        if not _is_loopback(host):
            raise ValueError(
                "shmkit's SharedMemoryManager is node-local (a Unix socket): it cannot listen "
                "on or reach %r; use a loopback host ('127.0.0.1', 'localhost' or '')" % (address,))
        if not 0 <= port <= 65535:
            raise ValueError("port must be 0-65535, not %d" % port)
        return None if port == 0 else "@shmkit-manager-port-%d" % port
    raise TypeError("a manager address is a str (a Unix socket path, or '@name' for an abstract "
                    "one) or a (host, port) tuple, not %r" % (address,))


def _default_authkey() -> bytes:
    """CPython's default: this process's multiprocessing authkey (inherited
    by the processes it starts, so they can connect with it)."""
    import multiprocessing
    return bytes(multiprocessing.current_process().authkey)


class SharedMemoryManager:
    """A server process that creates shared blocks on request and unlinks
    every one of them at shutdown (``with SharedMemoryManager() as smm:``),
    with CPython's :class:`multiprocessing.managers.BaseManager` API where it
    makes sense for a node-local server of shared blocks.

    ``SharedMemoryManager()`` makes a new server at a fresh private address
    (a Unix socket in a new 0700 directory) with a random authkey;
    ``SharedMemoryManager(address, authkey)`` one at that address;
    ``SharedMemoryManager(address, authkey, connect=True)``, or ``.connect()``,
    joins a server another process (Python or C++) started.

    Differences from CPython's (each one deliberate):

    * The server is shmkit's C++ server (shmkit/manager.hpp), forked by
      ``start()``; it serves shared blocks only, over shmkit's own
      authenticated binary protocol (not pickles), so a CPython manager
      client cannot talk to it, and ``register()`` (Python objects served
      through proxies) raises NotImplementedError: use CPython's
      ``BaseManager`` for that. ``serializer`` must be 'pickle' or
      'xmlrpclib' (CPython's names) and is otherwise unused.
    * ``address``: a str is a Unix socket path, or a Linux abstract address
      "@name". A ``(host, port)`` tuple (CPython's TCP address) is accepted
      for a loopback host only ('127.x.x.x', 'localhost', '::1', and '' or
      '0.0.0.0', which stay node-local here: the server is never reachable
      from another machine); any other host is a ValueError. Port 0 (CPython's
      "any free port") is the default private socket, and ``address`` then
      reads back as its path; another port maps to the abstract address
      "@shmkit-manager-port-<port>", so processes that agree on a port meet
      there, and ``address`` reads back the tuple. Whatever the address, the
      server admits only connections of its own user (SO_PEERCRED).
    * ``authkey``: None means this process's ``multiprocessing`` authkey when
      an address is given (CPython's default); with no address, a fresh random
      key (read it back from ``authkey``).
    * ``start(initializer, initargs)``: with an initializer, ``start()`` first
      starts a Python process (of ``ctx``, as CPython's server process) that
      ignores SIGINT, runs ``initializer(*initargs)``, then forks the C++
      server, which inherits what the initializer set (environment, working
      directory, umask, limits, signal dispositions) but runs no Python code.
      That process is ``_process``; it stops the server (unlinking its
      blocks) when ``shutdown()`` is called, when it gets SIGTERM, or when the
      starting process dies. Without an initializer ``_process`` is the
      server itself. ``ctx`` matters only for that Python process.
    * ``get_server()`` starts the server and returns an object whose
      ``serve_forever()`` waits until it stops (a client's ``shutdown()``,
      SIGTERM, or Ctrl-C here), then shuts it down and returns (CPython's
      exits the process).
    * ``join(timeout)`` waits for the server process to exit (it does not
      stop it); on a connected handle it returns at once, as CPython's.
    * ``shutdown()`` on a connected handle stops the server (CPython's
      connected managers cannot).
    * Every block the server made is also unlinked when the starting process
      dies, SIGKILL included, and when the server itself is killed (its
      tracker watcher does it); CPython's stay in /dev/shm in both cases.
    """

    def __init__(self, address: "str | tuple[str, int] | None" = None,
                 authkey: "bytes | None" = None, serializer: str = "pickle",
                 ctx: Any = None, *, shutdown_timeout: float = 1.0, connect: bool = False) -> None:
        if serializer not in ("pickle", "xmlrpclib"):
            raise ValueError("unknown serializer %r (CPython's are 'pickle' and 'xmlrpclib')"
                             % (serializer,))
        if authkey is not None and not isinstance(authkey, bytes):
            raise TypeError("authkey must be bytes, not %s" % type(authkey).__name__)
        unix = _unix_address(address)
        self._given_address = address
        self._ctx = ctx
        self._shutdown_timeout = shutdown_timeout
        self._private_dir: Optional[str] = None
        self._process: Optional[Union[_ServerProcess, Any]] = None
        self._lifeline: Any = None
        self._state = "initial"  # -> "started" -> "shutdown"
        if unix is None and address is not None and connect:
            raise ValueError("cannot connect to %r: port 0 names no server" % (address,))
        if address is not None and authkey is None:
            authkey = _default_authkey()
        self._unix = unix
        self._key = authkey
        if connect:
            self._m = _core.Manager(unix, authkey, True)
            self._state = "started"
        elif unix is None and authkey is not None:
            # The default private address, with the caller's key.
            import tempfile
            self._private_dir = tempfile.mkdtemp(prefix="shmkit-")
            self._unix = os.path.join(self._private_dir, "listener")
            self._m = _core.Manager(self._unix, authkey)
        else:
            self._m = _core.Manager(unix, authkey)
        self._connected = connect

    @property
    def address(self) -> "str | tuple[str, int]":
        """Where the server listens: a Unix socket path or "@name"; the
        (host, port) tuple given, for a non-zero port."""
        if isinstance(self._given_address, tuple) and self._unix is not None \
                and self._unix.startswith("@shmkit-manager-port-"):
            return self._given_address
        return self._m.address

    @property
    def authkey(self) -> bytes:
        return self._m.authkey

    def start(self, initializer: Optional[Callable[..., object]] = None,
              initargs: Iterable[Any] = ()) -> None:
        """Starts the server (a forked process running shmkit's C++ server,
        which ignores SIGINT as CPython's does); returns once it listens.
        ``initializer(*initargs)`` runs first in a Python process that the
        server is forked from (see the class docstring)."""
        if self._state != "initial":
            import multiprocessing
            raise multiprocessing.ProcessError(
                "Already started server" if self._state == "started" else "Manager has shut down")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if initializer is None:
            self._m.start()
            self._process = _ServerProcess(self._m.server_pid)
        else:
            self._start_initialized(initializer, tuple(initargs))
        self._state = "started"

    def _start_initialized(self, initializer: Callable[..., object], initargs: tuple[Any, ...]) -> None:
        import multiprocessing
        ctx = self._ctx if self._ctx is not None else multiprocessing.get_context()
        ready_r, ready_w = ctx.Pipe(duplex=False)
        life_r, life_w = ctx.Pipe(duplex=False)
        key = self._key if self._unix is not None else None
        proc = ctx.Process(target=_serve_initialized, name="SharedMemoryManager-server",
                           args=(self._unix, key, initializer, initargs, ready_w, life_r, life_w))
        proc.start()
        ready_w.close()
        life_r.close()
        try:
            status = ready_r.recv()
        except EOFError:
            proc.join(self._shutdown_timeout)
            status = ("error", "RuntimeError", "the server process exited before it listened "
                      "(exit code %s)" % proc.exitcode)
        finally:
            ready_r.close()
        if status[0] != "ok":
            life_w.close()
            proc.join(self._shutdown_timeout)
            if status[1] in ("FileNotFoundError", "PermissionError", "OSError", "FileExistsError"):
                raise OSError(status[2])
            raise RuntimeError("SharedMemoryManager: the server did not start: %s: %s"
                               % (status[1], status[2]))
        self._m = _core.Manager(status[1], status[2], True)
        self._process = proc
        self._lifeline = life_w

    def connect(self) -> None:
        """Connects to a server another process started at ``address``
        (authenticated with ``authkey``); OSError if none answers."""
        if self._state != "initial":
            import multiprocessing
            raise multiprocessing.ProcessError("the manager is already started or connected")
        if self._unix is None or self._private_dir is not None:
            raise ValueError("connect() needs the address of a running server")
        m = _core.Manager(self._unix, self._m.authkey, True)
        m.list()  # raises if no server answers, or it refuses the key
        self._m = m
        self._connected = True
        self._state = "started"

    def get_server(self) -> "_Server":
        """Starts the server and returns an object whose ``serve_forever()``
        blocks until it stops (CPython's runs the server in this process;
        shmkit's always runs in its own)."""
        self.start()
        return _Server(self)

    def join(self, timeout: Optional[float] = None) -> None:
        """Waits until the server process exits (or ``timeout`` seconds
        pass); it does not ask it to. A connected handle returns at once."""
        if self._process is not None:
            self._process.join(timeout)

    @classmethod
    def register(cls, typeid: str, callable: Any = None, proxytype: Any = None, exposed: Any = None,
                 method_to_typeid: Any = None, create_method: bool = True) -> None:
        """Not supported: shmkit's server is C++ and serves shared blocks
        only, never Python objects through proxies."""
        raise NotImplementedError(
            "shmkit's SharedMemoryManager serves shared blocks from a C++ server and cannot host "
            "Python objects (register(%r)): use multiprocessing.managers.BaseManager for that"
            % (typeid,))

    def shutdown(self) -> None:
        """Unlinks every block the server made and stops it. Idempotent."""
        if self._state != "started":
            return
        self._state = "shutdown"
        try:
            if self._lifeline is not None:
                # The initializer's process stops its server and exits.
                self._lifeline.close()
                self._lifeline = None
                proc: Any = self._process  # (a multiprocessing Process)
                proc.join(self._shutdown_timeout)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(self._shutdown_timeout)
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
            elif isinstance(self._process, _ServerProcess) and self._process.exited():
                # It stopped on its own (a client's shutdown(), SIGTERM):
                # reap it; its blocks are gone already.
                try:
                    self._m.shutdown()
                except OSError:
                    pass
            else:
                self._m.shutdown()
        finally:
            if self._private_dir is not None:
                try:
                    os.rmdir(self._private_dir)
                except OSError:
                    pass

    def __enter__(self) -> "SharedMemoryManager":
        if self._state == "initial":
            self.start()
        elif self._state != "started":
            import multiprocessing
            raise multiprocessing.ProcessError("Manager has shut down")
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _check(self) -> None:
        if self._state != "started":
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


class _Server:
    """What ``get_server()`` returns: ``address`` and ``serve_forever()``."""

    def __init__(self, manager: SharedMemoryManager) -> None:
        self._manager = manager

    @property
    def address(self) -> "str | tuple[str, int]":
        return self._manager.address

    def serve_forever(self) -> None:
        """Blocks until the server stops (a client's shutdown(), SIGTERM,
        or KeyboardInterrupt here), then shuts it down."""
        try:
            self._manager.join()
        except KeyboardInterrupt:
            pass
        finally:
            self._manager.shutdown()


def _serve_initialized(address: Optional[str], authkey: Optional[bytes], initializer: Callable[..., object],
                       initargs: tuple[Any, ...], ready: Any, lifeline: Any, lifeline_w: Any) -> None:
    """The Python process of ``start(initializer, initargs)``: runs the
    initializer, forks the C++ server, reports its address, and stops it
    when the starter closes the lifeline (shutdown(), or its death) or on
    SIGTERM."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    lifeline_w.close()  # (a forked child inherited the starter's end)
    try:
        initializer(*initargs)
        # (No address: the default private one, with a fresh random key.)
        m = _core.Manager(address, authkey) if address is not None else _core.Manager()
        m.start()
    except BaseException as e:
        ready.send(("error", type(e).__name__, str(e)))
        ready.close()
        raise
    ready.send(("ok", m.address, m.authkey))
    ready.close()
    try:
        lifeline.recv()
    except (EOFError, OSError, SystemExit):
        pass
    finally:
        m.shutdown()


class _ServerProcess:
    """What CPython's ``smm._process`` offers for the forked C++ server:
    ``pid``, ``is_alive()``, ``join(timeout)`` and ``exitcode``. It never
    reaps the process (the C++ handle does, at shutdown)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exitcode: Optional[int] = None
        self._gone = False

    def exited(self) -> bool:
        if self._gone:
            return True
        try:
            r = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by the handle's shutdown()
            self._gone = True
            return True
        if r is None:
            return False
        self.exitcode = r.si_status if r.si_code == os.CLD_EXITED else -r.si_status
        self._gone = True
        return True

    def is_alive(self) -> bool:
        return not self.exited()

    def join(self, timeout: Optional[float] = None) -> None:
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.exited():
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.01)
