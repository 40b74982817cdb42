"""shmkit's Python package against CPython's, in one run:
the binding's per-call cost, ShareableList get/set, SharedMemory
create/attach, Value/Array element access, Value/Array creation, and
Value.fetch_add against CPython's ``with v.get_lock(): v.value += 1``.

Each row is the median of --repetitions runs of a timed loop, minus the
same loop doing nothing; ratio = CPython's time / shmkit's (> 1: shmkit is
faster). Prints JSON, or a markdown table with --markdown.

    PYTHONPATH=build/release/python/site-main python3 python/bench/bench_core.py [--markdown]
"""
import argparse
import ctypes
import json
import multiprocessing.shared_memory as cp_shm
import multiprocessing.sharedctypes as cp_sc
import os
import platform
import statistics
import sys
import time
from multiprocessing import resource_tracker

import shmkit._core as core
from shmkit import shared_memory as sk_shm
from shmkit import sharedctypes as sk_sc


def timed(body, ops):
    """ns per iteration of body(ops) minus an empty loop's."""
    t0 = time.perf_counter_ns()
    body(ops)
    t1 = time.perf_counter_ns()
    for _ in range(ops):
        pass
    t2 = time.perf_counter_ns()
    return max(0.0, ((t1 - t0) - (t2 - t1)) / ops)


def median(fn, ops, reps):
    return statistics.median(timed(fn, ops) for _ in range(reps))


def loop(stmt, env):
    """A loop function running stmt ops times (compiled once)."""
    src = "def _loop_(ops):\n    for _i in range(ops):\n        %s\n" % stmt
    ns = dict(env)
    exec(src, ns)
    return ns["_loop_"]


def rows(reps, ops):
    out = []

    def row(name, shmkit_fn, cpython_fn, n=ops, note=""):
        s = median(shmkit_fn, n, reps)
        c = median(cpython_fn, n, reps) if cpython_fn else None
        out.append({"name": name, "shmkit_ns": round(s, 1),
                    "cpython_ns": round(c, 1) if c is not None else None,
                    "ratio": round(c / s, 2) if c and s else None, "note": note})

    # Binding cost: one METH_FASTCALL call vs a Python-level function call.
    def py_noop(*a):
        return None
    row("call: shmkit._core._noop() vs a Python function", loop("noop()", {"noop": core._noop}),
        loop("noop()", {"noop": py_noop}))

    # ShareableList get/set of item 3 (an int) of a 16-item list.
    sk = sk_shm.ShareableList(range(16))
    cp = cp_shm.ShareableList(range(16))
    row("ShareableList get int", loop("sl[3]", {"sl": sk}), loop("sl[3]", {"sl": cp}))
    row("ShareableList set int", loop("sl[3] = _i", {"sl": sk}), loop("sl[3] = _i", {"sl": cp}))
    s16 = "abcdefghijklmnop"
    sks = sk_shm.ShareableList([s16] * 4)
    cps = cp_shm.ShareableList([s16] * 4)
    row("ShareableList get str16", loop("sl[1]", {"sl": sks}), loop("sl[1]", {"sl": cps}))
    row("ShareableList set str16", loop("sl[1] = s", {"sl": sks, "s": s16}),
        loop("sl[1] = s", {"sl": cps, "s": s16}))
    for sl in (sk, sks):
        sl.shm.close()
        sl.shm.unlink()
    for sl in (cp, cps):
        sl.shm.close()
        sl.shm.unlink()

    # SharedMemory create+close+unlink and attach+close (4 KiB).
    def sk_create(ops, track):
        for _ in range(ops):
            m = sk_shm.SharedMemory(create=True, size=4096, track=track)
            m.close()
            m.unlink()

    def cp_create(ops):
        for _ in range(ops):
            m = cp_shm.SharedMemory(create=True, size=4096)
            m.close()
            m.unlink()
    n = max(200, ops // 200)
    # Like with like: both tracked (CPython's default), and both untracked
    # (CPython's track=False exists from 3.13 on; before, no CPython figure).
    untracked = sys.version_info >= (3, 13)

    def cp_create_untracked(ops):
        for _ in range(ops):
            m = cp_shm.SharedMemory(create=True, size=4096, track=False)
            m.close()
            m.unlink()
    row("SharedMemory create+close+unlink, both tracked", lambda o: sk_create(o, True), cp_create, n)
    row("SharedMemory create+close+unlink, both untracked", lambda o: sk_create(o, False),
        cp_create_untracked if untracked else None, n,
        "" if untracked else "CPython before 3.13 cannot create untracked")
    target = sk_shm.SharedMemory(create=True, size=4096)
    name = target.name

    def sk_attach(ops, track):
        for _ in range(ops):
            sk_shm.SharedMemory(name, track=track).close()

    def cp_attach(ops, **track):
        for _ in range(ops):
            cp_shm.SharedMemory(name, **track).close()
    row("SharedMemory attach+close, both tracked", lambda o: sk_attach(o, True), cp_attach, n)
    row("SharedMemory attach+close, both untracked", lambda o: sk_attach(o, False),
        (lambda o: cp_attach(o, track=False)) if untracked else None, n,
        "" if untracked else "CPython before 3.13 cannot attach untracked")
    # CPython's attaches registered the name with its tracker (a set, so once).
    if not untracked:
        resource_tracker.unregister("/" + name, "shared_memory")
    target.close()
    target.unlink()

    # Value / Array element access (default lock: a recursive lock).
    v, cv = sk_sc.Value("i", 0), cp_sc.Value("i", 0)
    row("Value.value get (locked)", loop("v.value", {"v": v}), loop("v.value", {"v": cv}))
    row("Value.value set (locked)", loop("v.value = 1", {"v": v}), loop("v.value = 1", {"v": cv}))
    rv, crv = sk_sc.RawValue("i", 0), cp_sc.RawValue("i", 0)
    row("RawValue.value get", loop("v.value", {"v": rv}), loop("v.value", {"v": crv}))
    a, ca = sk_sc.Array("d", 100), cp_sc.Array("d", 100)
    row("Array[i] get (locked)", loop("a[5]", {"a": a}), loop("a[5]", {"a": ca}))
    row("Array[i] set (locked)", loop("a[5] = 1.0", {"a": a}), loop("a[5] = 1.0", {"a": ca}))
    ra, cra = sk_sc.RawArray("d", 100), cp_sc.RawArray("d", 100)
    row("RawArray[i] get", loop("a[5]", {"a": ra}), loop("a[5]", {"a": cra}))

    # The atomic increment vs CPython's locked +=.
    w, cw = sk_sc.Value("q", 0), cp_sc.Value("q", 0)
    w.fetch_add(0)  # binds the bound C methods
    row("Value.fetch_add(1) vs CPython `with v.get_lock(): v.value += 1`",
        loop("f(1)", {"f": w.fetch_add}), loop("g()", {"g": _cpython_locked_add(cw)}))
    row("v.fetch_add(1) through the attribute", loop("v.fetch_add(1)", {"v": w}),
        loop("g()", {"g": _cpython_locked_add(cw)}))

    # Creation (unnamed, default lock): a tracked block each vs CPython's heap.
    def sk_make(ops):
        for _ in range(ops):
            sk_sc.Value("i", 1)

    def cp_make(ops):
        for _ in range(ops):
            cp_sc.Value("i", 1)
    row("Value('i', 1) create + drop", sk_make, cp_make, n,
        "shmkit: a tracked block per object (unlinked on drop); CPython: its heap arena")
    return out


def _cpython_locked_add(v):
    def add():
        with v.get_lock():
            v.value += 1
    return add


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--ops", type=int, default=200000)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    result = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "cpus": os.cpu_count(), "rows": rows(args.repetitions, args.ops)}
    if not args.markdown:
        print(json.dumps(result, indent=1))
        return
    print("| operation | shmkit ns | CPython ns | CPython/shmkit |")
    print("|---|---|---|---|")
    for r in result["rows"]:
        c = "%.1f" % r["cpython_ns"] if r["cpython_ns"] is not None else "-"
        ratio = "%.2fx" % r["ratio"] if r["ratio"] else "-"
        print("| %s | %.1f | %s | %s |" % (r["name"], r["shmkit_ns"], c, ratio))


if __name__ == "__main__":
    main()
