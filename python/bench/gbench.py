"""The Python rows of the benchmark suite: shmkit's package against CPython,
speaking enough of Google Benchmark's command line and JSON that
bench/suite.py runs it like its C++ binaries (the launcher
build/<preset>/bench/bench_python puts the package on PYTHONPATH):

    gbench.py [--benchmark_list_tests] [--benchmark_repetitions=N]
              [--benchmark_min_time=S] [--benchmark_out=FILE] [...]

Each repetition measures every candidate and every baseline once, in a
random order (the same interleaving as the C++ binaries'), so a burst of
load hits both sides of a ratio. Times are ns per operation of a timed loop
minus the same loop doing nothing (bench_core.timed); the 2-process lock
rows are operations per second of both processes together ("Mops/s"); the
queue rows are ns per item streamed, or per round trip, between two forked
processes pinned to two CPUs, the same layout for both sides; the object
queue and pool rows (bench_pyqueue.py) are ns per message, per array
transfer, per task or per round trip.
Names are python/<row>/<side>; bench/targets.py pairs them. The queue and
pool runs are framed by spin ping-pong probes between the run's first two
CPUs (counters probe_before_ns, probe_after_ns: bench/python/
placement_probe.cpp), so that bench/compare.py pairs only runs made in the
same placement of a VM's virtual CPUs.
"""
import datetime
import json
import multiprocessing as mp
import multiprocessing.shared_memory as cp_shm
import multiprocessing.sharedctypes as cp_sc
import os
import platform
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core  # noqa: E402
import bench_pyqueue  # noqa: E402
import bench_sync  # noqa: E402
from shmkit import _core  # noqa: E402
from shmkit import shared_memory as sk_shm  # noqa: E402
from shmkit import sharedctypes as sk_sc  # noqa: E402
from shmkit import synchronize as S  # noqa: E402

try:  # (bench/python/placement_probe.cpp, built next to the launcher)
    from _placement_probe import ping_pong_ns
except ImportError:
    ping_pong_ns = None

# The rows framed by placement probes: the object queues and pools, whose
# processes run on the first two CPUs of the run (bench_pyqueue.CPUS).
PROBED = ("python/pyqueue_", "python/pypool_")


def probe():
    """The spin ping-pong round trip (ns) between the run's first two CPUs
    now, or 0 where it cannot be taken (one CPU, no probe module)."""
    cpus = bench_pyqueue.CPUS
    if ping_pong_ns is None or len(cpus) < 2:
        return 0.0
    return ping_pong_ns(cpus[0], cpus[1])


class Fixtures:
    """The objects every repetition measures (made once, released at the end)."""

    def __init__(self):
        self.sk_lock, self.cp_lock = S.Lock(), mp.Lock()
        self.sk_value, self.cp_value = sk_sc.Value("q", 0), cp_sc.Value("q", 0)
        self.sk_value.fetch_add(0)
        self.sk_list, self.cp_list = sk_shm.ShareableList(range(16)), cp_shm.ShareableList(range(16))

    def close(self):
        for sl in (self.sk_list, self.cp_list):
            sl.shm.close()
            sl.shm.unlink()


def cpython_locked_add(v):
    def add():
        with v.get_lock():
            v.value += 1
    return add


def python_noop(*_):
    return None


def benchmarks(fx, scale):
    """name -> (callable returning one measurement, metric, ops)."""
    loop, timed = bench_core.loop, bench_core.timed
    n = max(1000, int(200000 * scale))

    def t(stmt, env, ops=n):
        f = loop(stmt, env)
        return (lambda: timed(f, ops)), "ns", ops

    def queue(fn, side, ops):
        return (lambda: fn(*side, ops)), "ns", ops

    def contended(make):
        ops = 50000  # each process; its own loop is timed (bench_sync.contended)
        return (lambda: bench_sync.contended(make(), ops) / 1e6), "Mops/s", 2 * ops

    return {
        "python/call/c_api_noop": t("f()", {"f": _core._noop}),
        "python/call/python_function": t("f()", {"f": python_noop}),
        "python/lock/shmkit": t("a(); r()", {"a": fx.sk_lock.acquire, "r": fx.sk_lock.release}),
        "python/lock/cpython": t("a(); r()", {"a": fx.cp_lock.acquire, "r": fx.cp_lock.release}),
        "python/lock_2p/shmkit": contended(S.Lock),
        "python/lock_2p/cpython": contended(mp.Lock),
        "python/fetch_add/shmkit": t("f(1)", {"f": fx.sk_value.fetch_add}),
        "python/fetch_add/cpython_locked_inc": t("g()", {"g": cpython_locked_add(fx.cp_value)},
                                                  max(1000, n // 10)),
        # Both sides: two forked processes pinned to two CPUs (bench_sync).
        "python/queue_8b_stream/shmkit_spsc": queue(bench_sync.queue_stream, bench_sync.SHMKIT_QUEUE, n),
        "python/queue_8b_stream/cpython_mp_queue": queue(bench_sync.queue_stream, bench_sync.CPYTHON_QUEUE,
                                                         max(2000, n // 20)),
        "python/queue_8b_rtt/shmkit_spsc": queue(bench_sync.queue_round_trip, bench_sync.SHMKIT_QUEUE,
                                                 max(2000, n // 10)),
        "python/queue_8b_rtt/cpython_mp_queue": queue(bench_sync.queue_round_trip, bench_sync.CPYTHON_QUEUE,
                                                      max(500, n // 100)),
        "python/shareable_list_get/shmkit": t("sl[3]", {"sl": fx.sk_list}),
        "python/shareable_list_get/cpython": t("sl[3]", {"sl": fx.cp_list}),
        "python/shareable_list_set/shmkit": t("sl[3] = _i", {"sl": fx.sk_list}),
        "python/shareable_list_set/cpython": t("sl[3] = _i", {"sl": fx.cp_list}),
        # Python objects through queues and pools (bench_pyqueue.py).
        **bench_pyqueue.benchmarks(scale),
    }


def entry(name, rep, reps, value, metric, ops):
    e = {"name": name, "run_name": name, "run_type": "iteration", "repetitions": reps,
         "repetition_index": rep, "threads": 1, "iterations": ops, "time_unit": "ns"}
    if metric == "ns":
        e["real_time"] = e["cpu_time"] = value
    else:  # a throughput counter; real_time: ns per operation of the pair
        e["real_time"] = e["cpu_time"] = 1e3 / value if value else 0.0
        e[metric] = value * 1e6
    return e


def main(argv):
    opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in argv)
    names = None
    fx = None
    if "--benchmark_list_tests" in opts:
        fx = Fixtures()
        try:
            print("\n".join(benchmarks(fx, 1.0)))
        finally:
            fx.close()
        return 0
    reps = int(opts.get("--benchmark_repetitions", "1"))
    min_time = opts.get("--benchmark_min_time")
    scale = 0.25 if min_time is not None and float(min_time.rstrip("s")) < 0.5 else 1.0
    fx = Fixtures()
    try:
        table = benchmarks(fx, scale)
        names = list(table)
        results = []
        for rep in range(reps):
            order = names[:]
            random.shuffle(order)
            for name in order:
                fn, metric, ops = table[name]
                counters = {}
                probed = name.startswith(PROBED)
                try:
                    before = probe() if probed else 0.0
                    value = fn()
                    if isinstance(value, tuple):  # (figure, {counter: value})
                        value, counters = value
                    if probed and before > 0:
                        after = probe()
                        if after > 0:
                            # bench/compare.py pairs two repetitions only
                            # when their probes agree (the same placement).
                            counters = dict(counters, probe_before_ns=before, probe_after_ns=after)
                except Exception as e:  # one side failing leaves its row missing, not the others
                    e_entry = entry(name, rep, reps, 0.0, metric, ops)
                    e_entry.update(error_occurred=True, error_message=f"{type(e).__name__}: {e}")
                    results.append(e_entry)
                    print(f"{name} ERROR {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    print(f"{name} error", flush=True)
                    continue
                results.append(dict(entry(name, rep, reps, value, metric, ops), **counters))
                shown = f"{value:.1f} ns" if metric == "ns" else f"{value:.2f} {metric}"
                print(f"{name} {shown}", flush=True)
    finally:
        fx.close()
    context = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "host_name": socket.gethostname(), "executable": sys.argv[0],
               "num_cpus": os.cpu_count(), "python": platform.python_version(),
               "python_executable": sys.executable, "library_build_type": "release",
               "python_queue_placement": bench_pyqueue.PLACEMENT + (
                   "; every queue and pool run framed by spin ping-pong probes between the first two CPUs"
                   if ping_pong_ns is not None and len(bench_pyqueue.CPUS) >= 2 else "")}
    out = opts.get("--benchmark_out")
    data = {"context": context, "benchmarks": results}
    if out:
        with open(out, "w") as f:
            json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
