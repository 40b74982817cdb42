"""Every method of every type of the extension modules, called so that the
object is closed underneath it: the interpreter must never crash.

* (a) ``conv``: an argument whose conversion (``__index__``, ``__float__``,
  ``__bool__``, ``__len__``/``__iter__``, struct packing) closes the object.
* (b) ``thread``: the same argument, but the conversion hands the GIL to
  another thread (it waits on an Event) and *that* thread closes the object.
* (c) ``closed``: the method called on an object already closed.
* (d) ``blocked``: another thread closes the object while the call is
  blocked without the GIL (queues: once ``_waiting`` says so; the views of
  ``_sync``: once the waiter sleeps on a futex, read from /proc).

Expected: the call completes or raises an ``Exception`` (ValueError for a
closed object, BufferError from a refused close, ...); never a signal.
Each case runs in its own interpreter, so a SIGSEGV is a failed case, not a
dead pytest. The methods are enumerated by introspection: a method with no
entry in TABLE fails ``test_every_method_has_an_entry``.
"""
import os
import subprocess
import sys
import textwrap
import types

import pytest

import shmkit._core as _core
import shmkit._queues as _queues
import shmkit._sync as _sync

MODULES = (_core, _sync, _queues)

PRELUDE = r'''
import os, sys, threading, time, struct, queue
import shmkit._core as _core, shmkit._sync as _sync, shmkit._queues as _queues
MODE = sys.argv[1]
TAG = "pyre_%d" % os.getpid()
made = []
def nm(t):
    n = "%s_%s" % (TAG, t)
    made.append(n)
    return n
def cleanup():
    for n in made:
        for f in (n, n + ".bell"):  # a ByteQueue's doorbell FIFO beside its block
            try:
                os.unlink("/dev/shm/" + f)
            except OSError:
                pass
in_conv = threading.Event()
closed = threading.Event()
closer_box = []
def fire():
    if getattr(fire, "done", False):
        return
    fire.done = True
    if MODE == "thread":
        in_conv.set()
        assert closed.wait(30), "the closing thread never ran"
    else:
        try:
            closer_box[0]()
        except Exception:
            pass
def closer_thread():
    assert in_conv.wait(30)
    try:
        closer_box[0]()
    except Exception:
        pass
    closed.set()
class E:
    """Converts to `v`; its first conversion closes the object."""
    def __init__(self, v=1):
        self.v = v
    def __index__(self):
        fire(); return int(self.v)
    def __int__(self):
        fire(); return int(self.v)
    def __float__(self):
        fire(); return float(self.v)
    def __bool__(self):
        fire(); return bool(self.v)
    def __len__(self):
        fire(); return len(self.v)
    def __iter__(self):
        fire(); return iter(self.v)
class RE:
    """Pickles as 1; pickling it (a reducer: any Python code) closes the object."""
    def __reduce__(self):
        fire(); return (int, (1,))
def Q(kind="spsc", item="d", code="d", size=8, mode="s", maxbytes=0, st=None, cap=4, fill=0):
    q = _queues._Queue(kind, nm("q"), True, cap, size, min(size, 8), code,
                       None if code else "pyre/t", mode, maxbytes, st)
    for _ in range(fill):
        q.put(b"\0" * size if mode == "r" else 1.0 if code == "d" else 1)
    return q
def BQ(fill=False):
    q = _queues.ByteQueue.create(nm("b"), 4096)
    while fill:
        try:
            q.put_parts([bytes(1000)], False)
        except queue.Full:
            break
    return q
def MSG():
    q = BQ()
    q.put_parts([bytes(5000)])  # out of line: a ByteMessage
    m = q._get_message()
    assert not isinstance(m, bytes)
    return m
def mapping(size=4096):
    return _core.create(nm("m"), size, False)
def view(cls, size=64, **kw):
    m = mapping()
    return m, (cls(m, 0, **kw) if kw else cls(m, 0))
def done(call):
    if MODE == "thread":
        t = threading.Thread(target=closer_thread)
        t.start()
    try:
        call()
    except Exception as e:
        print("raised", type(e).__name__, e)
    else:
        print("completed")
    if MODE == "thread":
        in_conv.set()
        t.join()
'''


def _type_methods(t):
    out = []
    for k, v in t.__dict__.items():
        if k.startswith("__") and k not in ("__enter__", "__exit__"):
            continue
        if isinstance(v, (types.MethodDescriptorType, types.ClassMethodDescriptorType,
                          staticmethod, classmethod, types.BuiltinFunctionType)):
            out.append(k)
    return sorted(out)


def _extension_types():
    seen = {}
    for m in MODULES:
        for n, t in vars(m).items():
            if isinstance(t, type) and not issubclass(t, BaseException):
                seen[t.__module__.split(".")[-1] + "." + t.__qualname__] = t
    return seen


# (setup, closer, call): `setup` binds `obj` (and whatever `call` needs);
# `closer` closes it; `call` is the method call, with E(...) arguments where
# a conversion can run Python code. Several rows per method: one per
# argument that converts. A method with no convertible argument has a row
# with no E: it is still called after a close (case c).
Q_D = "obj = Q()"
Q_D_FULL = "obj = Q(fill=4)"
Q_B = "obj = Q(item='?', code='?', size=1)"
Q_Y = "obj = Q(code=None, size=16, mode='y', maxbytes=12)"
Q_T = "obj = Q(code=None, size=16, mode='t', st=struct.Struct('qq'))"
Q_R = "obj = Q(code=None, size=8, mode='r')"
CLOSE = "obj.close"
SEQ = "obj = _queues._SeqLock(nm('s'), True, 8, 8, 'd', None, 's')"
SEQ_T = "obj = _queues._SeqLock(nm('s'), True, 16, 8, None, 'pyre/t', 't', 0, struct.Struct('qq'))"
RING = "obj = _queues._BroadcastRing(nm('r'), True, 4, 8, 8, 'd', None, 's')"
RING_T = "obj = _queues._BroadcastRing(nm('r'), True, 4, 16, 8, None, 'pyre/t', 't', 0, struct.Struct('qq'))"
READER = RING + "; ring = obj; obj = ring.reader()"
BQ_ = "obj = BQ()"
BQ_FULL = "obj = BQ(fill=True)"
# With shmkit.Queue's codec: put_obj drives the thread's pickler itself.
BQ_CODEC = "from shmkit import mpqueues; obj = mpqueues._codec(BQ())"
MSG_ = "obj = MSG()"
MAP = "obj = mapping()"
LIST = "obj = _core.list_create(nm('l'), [1, 2.0, 'x', b'y', None, True])"
MAN = "obj = _core.Manager(); obj.start()"
MAN_END = "obj.shutdown"


def V(cls, **kw):
    extra = ", ".join("%s=%r" % kv for kv in kw.items())
    return "m, obj = view(_sync.%s%s)" % (cls, (", " + extra) if extra else "")


VIEW_CLOSE = "m.close"  # refused (BufferError): the view holds an export
TB = ("obj = _sync.TypedBlock.create(nm('t'), _sync.KIND_SYNC, None, 'pyre/tb', 8, 8, 1, 0, 8)")

TABLE = {
    "_queues._Queue.put": [
        (Q_D, CLOSE, "obj.put(E(2.5))"),
        (Q_D_FULL, CLOSE, "obj.put(2.5, E(True))"),
        (Q_D_FULL, CLOSE, "obj.put(2.5, True, E(0.05))"),
        ("obj = Q(kind='mpmc', fill=4)", CLOSE, "obj.put(2.5, timeout=E(0.05))"),
        (Q_B, CLOSE, "obj.put(E(1))"),
        (Q_T, CLOSE, "obj.put((E(1), E(2)))"),
    ],
    "_queues._Queue.get": [
        (Q_D, CLOSE, "obj.get(block=E(True))"),
        (Q_D, CLOSE, "obj.get(True, E(0.05))"),
        ("obj = Q(kind='mpmc')", CLOSE, "obj.get(E(True), E(0.05))"),
    ],
    "_queues._Queue.put_many": [
        (Q_D, CLOSE, "obj.put_many([E(1.0), E(2.0)])"),
        (Q_D, CLOSE, "obj.put_many(E([1.0, 2.0]))"),
        (Q_D_FULL, CLOSE, "obj.put_many([1.0], E(0.05))"),
        (Q_T, CLOSE, "obj.put_many([(E(1), 2)])"),
        (Q_Y, CLOSE, "obj.put_many(E([b'ab']))"),
    ],
    "_queues._Queue.get_many": [
        (Q_D, CLOSE, "obj.get_many(E(2))"),
        (Q_D, CLOSE, "obj.get_many(2, E(True), 0.05)"),
        (Q_D, CLOSE, "obj.get_many(2, True, E(0.05))"),
    ],
    "_queues._Queue.get_many_bytes": [
        (Q_D, CLOSE, "obj.get_many_bytes(E(2))"),
        (Q_D, CLOSE, "obj.get_many_bytes(2, E(True), 0.05)"),
        (Q_D, CLOSE, "obj.get_many_bytes(2, True, E(0.05))"),
    ],
    "_queues._Queue.get_view": [(Q_D_FULL, CLOSE, "obj.get_view(E(2)).release()")],
    "_queues._Queue.qsize": [(Q_D, CLOSE, "obj.qsize()")],
    "_queues._Queue.empty": [(Q_D, CLOSE, "obj.empty()")],
    "_queues._Queue.full": [(Q_D, CLOSE, "obj.full()")],
    "_queues._Queue.unlink": [(Q_D, CLOSE, "obj.unlink()")],
    "_queues._Queue.close": [(Q_D, CLOSE, "obj.close()")],
    "_queues.BatchView.release": [
        (Q_D_FULL + "; v = obj.get_view(2)", "v.release", "v.release()")],
    "_queues.BatchView.__enter__": [
        (Q_D_FULL + "; v = obj.get_view(2)", "v.release", "v.__enter__()")],
    "_queues.BatchView.__exit__": [
        (Q_D_FULL + "; v = obj.get_view(2)", "v.release", "v.__exit__(E(1), None, None)")],
    "_queues._SeqLock.store": [(SEQ, CLOSE, "obj.store(E(2.5))"), (SEQ_T, CLOSE, "obj.store((E(1), 2))")],
    "_queues._SeqLock.read": [(SEQ, CLOSE, "obj.read(E(True), E(0.05))")],
    "_queues._SeqLock.try_read": [(SEQ, CLOSE, "obj.try_read()")],
    "_queues._SeqLock.unlink": [(SEQ, CLOSE, "obj.unlink()")],
    "_queues._SeqLock.close": [(SEQ, CLOSE, "obj.close()")],
    # A ring has no close(): its readers keep it mapped. The closer is the
    # nearest thing, unlink().
    "_queues._BroadcastRing.push": [(RING, "obj.unlink", "obj.push(E(2.5))"),
                                    (RING_T, "obj.unlink", "obj.push((E(1), 2))")],
    "_queues._BroadcastRing.reader": [(RING, "obj.unlink", "obj.reader(E(0))")],
    "_queues._BroadcastRing.unlink": [(RING, "obj.unlink", "obj.unlink()")],
    "_queues.BroadcastReader.read": [(READER, "ring.unlink", "obj.read(E(True), E(0.05))")],
    "_queues.BroadcastReader.backlog": [(READER, "ring.unlink", "obj.backlog()")],
    "_core.Mapping.close": [(MAP, CLOSE, "obj.close()")],
    "_core.Mapping.unlink": [(MAP, CLOSE, "obj.unlink()")],
    "_core.ListAccess.get": [(LIST, CLOSE, "obj.get(E(1))")],
    "_core.ListAccess.set": [(LIST, CLOSE, "obj.set(E(1), 5)"), (LIST, CLOSE, "obj.set(0, 5)")],
    "_core.ListAccess.format": [(LIST, CLOSE, "obj.format(E(1))"), (LIST, CLOSE, "obj.format()")],
    "_core.ListAccess.length": [(LIST, CLOSE, "obj.length()")],
    "_core.ListAccess.close": [(LIST, CLOSE, "obj.close()")],
    "_core.Manager.start": [(MAN, MAN_END, "obj.start()")],
    "_core.Manager.shutdown": [(MAN, MAN_END, "obj.shutdown()")],
    "_core.Manager.create_shared_memory": [(MAN, MAN_END, "_core.unlink(obj.create_shared_memory(E(64)))")],
    "_core.Manager.create_shareable_list": [(MAN, MAN_END, "obj.create_shareable_list(E([1, 2]))")],
    "_core.Manager.release": [(MAN, MAN_END, "obj.release('pyre_nothing')")],
    "_core.Manager.list": [(MAN, MAN_END, "obj.list()")],
    "_sync.TypedBlock.create": [
        (TB, CLOSE, "_sync.TypedBlock.create(nm('t2'), _sync.KIND_SYNC, None, 'pyre/tb', E(8), 8, 1, 0, 8)")],
    "_sync.TypedBlock.attach": [
        (TB, CLOSE, "_sync.TypedBlock.attach(obj.name, _sync.KIND_SYNC, None, 'pyre/tb', E(8), 8)")],
    "_sync.TypedBlock.close": [(TB, CLOSE, "obj.close()")],
    "_queues.ByteQueue.create": [(BQ_, CLOSE, "_queues.ByteQueue.create(nm('b2'), E(4096), E(0), E(True))")],
    "_queues.ByteQueue.attach": [(BQ_, CLOSE, "_queues.ByteQueue.attach(obj.name)")],
    "_queues.ByteQueue.put_parts": [
        (BQ_, CLOSE, "obj.put_parts(E([b'ab', b'cd']))"),
        (BQ_, CLOSE, "obj.put_parts([b'ab'], E(True))"),
        (BQ_FULL, CLOSE, "obj.put_parts([bytes(1000)], True, E(0.05))"),
    ],
    "_queues.ByteQueue.get": [(BQ_, CLOSE, "obj.get(E(True), 0.05)"), (BQ_, CLOSE, "obj.get(True, E(0.05))")],
    "_queues.ByteQueue.get_buffer": [(BQ_, CLOSE, "obj.get_buffer(E(True), 0.05)"),
                                     (BQ_, CLOSE, "obj.get_buffer(True, E(0.05))")],
    "_queues.ByteQueue._get_message": [(BQ_, CLOSE, "obj._get_message(E(True), 0.05)"),
                                       (BQ_, CLOSE, "obj._get_message(True, E(0.05))")],
    "_queues.ByteQueue.set_codec": [(BQ_, CLOSE, "obj.set_codec(repr, repr, repr)")],
    "_queues.ByteQueue.set_taken": [(BQ_, CLOSE, "obj.set_taken(None)")],
    "_queues.ByteQueue.put_obj": [(BQ_, CLOSE, "obj.put_obj(b'ab', E(True))"),
                                  (BQ_CODEC, CLOSE, "obj.put_obj([RE(), 2])"),
                                  (BQ_CODEC, "lambda: obj.set_codec(repr, repr, repr)", "obj.put_obj([RE(), 2])"),
                                  (BQ_FULL, CLOSE, "obj.put_obj(bytes(1000), True, E(0.05))")],
    "_queues.ByteQueue.get_obj": [(BQ_, CLOSE, "obj.get_obj(E(True), 0.05)"),
                                  (BQ_, CLOSE, "obj.get_obj(True, E(0.05))")],
    "_queues.ByteQueue.wait_message": [(BQ_, CLOSE, "obj.wait_message(E(0.05))")],
    "_queues.ByteQueue.spin_for_message": [(BQ_, CLOSE, "obj.spin_for_message(E(0.01))"),
                                           (BQ_, CLOSE, "obj.spin_for_message(0.01, E(0.0))")],
    "_queues.ByteQueue.empty": [(BQ_, CLOSE, "obj.empty()")],
    "_queues.ByteQueue.size": [(BQ_, CLOSE, "obj.size()")],
    "_queues.ByteQueue.unblock": [(BQ_, CLOSE, "obj.unblock()")],
    "_queues.ByteQueue.fileno": [(BQ_, CLOSE, "obj.fileno()")],
    "_queues.ByteQueue.settle": [(BQ_, CLOSE, "obj.settle()")],
    "_queues.ByteQueue.keep_out_of_line_blocks": [(BQ_, CLOSE, "obj.keep_out_of_line_blocks(E(2))")],
    "_queues.ByteQueue.drop_out_of_line_blocks": [(BQ_, CLOSE, "obj.drop_out_of_line_blocks()")],
    "_queues.ByteQueue.close": [(BQ_, CLOSE, "obj.close()")],
    "_queues.ByteQueue.unlink": [(BQ_, CLOSE, "obj.unlink()")],
    "_queues.ByteQueue.__enter__": [(BQ_, CLOSE, "obj.__enter__()")],
    "_queues.ByteQueue.__exit__": [(BQ_, CLOSE, "obj.__exit__(E(1), None, None)")],
    "_queues.ByteMessage.release": [(MSG_, "obj.release", "obj.release()")],
    "_queues.ByteMessage.__enter__": [(MSG_, "obj.release", "obj.__enter__()")],
    "_queues.ByteMessage.__exit__": [(MSG_, "obj.release", "obj.__exit__(E(1), None, None)")],
    "_sync.TypedBlock.unlink": [(TB, CLOSE, "obj.unlink()")],
}

# The views of _sync: their exporter (a Mapping) is what a caller can close;
# its close() is refused while the view holds its export.
_SYNC_CALLS = {
    "Mutex": ["acquire(E(True), E(0.05))", "release()", "locked()", "__enter__()", "__exit__(E(1), 2, 3)",
              "_over(m, E(0))"],
    "RecursiveMutex": ["acquire(E(True), E(0.05))", "release()", "_count()", "_is_mine()", "__enter__()",
                       "__exit__(E(1), 2, 3)", "_over(m, E(0))"],
    "RobustMutex": ["acquire(E(True), E(0.05))", "release()", "_state()", "make_consistent()", "__enter__()",
                    "__exit__(E(1), 2, 3)", "_over(m, E(0))"],
    "Semaphore": ["acquire(E(True), E(0.05))", "release(E(1))", "get_value()", "_max_value()", "__enter__()",
                  "__exit__(E(1), 2, 3)", "_over(m, E(0))", "_layout(E(1), E(1))"],
    "Event": ["wait(E(0.05))", "set()", "clear()", "is_set()", "_over(m, E(0))"],
    "Condition": ["wait(lk, E(0.05))", "notify(E(1))", "notify_all()", "_over(m, E(0))"],
}
for _cls, _calls in _SYNC_CALLS.items():
    for _c in _calls:
        _meth = _c.split("(")[0]
        _setup = V(_cls)
        if _cls == "Condition":
            _setup = "m, obj = view(_sync.Condition); lk = _sync.Mutex(m, 128); lk.acquire()"
        if _cls in ("Mutex", "RecursiveMutex", "RobustMutex") and _meth in ("release", "__exit__", "make_consistent"):
            _setup += "; obj.acquire()"
        if _cls == "Semaphore":
            _setup += "; obj.release()"  # a zeroed semaphore is 0: acquire would block
        TABLE.setdefault("_sync.%s.%s" % (_cls, _meth), []).append(
            (_setup, VIEW_CLOSE, "obj." + _c))
for _c in ["load()", "store(E(3))", "exchange(E(3))", "fetch_add(E(3))", "fetch_sub(E(3))", "fetch_and(E(3))",
           "fetch_or(E(3))", "fetch_xor(E(3))", "compare_exchange(E(0), E(3))", "wait(E(1), E(0.05))",
           "notify(E(1))", "notify_one()", "notify_all()", "_over(m, E(0), 'q')"]:
    TABLE.setdefault("_sync.AtomicRef." + _c.split("(")[0], []).append(
        ("m, obj = view(_sync.AtomicRef, typecode='q')", VIEW_CLOSE, "obj." + _c))


def _all_methods():
    types_ = _extension_types()
    # Types reachable only through an instance.
    types_["_queues.BatchView"] = None
    types_["_queues.BroadcastReader"] = types_.get("_queues.BroadcastReader")
    out = []
    for name, t in types_.items():
        if t is None:
            continue
        out += [name + "." + m for m in _type_methods(t)]
    return sorted(out)


def _run(mode, setup, closer, call, timeout=60):
    code = PRELUDE + textwrap.dedent("""
        try:
            {setup}
            closer_box.append({closer})
            if MODE == "closed":
                try:
                    closer_box[0]()
                except Exception:
                    pass
            done(lambda: {call})
            print("after", flush=True)
        finally:
            cleanup()
    """).format(setup=setup, closer=closer, call=call)
    r = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=timeout)
    return r


CASES = [(name, i, row) for name, rows in sorted(TABLE.items()) for i, row in enumerate(rows)]


def test_every_method_has_an_entry():
    missing = [m for m in _all_methods() if m not in TABLE]
    assert not missing, "methods of the extension types with no row in TABLE: %s" % missing
    # BatchView is not a module attribute: check its methods through an instance's type.
    assert "_queues.BatchView.release" in TABLE


def test_batchview_methods_have_entries(names):
    q = _queues._Queue("spsc", names("bv"), True, 4, 8, 8, "d", None, "s")
    try:
        v = q.get_view(0)
        missing = ["_queues.BatchView." + m for m in _type_methods(type(v))
                   if "_queues.BatchView." + m not in TABLE]
        v.release()
        assert not missing, missing
    finally:
        q.unlink()
        q.close()


@pytest.mark.parametrize("mode", ["conv", "thread", "closed"])
@pytest.mark.parametrize("name,i,row", CASES, ids=["%s#%d" % (c[0], c[1]) for c in CASES])
def test_closed_underneath_never_crashes(mode, name, i, row):
    setup, closer, call = row
    if mode in ("conv", "thread") and "E(" not in call:
        pytest.skip("no argument that converts")
    r = _run(mode, setup, closer, call)
    assert r.returncode == 0, "%s %s: exit %d\nstdout: %s\nstderr: %s" % (
        mode, call, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "after" in r.stdout, r.stdout + r.stderr
    if mode == "closed" and closer == CLOSE and "completed" not in r.stdout:
        # A closed object says so.
        assert "ValueError" in r.stdout or "Error" in r.stdout, r.stdout


# ---------------------------------------------------------------- blocked

# (setup, call, close, unblock): `call` blocks; once it waits without the
# GIL, another thread runs `close` (which must refuse or be harmless), then
# `unblock` lets the call finish.
# A SeqLock read blocks while the sequence is odd (a writer mid-store):
# made odd through an AtomicRef over the block's control word (the prefix,
# right after the header), made even again to let the read finish.
SEQ_ODD = (SEQ + "; mm = _core.attach(obj.name, False); w = _sync.AtomicRef(mm, _core.HEADER_SIZE, 'Q');"
           " w.store(w.load() | 1)")
QUEUE_BLOCKED = {
    "SeqLock.read": (SEQ_ODD, "obj.read()", "w.store(w.load() + 1)"),
    "put": (Q_D_FULL, "obj.put(2.5)", "obj.get()"),
    "get": (Q_D, "obj.get()", "obj.put(1.0)"),
    "put_many": (Q_D_FULL, "obj.put_many([1.0, 2.0])", "obj.get_many(4)"),
    "get_many": (Q_D, "obj.get_many(2)", "obj.put(1.0)"),
    "get_many_bytes": (Q_D, "obj.get_many_bytes(2)", "obj.put(1.0)"),
}
SYNC_BLOCKED = {
    "Mutex.acquire": ("m, obj = view(_sync.Mutex); obj.acquire()", "obj.acquire()", "obj.release()"),
    "Semaphore.acquire": ("m, obj = view(_sync.Semaphore)", "obj.acquire()", "obj.release()"),
    "Event.wait": ("m, obj = view(_sync.Event)", "obj.wait()", "obj.set()"),
    "AtomicRef.wait": ("m, obj = view(_sync.AtomicRef, typecode='i')", "obj.wait(0)",
                       "obj.store(1); obj.notify_all()"),
}

BLOCKED_PRELUDE = r'''
def futex_sleeping(tid):
    try:
        with open("/proc/self/task/%d/wchan" % tid) as f:
            w = f.read()
        with open("/proc/self/task/%d/stat" % tid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return st == "S" and "futex" in w
def blocked_case(setup_ns, call, close, unblock, waiting):
    out = {}
    def run():
        out["tid"] = threading.get_native_id()
        try:
            exec(call, setup_ns)
            out["r"] = "completed"
        except Exception as e:
            out["r"] = "raised %s %s" % (type(e).__name__, e)
    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while not waiting(setup_ns, out):
        assert time.monotonic() < deadline, "the call never blocked"
        time.sleep(0.001)
    try:
        exec(close, setup_ns)
        print("close returned")
    except Exception as e:
        print("close raised", type(e).__name__, e)
    exec(unblock, setup_ns)
    t.join(30)
    assert not t.is_alive(), "the blocked call never returned"
    print("call", out["r"])
'''


@pytest.mark.parametrize("method", sorted(QUEUE_BLOCKED))
def test_queue_closed_while_blocked(method):
    setup, call, unblock = QUEUE_BLOCKED[method]
    code = PRELUDE + BLOCKED_PRELUDE + textwrap.dedent("""
        try:
            ns = dict(globals())
            exec({setup!r}, ns)
            blocked_case(ns, {call!r}, "obj.close()", {unblock!r}, lambda ns, out: ns["obj"]._waiting > 0)
            ns["obj"].close()
            print("after", flush=True)
        finally:
            cleanup()
    """).format(setup=setup, call=call, unblock=unblock)
    r = subprocess.run([sys.executable, "-c", code, "blocked"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and "after" in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert "close raised RuntimeError" in r.stdout, r.stdout


@pytest.mark.parametrize("method", sorted(SYNC_BLOCKED))
def test_sync_exporter_closed_while_blocked(method):
    setup, call, unblock = SYNC_BLOCKED[method]
    code = PRELUDE + BLOCKED_PRELUDE + textwrap.dedent("""
        try:
            ns = dict(globals())
            exec({setup!r}, ns)
            blocked_case(ns, {call!r}, "m.close()", {unblock!r},
                         lambda ns, out: "tid" in out and futex_sleeping(out["tid"]))
            print("after", flush=True)
        finally:
            cleanup()
    """).format(setup=setup, call=call, unblock=unblock)
    r = subprocess.run([sys.executable, "-c", code, "blocked"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and "after" in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert "close raised BufferError" in r.stdout, r.stdout
    assert "call completed" in r.stdout, r.stdout


@pytest.mark.parametrize("name", sorted(_extension_types()))
def test_direct_instantiation_is_refused_or_usable(name):
    """A type made only by the module's functions refuses T(); one with a
    constructor refuses bad arguments. Either way no object without its
    block, whose methods would then run on nothing."""
    mod, _, tname = name.partition(".")
    code = textwrap.dedent("""
        import sys
        import shmkit.{mod} as mod
        t = getattr(mod, {tname!r})
        for args in ((), (None,), (b"",), (bytearray(64), 0)):
            try:
                o = t(*args)
            except Exception as e:
                print("refused", type(e).__name__)
                continue
            print("made", args)
            for k in dir(o):
                if k.startswith("__") or k in ("create", "attach", "start", "_over", "acquire", "wait"):
                    continue
                try:
                    v = getattr(o, k)
                    if callable(v):
                        v()
                except Exception:
                    pass
        o = None
        import gc, os
        gc.collect()
        os.fstat(0)  # a zero-filled handle's close() would have closed descriptor 0
        print("after")
    """).format(mod=mod, tname=tname)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.PIPE)
    assert r.returncode == 0 and "after" in r.stdout, (r.returncode, r.stdout, r.stderr)
