"""CPython peer for the SharedMemory interop tests.

    shm_peer.py create NAME SIZE HEX      create NAME with SIZE bytes, write HEX at 0
    shm_peer.py create-random SIZE HEX    same with a random name; prints it
    shm_peer.py read NAME LEN             attach NAME; print "<size> <hex of LEN bytes>"
    shm_peer.py write NAME HEX            attach NAME; write HEX at 0

Every command prints "name=<name> size=<size>" of the block as CPython sees it.
The block's lifetime belongs to the C++ test: CPython 3.11's resource_tracker
would unlink a block this process created *or attached* when it exits
(gh-82300), so each command unregisters it.
"""
import sys
from multiprocessing import resource_tracker, shared_memory


def release(shm):
    resource_tracker.unregister(shm._name, "shared_memory")
    shm.close()


def main(argv):
    cmd = argv[1]
    if cmd in ("create", "create-random"):
        if cmd == "create":
            name, size, data = argv[2], int(argv[3]), bytes.fromhex(argv[4])
            shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        else:
            size, data = int(argv[2]), bytes.fromhex(argv[3])
            shm = shared_memory.SharedMemory(create=True, size=size)
        shm.buf[: len(data)] = data
        print(f"name={shm.name} size={shm.size}")
        release(shm)
    elif cmd == "read":
        shm = shared_memory.SharedMemory(name=argv[2])
        n = int(argv[3])
        print(f"name={shm.name} size={shm.size} data={bytes(shm.buf[:n]).hex()}")
        release(shm)
    elif cmd == "write":
        shm = shared_memory.SharedMemory(name=argv[2])
        data = bytes.fromhex(argv[3])
        shm.buf[: len(data)] = data
        print(f"name={shm.name} size={shm.size}")
        release(shm)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
