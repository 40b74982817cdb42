"""Removing only the block this process created (and making a block
tracked where the tracker lets it: make_tracked), never one re-created under
the same name by someone else (private to the package).

A finalizer that unlinks a block by name alone runs long after the create:
by then the creator may have unlinked it and another process created a new
block under the same name, which an unlink by name would remove under its
owner. So the creator records the identity of the file it made (device and
inode) and a finalizer unlinks the name only while it still names that file.

POSIX has no "unlink this name if it is this inode": between the check and
the unlink, another process could unlink the name and create a new block
under it (a window of two system calls). shmkit's tracker has the same
window; nothing closes it short of every party taking a lock.
"""
import os
from typing import Any, Callable, Optional, Tuple, TypeVar

FileId = Tuple[int, int]
_T = TypeVar("_T")

_DIR = "/dev/shm/"


def file_id(name: Optional[str] = None, fd: Optional[int] = None) -> Optional[FileId]:
    """(st_dev, st_ino) of the open descriptor `fd` (exact: the file this
    handle opened), else of whatever file the name `name` holds now (None
    if there is none)."""
    try:
        if fd is not None and fd >= 0:
            st = os.fstat(fd)
        elif name:
            st = os.stat(_DIR + name, follow_symlinks=False)
        else:
            return None
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def names_file(name: str, ident: Optional[FileId]) -> bool:
    """Whether the name `name` holds the file `ident` (file_id) now."""
    return ident is not None and file_id(name) == ident


def unlink_if_creator(obj: Any, pid: int, ident: Optional[FileId]) -> None:
    """The creators' finalizer: in process `pid` only (a forked child's copy
    never unlinks), and only while the name still holds the file `ident` it
    created, calls obj.unlink() (obj: anything with .name and .unlink(); a
    block's Mapping also drops the tracker's registrations of that file)."""
    if os.getpid() != pid or not names_file(obj.name, ident):
        return
    try:
        obj.unlink()
    except (OSError, ValueError):  # gone meanwhile, or closed: a finalizer never raises
        pass


def _any_oserror(e: OSError) -> bool:
    return True


def make_tracked(make: Callable[[bool], _T], track: bool,
                 retry_if: Callable[[OSError], bool] = _any_oserror,
                 warn: Optional[Callable[[OSError], None]] = None) -> _T:
    """make(track), the one "tracker failed, retry untracked" of the package:
    when tracking was asked and make(True) raises an OSError that
    retry_if(e) accepts (the tracker's watcher cannot start, its registry is
    full), calls warn(e) (if given) and returns make(False): the object goes
    on untracked, unlinked by its creator's finalizer but not after a
    SIGKILL. Any other error propagates."""
    if not track:
        return make(False)
    try:
        return make(True)
    except OSError as e:
        if not retry_if(e):
            raise
        if warn is not None:
            warn(e)
    return make(False)
