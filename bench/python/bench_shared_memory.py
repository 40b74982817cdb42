"""CPython baseline for bench_shared_memory: times its own loop and prints
one JSON object {"create_cycle_ns": ..., "attach_ns": ...} (ns per op).

    bench_shared_memory.py ITERATIONS
"""
import json
import os
import sys
import time
from multiprocessing import shared_memory

SIZE = 4096


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    name = f"shmkit_bench_py_{os.getpid()}"

    t0 = time.perf_counter_ns()
    for _ in range(n):
        shm = shared_memory.SharedMemory(name=name, create=True, size=SIZE)
        shm.close()
        shm.unlink()
    create_ns = (time.perf_counter_ns() - t0) / n

    owner = shared_memory.SharedMemory(name=name, create=True, size=SIZE)
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            shm = shared_memory.SharedMemory(name=name)
            shm.close()
        attach_ns = (time.perf_counter_ns() - t0) / n
    finally:
        owner.close()
        owner.unlink()
    print(json.dumps({"create_cycle_ns": create_ns, "attach_ns": attach_ns}))


if __name__ == "__main__":
    main()
