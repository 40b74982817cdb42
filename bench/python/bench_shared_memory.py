"""CPython baseline for bench_shared_memory: times its own loops and prints
one JSON object (ns per op):

    create_cycle_ns, attach_ns      CPython's default: every create and
                                    attach registers with its resource tracker
    create_cycle_untracked_ns,      track=False (CPython 3.13 or later only;
    attach_untracked_ns             absent before, never emulated)

    bench_shared_memory.py ITERATIONS
"""
import json
import os
import sys
import time
from multiprocessing import shared_memory

SIZE = 4096


def cycles(n, name, **track):
    """(create+close+unlink, attach+close) in ns per op."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        shm = shared_memory.SharedMemory(name=name, create=True, size=SIZE, **track)
        shm.close()
        shm.unlink()
    create_ns = (time.perf_counter_ns() - t0) / n

    owner = shared_memory.SharedMemory(name=name, create=True, size=SIZE)
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            shm = shared_memory.SharedMemory(name=name, **track)
            shm.close()
        attach_ns = (time.perf_counter_ns() - t0) / n
    finally:
        owner.close()
        owner.unlink()  # also drops the attaches' registrations (one name)
    return create_ns, attach_ns


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    name = f"shmkit_bench_py_{os.getpid()}"
    out = {}
    out["create_cycle_ns"], out["attach_ns"] = cycles(n, name)
    if sys.version_info >= (3, 13):
        out["create_cycle_untracked_ns"], out["attach_untracked_ns"] = cycles(n, name, track=False)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
