"""Every public C callable of the extension modules has a text signature:
inspect.signature() works on it (as on CPython's own Lock.acquire) and gives
the parameters below. A new function, method or type that the extension
adds without a signature, or with other parameters, fails here.

The table is the extension's documented calling convention: positional-only
parameters where the C code reads positions, keywords where it accepts them
(block/timeout), and the types' constructors as Python calls them."""
import inspect

import pytest

import shmkit._core as _core
import shmkit._queues as _queues
import shmkit._sync as _sync

MODULES = (_core, _sync, _queues)

EXPECTED = {
    '_core._noop': '(*args)',
    '_core.create': '(name, size, track, /)',
    '_core.attach': '(name, track, read_only=False, /)',
    '_core.unlink': '(name, /)',
    '_core.list_create': '(name, items, track=False, /)',
    '_core.list_attach': '(name, /)',
    '_core.create_object': '(name, is_array, typecode, size, align, type_name, count, lock_kind, initial, track, /)',
    '_core.attach_object': '(name, is_array, typecode, size, align, type_name, count, lock_kind, track, /)',
    '_core._registrations': '()',
    '_core.Mapping.close': '(self, /)',
    '_core.Mapping.unlink': '(self, /)',
    '_core.ListAccess.get': '(self, index, /)',
    '_core.ListAccess.set': '(self, index, value, /)',
    '_core.ListAccess.format': '(self, index=None, /)',
    '_core.ListAccess.length': '(self, /)',
    '_core.ListAccess.close': '(self, /)',
    '_core.Manager': '(address=None, authkey=None, connect=False)',
    '_core.Manager.start': '(self, /)',
    '_core.Manager.shutdown': '(self, /)',
    '_core.Manager.create_shared_memory': '(self, size, /)',
    '_core.Manager.create_shareable_list': '(self, seq, /)',
    '_core.Manager.release': '(self, name, /)',
    '_core.Manager.list': '(self, /)',
    '_sync.fnv1a': '(s, /)',
    '_sync.Mutex': '(buffer, offset)',
    '_sync.Mutex.acquire': '(self, /, block=True, timeout=None)',
    '_sync.Mutex.release': '(self, /)',
    '_sync.Mutex.__enter__': '(self, /)',
    '_sync.Mutex.__exit__': '(self, /, *args)',
    '_sync.Mutex.locked': '(self, /)',
    '_sync.Mutex._over': '(buffer, offset, /)',
    '_sync.RecursiveMutex': '(buffer, offset)',
    '_sync.RecursiveMutex.acquire': '(self, /, block=True, timeout=None)',
    '_sync.RecursiveMutex.release': '(self, /)',
    '_sync.RecursiveMutex.__enter__': '(self, /)',
    '_sync.RecursiveMutex.__exit__': '(self, /, *args)',
    '_sync.RecursiveMutex._count': '(self, /)',
    '_sync.RecursiveMutex._is_mine': '(self, /)',
    '_sync.RecursiveMutex._over': '(buffer, offset, /)',
    '_sync.RobustMutex': '(buffer, offset)',
    '_sync.RobustMutex.acquire': '(self, /, block=True, timeout=None)',
    '_sync.RobustMutex.release': '(self, /)',
    '_sync.RobustMutex.make_consistent': '(self, /)',
    '_sync.RobustMutex._state': '(self, /)',
    '_sync.RobustMutex.__enter__': '(self, /)',
    '_sync.RobustMutex.__exit__': '(self, /, *args)',
    '_sync.RobustMutex._over': '(buffer, offset, /)',
    '_sync.Semaphore': '(buffer, offset)',
    '_sync.Semaphore.acquire': '(self, /, block=True, timeout=None)',
    '_sync.Semaphore.release': '(self, n=1, /)',
    '_sync.Semaphore.get_value': '(self, /)',
    '_sync.Semaphore._max_value': '(self, /)',
    '_sync.Semaphore._layout': '(value, max_value, /)',
    '_sync.Semaphore.__enter__': '(self, /)',
    '_sync.Semaphore.__exit__': '(self, /, *args)',
    '_sync.Semaphore._over': '(buffer, offset, /)',
    '_sync.Event': '(buffer, offset)',
    '_sync.Event.is_set': '(self, /)',
    '_sync.Event.set': '(self, /)',
    '_sync.Event.clear': '(self, /)',
    '_sync.Event.wait': '(self, /, timeout=None)',
    '_sync.Event._over': '(buffer, offset, /)',
    '_sync.Condition': '(buffer, offset)',
    '_sync.Condition.wait': '(self, lock, /, timeout=None)',
    '_sync.Condition.notify': '(self, n=1, /)',
    '_sync.Condition.notify_all': '(self, /)',
    '_sync.Condition._over': '(buffer, offset, /)',
    '_sync.AtomicRef': '(buffer, offset, typecode)',
    '_sync.AtomicRef.load': '(self, /)',
    '_sync.AtomicRef.store': '(self, value, /)',
    '_sync.AtomicRef.exchange': '(self, value, /)',
    '_sync.AtomicRef.fetch_add': '(self, delta, /)',
    '_sync.AtomicRef.fetch_sub': '(self, delta, /)',
    '_sync.AtomicRef.fetch_and': '(self, mask, /)',
    '_sync.AtomicRef.fetch_or': '(self, mask, /)',
    '_sync.AtomicRef.fetch_xor': '(self, mask, /)',
    '_sync.AtomicRef.compare_exchange': '(self, expected, desired, /)',
    '_sync.AtomicRef.wait': '(self, old, /, timeout=None)',
    '_sync.AtomicRef.notify': '(self, n=None, /)',
    '_sync.AtomicRef.notify_one': '(self, /)',
    '_sync.AtomicRef.notify_all': '(self, /)',
    '_sync.AtomicRef._over': '(buffer, offset, typecode, /)',
    '_sync.TypedBlock.create': "(name, kind, typecode, type_name, elem_size, elem_align, count, prefix_size, payload_size, params=(), prefix_init=b'', payload_init=b'', track=False)",
    '_sync.TypedBlock.attach': '(name, kind, typecode, type_name, elem_size, elem_align, init_timeout=1.0)',
    '_sync.TypedBlock.close': '(self, /)',
    '_sync.TypedBlock.unlink': '(self, /)',
    '_queues.supported_sizes': '()',
    '_queues._Queue': '(kind, name, create, capacity, item_size, item_align, typecode, type_name, mode, maxbytes=0, struct=None, track=False)',
    '_queues._Queue.put': '(self, item, /, block=True, timeout=None)',
    '_queues._Queue.get': '(self, /, block=True, timeout=None)',
    '_queues._Queue.put_many': '(self, items, /, timeout=None)',
    '_queues._Queue.get_many': '(self, max, /, block=True, timeout=None)',
    '_queues._Queue.get_many_bytes': '(self, max, /, block=True, timeout=None)',
    '_queues._Queue.get_view': '(self, max, /)',
    '_queues._Queue.qsize': '(self, /)',
    '_queues._Queue.empty': '(self, /)',
    '_queues._Queue.full': '(self, /)',
    '_queues._Queue.unlink': '(self, /)',
    '_queues._Queue.close': '(self, /)',
    '_queues._SeqLock': '(name, create, item_size, item_align, typecode, type_name, mode, maxbytes=0, struct=None, initial=None, track=False)',
    '_queues._SeqLock.store': '(self, value, /)',
    '_queues._SeqLock.try_read': '(self, /)',
    '_queues._SeqLock.read': '(self, /, block=True, timeout=None)',
    '_queues._SeqLock.unlink': '(self, /)',
    '_queues._SeqLock.close': '(self, /)',
    '_queues._BroadcastRing': '(name, create, capacity, item_size, item_align, typecode, type_name, mode, maxbytes=0, struct=None, track=False)',
    '_queues._BroadcastRing.push': '(self, value, /)',
    '_queues._BroadcastRing.reader': '(self, cursor=None, /)',
    '_queues._BroadcastRing.unlink': '(self, /)',
    '_queues.BroadcastReader.read': '(self, /, block=True, timeout=None)',
    '_queues.BroadcastReader.backlog': '(self, /)',
    '_queues.BatchView.release': '(self, /)',
    '_queues.BatchView.__enter__': '(self, /)',
    '_queues.BatchView.__exit__': '(self, /, *args)',
    '_queues.unlink_byte_queue': '(name, /)',
    '_queues.ByteQueue.create': '(name, ring_bytes, out_of_line_threshold=0, track=True)',
    '_queues.ByteQueue.attach': '(name, /)',
    '_queues.ByteQueue.put_parts': '(self, parts, /, block=True, timeout=None)',
    '_queues.ByteQueue.get': '(self, /, block=True, timeout=None)',
    '_queues.ByteQueue.get_buffer': '(self, /, block=True, timeout=None)',
    '_queues.ByteQueue._get_message': '(self, /, block=True, timeout=None)',
    '_queues.ByteQueue.set_codec': '(self, encode, decode, loads, encoder=None, /)',
    '_queues.ByteQueue.set_taken': '(self, taken, /)',
    '_queues.ByteQueue.put_obj': '(self, obj, /, block=True, timeout=None)',
    '_queues.ByteQueue.get_obj': '(self, /, block=True, timeout=None)',
    '_queues.ByteQueue.wait_message': '(self, /, timeout=None)',
    '_queues.ByteQueue.spin_for_message': '(self, /, timeout, since=None)',
    '_queues.ByteQueue.empty': '(self, /)',
    '_queues.ByteQueue.size': '(self, /)',
    '_queues.ByteQueue.unblock': '(self, /)',
    '_queues.ByteQueue.fileno': '(self, /)',
    '_queues.ByteQueue.settle': '(self, /)',
    '_queues.ByteQueue.keep_out_of_line_blocks': '(self, blocks, /)',
    '_queues.ByteQueue.drop_out_of_line_blocks': '(self, /)',
    '_queues.ByteQueue.close': '(self, /)',
    '_queues.ByteQueue.unlink': '(self, /)',
    '_queues.ByteQueue.__enter__': '(self, /)',
    '_queues.ByteQueue.__exit__': '(self, /, *args)',
    '_queues.ByteMessage.release': '(self, /)',
    '_queues.ByteMessage.__enter__': '(self, /)',
    '_queues.ByteMessage.__exit__': '(self, /, *args)',
}


def _is_public_callable(name, value):
    return callable(value) and name != "__new__" and (
        not name.startswith("__") or name in ("__enter__", "__exit__"))


def _found(names):
    """{dotted name: callable} of every function, method and constructible
    type of the modules (BatchView through an instance: not a module
    attribute)."""
    out = {}
    types_ = []
    for m in MODULES:
        short = m.__name__.split(".")[-1]
        for n, v in vars(m).items():
            if n.startswith("__"):
                continue
            if isinstance(v, type):
                if not issubclass(v, BaseException):
                    types_.append((short + "." + n, v))
            elif callable(v):
                out[short + "." + n] = v
    q = _queues._Queue("spsc", names("sig"), True, 4, 8, 8, "d", None, "s")
    try:
        view = q.get_view(0)
        types_.append(("_queues.BatchView", type(view)))
        view.release()
    finally:
        q.unlink()
        q.close()
    for tname, t in types_:
        if t.__text_signature__ is not None or tname in EXPECTED:
            out[tname] = t
        for k, f in vars(t).items():
            if _is_public_callable(k, f):
                out[tname + "." + k] = getattr(t, k)
    return out


def test_every_c_callable_has_its_signature(names):
    found = _found(names)
    missing = sorted(set(found) - set(EXPECTED))
    assert not missing, "C callables with no row in EXPECTED: %s" % missing
    gone = sorted(set(EXPECTED) - set(found))
    assert not gone, "rows of EXPECTED the modules do not have: %s" % gone
    wrong = {}
    for name, obj in sorted(found.items()):
        try:
            sig = str(inspect.signature(obj))
        except (ValueError, TypeError) as e:
            wrong[name] = "no signature (%s)" % e
            continue
        if sig != EXPECTED[name]:
            wrong[name] = sig
    assert not wrong, wrong


@pytest.mark.parametrize("t", [_sync.Mutex, _sync.RecursiveMutex, _sync.RobustMutex, _sync.Semaphore])
def test_acquire_takes_what_its_signature_says(t):
    buf = bytearray(64)
    if t is _sync.Semaphore:
        buf[:t.SIZE] = _sync.Semaphore._layout(1, 0)
    lock = t(buf, 0)
    sig = inspect.signature(lock.acquire)
    assert list(sig.parameters) == ["block", "timeout"]
    assert lock.acquire(block=True, timeout=None) is True
    lock.release()
    ba = sig.bind(False, 0.0)
    assert lock.acquire(*ba.args, **ba.kwargs) is True
    lock.release()
    del lock


def test_keyword_timeouts_bind_as_the_signature_says():
    buf = bytearray(64)
    ev = _sync.Event(buf, 0)
    ba = inspect.signature(ev.wait).bind(timeout=0)
    assert ev.wait(*ba.args, **ba.kwargs) is False
    atomic = _sync.AtomicRef(buf, 8, "q")
    ba = inspect.signature(atomic.wait).bind(1, timeout=0.0)
    assert atomic.wait(*ba.args, **ba.kwargs) is True
    ba = inspect.signature(_sync.Condition).bind(buf, offset=16)
    assert isinstance(_sync.Condition(*ba.args, **ba.kwargs), _sync.Condition)
    del ev, atomic
