"""A creator's finalizer unlinks only the file it created.

Queues, SeqLock, BroadcastRing, unnamed sharedctypes objects and the
synchronize primitives unlink their block when the creating object is
collected (or the process exits). If the name was unlinked and another party
created a new block under it in the meantime, that new block is theirs: the
finalizer must leave it alone. Before, the finalizers unlinked by name.
"""
import gc
import os

import pytest

from shmkit import queues, sharedctypes, synchronize

from conftest import block_exists

OTHERS = b"another party's block"


def _replace(name):
    """What another party does: unlink the name and create a new block there."""
    os.unlink("/dev/shm/" + name)
    fd = os.open("/dev/shm/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, OTHERS)
    finally:
        os.close(fd)


def _contents(name):
    with open("/dev/shm/" + name, "rb") as f:
        return f.read()


def _queue(kind):
    def make(names):
        n = names(kind)
        if kind == "spsc":
            return queues.SpscQueue(name=n, capacity=8, item="q"), n
        if kind == "mpmc":
            return queues.MpmcQueue(name=n, capacity=8, item="d"), n
        if kind == "seqlock":
            return queues.SeqLock(name=n, item="d", create=True), n
        return queues.BroadcastRing(name=n, capacity=8, item="q"), n
    return make


def _raw_value(names):
    v = sharedctypes.RawValue("q", 5)  # unnamed: its creator's finalizer unlinks it
    return v, v._shmkit_place.name


def _lock(names):
    lock = synchronize.Lock()
    return lock, lock.name


MAKERS = {
    "SpscQueue": _queue("spsc"),
    "MpmcQueue": _queue("mpmc"),
    "SeqLock": _queue("seqlock"),
    "BroadcastRing": _queue("ring"),
    "RawValue": _raw_value,
    "Lock": _lock,
}


@pytest.mark.parametrize("what", sorted(MAKERS))
def test_finalizer_leaves_a_block_recreated_under_the_name(names, what):
    obj, name = MAKERS[what](names)
    assert block_exists(name)
    try:
        _replace(name)
        del obj
        gc.collect()
        assert block_exists(name), "the creator's finalizer removed another party's block"
        assert _contents(name) == OTHERS
    finally:
        if block_exists(name):
            os.unlink("/dev/shm/" + name)


@pytest.mark.parametrize("what", sorted(MAKERS))
def test_finalizer_still_unlinks_its_own_block(names, what):
    obj, name = MAKERS[what](names)
    assert block_exists(name)
    del obj
    gc.collect()
    assert not block_exists(name), "the creator's finalizer left its own block"
