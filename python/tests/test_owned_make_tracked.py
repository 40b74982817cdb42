"""shmkit._owned.make_tracked: the package's one "tracker failed, retry
untracked" step, with the policies its three callers give it."""
import errno

import pytest

from shmkit import _owned


def _maker(fail_tracked):
    calls = []

    def make(track):
        calls.append(track)
        if track and fail_tracked is not None:
            raise fail_tracked
        return "tracked" if track else "untracked"
    return make, calls


def test_untracked_when_not_asked():
    make, calls = _maker(OSError(errno.ENOSPC, "registry"))
    assert _owned.make_tracked(make, False) == "untracked"
    assert calls == [False]


def test_tracked_when_the_tracker_works():
    make, calls = _maker(None)
    assert _owned.make_tracked(make, True) == "tracked"
    assert calls == [True]


def test_retries_untracked_and_warns_once_per_failure():
    make, calls = _maker(OSError(errno.ENOENT, "no watcher"))
    seen = []
    assert _owned.make_tracked(make, True, warn=seen.append) == "untracked"
    assert calls == [True, False]
    assert len(seen) == 1 and seen[0].errno == errno.ENOENT


def test_an_error_the_policy_refuses_propagates():
    make, calls = _maker(OSError(errno.EACCES, "denied"))
    with pytest.raises(PermissionError):
        _owned.make_tracked(make, True, lambda e: e.errno == errno.ENOSPC)
    assert calls == [True]


def test_other_exceptions_are_not_retried():
    make, calls = _maker(ValueError("bad"))
    with pytest.raises(ValueError):
        _owned.make_tracked(make, True)
    assert calls == [True]
