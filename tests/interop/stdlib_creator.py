"""A CPython program that creates a block with the standard library and
keeps using it while shmkit processes attach and go away.

    stdlib_creator.py shm  NAME    multiprocessing.shared_memory.SharedMemory
    stdlib_creator.py list NAME    multiprocessing.shared_memory.ShareableList

It creates NAME (the block starts with b"stdlib"; the list is
[1, "stdlib", b"x"]), prints "made", and waits for a line on stdin. Then,
as the creator still using its block, it checks that the block is still
there and what the shmkit peer wrote (b"shmkit" at offset 6; list item 0
set to 42), and calls unlink() as the creator: prints "unlinked" and exits
0, or prints "FAIL ..." and exits 3 (unlink() raised FileNotFoundError: the
block was removed under it) or 4 (the peer's write is missing).

The block's lifetime is this program's, as with any stdlib creator: its own
resource_tracker registers it at create and unregisters it at unlink().
"""
import os
import sys
from multiprocessing import shared_memory


def main(argv):
    kind, name = argv[1], argv[2]
    if kind == "shm":
        shm = shared_memory.SharedMemory(name=name, create=True, size=4096)
        shm.buf[:6] = b"stdlib"
        holder = shm
    elif kind == "list":
        sl = shared_memory.ShareableList([1, "stdlib", b"x"], name=name)
        holder = sl.shm
    else:
        print("FAIL unknown kind", kind, flush=True)
        return 2
    print("made", flush=True)
    sys.stdin.readline()
    rc = 0
    present = os.path.exists("/dev/shm/" + name)
    if kind == "shm":
        seen = bytes(shm.buf[6:12])
        if seen != b"shmkit":
            print("FAIL peer's write missing:", seen, flush=True)
            rc = 4
    else:
        if sl[0] != 42 or sl[1] != "stdlib":
            print("FAIL list is", list(sl), flush=True)
            rc = 4
    holder.close()
    try:
        holder.unlink()
    except FileNotFoundError:
        print("FAIL unlink: FileNotFoundError (present before: %s)" % present, flush=True)
        return 3
    if rc == 0:
        print("unlinked", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
