"""CPython's ShareableList doing what bench/bench_shareable_list.cpp does:
get and set of item 3 (an int; a 16-byte str) of a 16-item list. Prints
JSON: nanoseconds per operation, the median of --repetitions runs.

    python3 bench/python/bench_shareable_list.py [--repetitions 5] [--ops 200000]
"""

import argparse
import json
import platform
import statistics
import time
from multiprocessing.shared_memory import ShareableList

STR16 = "abcdefghijklmnop"


def make(slot3):
    items = list(range(16))
    items[3] = slot3
    return ShareableList(items)


def get_loop(sl, ops):
    t0 = time.perf_counter_ns()
    for _ in range(ops):
        sl[3]
    return time.perf_counter_ns() - t0


def set_int_loop(sl, ops):
    t0 = time.perf_counter_ns()
    for n in range(ops):
        sl[3] = n
    return time.perf_counter_ns() - t0


def set_str_loop(sl, ops):
    a, b = "ABCDEFGHIJKLMNOP", STR16
    t0 = time.perf_counter_ns()
    for n in range(ops):
        sl[3] = a if n & 1 else b
    return time.perf_counter_ns() - t0


def empty_loop(ops):
    t0 = time.perf_counter_ns()
    for _ in range(ops):
        pass
    return time.perf_counter_ns() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--ops", type=int, default=200_000)
    args = ap.parse_args()
    cases = {
        "get_int": (12345, get_loop),
        "set_int": (12345, set_int_loop),
        "get_str16": (STR16, get_loop),
        "set_str16": (STR16, set_str_loop),
    }
    result = {"python": platform.python_version(), "ops": args.ops,
              "repetitions": args.repetitions, "ns_per_op": {}, "loop_overhead_ns": None}
    for key, (slot3, loop) in cases.items():
        sl = make(slot3)
        try:
            loop(sl, args.ops // 10)  # warm-up
            runs = [loop(sl, args.ops) / args.ops for _ in range(args.repetitions)]
            result["ns_per_op"][key] = round(statistics.median(runs), 1)
        finally:
            sl.shm.close()
            sl.shm.unlink()
    result["loop_overhead_ns"] = round(
        statistics.median(empty_loop(args.ops) / args.ops for _ in range(args.repetitions)), 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
