#!/usr/bin/env python3
"""The Python queue and pool rows' harness, without timing anything: the
mutex+condvar ring the bench builds (_mutex_condvar_ring: messages of every
length across the wrap, gathered parts, queue.Empty and queue.Full with and
without a timeout, a message too large, a forked producer), and every row of
python/bench/bench_pyqueue.py run with a few messages each, each giving a
positive figure (and a runq_wait share in [0, 1] where it reports one).
Needs the package and bench/pyext on PYTHONPATH (ctest sets it). Run
directly (ctest does) or under pytest."""
import math
import os
import queue
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python" / "bench"))
import bench_pyqueue  # noqa: E402
from _mutex_condvar_ring import Ring  # noqa: E402


def message(i):
    return bytes([i % 251]) * (i % 97)


class RingTest(unittest.TestCase):
    def test_lengths_across_the_wrap(self):
        r = Ring(256)
        for i in range(2000):
            r.put(message(i))
            self.assertEqual(r.get(), message(i))
        self.assertEqual(r.qsize(), 0)

    def test_parts_are_gathered(self):
        r = Ring(128)
        for _ in range(20):
            r.put_parts((b"ab", memoryview(b"cd"), bytearray(b"e"), b""))
            self.assertEqual(r.get(), b"abcde")
        r.put_parts(())
        self.assertEqual(r.get(), b"")

    def test_empty_full_and_too_large(self):
        r = Ring(64)
        with self.assertRaises(queue.Empty):
            r.get(block=False)
        t0 = time.monotonic()
        with self.assertRaises(queue.Empty):
            r.get(timeout=0.05)
        self.assertGreaterEqual(time.monotonic() - t0, 0.04)
        r.put(b"x" * 40)
        with self.assertRaises(queue.Full):
            r.put(b"y" * 40, block=False)
        with self.assertRaises(queue.Full):
            r.put(b"y" * 40, timeout=0.05)
        with self.assertRaises(ValueError):
            r.put(b"z" * 57)
        self.assertEqual(r.get(), b"x" * 40)

    def test_forked_producer(self):
        r = Ring(1024)
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(5000):
                    r.put(message(i))
            finally:
                os._exit(0)
        try:
            for i in range(5000):
                self.assertEqual(r.get(timeout=60), message(i))
        finally:
            os.waitpid(pid, 0)

    def test_ring_queue_round_trips_objects(self):
        q = bench_pyqueue.RingQueue(1 << 16)
        for obj in (bench_pyqueue.SMALL_DICT, bench_pyqueue.BYTES8, b"", None, list(range(100))):
            q.put(obj)
            self.assertEqual(q.get(), obj)


class RowsTest(unittest.TestCase):
    def test_every_row_runs(self):
        rows = bench_pyqueue.benchmarks(0.25, smoke=True)
        sides = {name.rsplit("/", 1)[1] for name in rows}
        # The baselines are always there; shmkit's sides when the package
        # has them (their rows are missing from the suite otherwise).
        self.assertTrue({"cpython_mp_queue", "mutex_condvar_ring", "cpython_pool"} <= sides, sides)
        for name, (fn, metric, ops) in rows.items():
            with self.subTest(name=name):
                ns, counters = fn()
                self.assertEqual(metric, "ns")
                self.assertTrue(math.isfinite(ns) and ns > 0, ns)
                self.assertTrue(0.0 <= counters.get("runq_wait", 0.0) <= 1.0, counters)


def _children():
    """The pids whose parent is this process (live or zombie), from /proc."""
    me, out = os.getpid(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                out.add(int(d))
    return out


class PlacementProbe(unittest.TestCase):
    """bench/python/placement_probe.cpp: the ping-pong that frames the
    Python queue and pool runs."""

    def test_round_trip_between_two_cpus(self):
        from _placement_probe import ping_pong_ns
        cpus = sorted(os.sched_getaffinity(0))
        before = os.sched_getaffinity(0)
        kids = _children()
        ns = ping_pong_ns(cpus[0], cpus[-1], 0.005)
        # A round trip takes time (0.0 only when the child never ran within
        # a second), and this process's CPU set is given back.
        self.assertTrue(math.isfinite(ns) and ns >= 0.0, ns)
        if len(cpus) >= 2:
            self.assertGreater(ns, 0.0)
        self.assertEqual(os.sched_getaffinity(0), before)
        # The child is gone and reaped: no process of ours is left spinning
        # or as a zombie.
        self.assertEqual(_children(), kids)

    def test_bad_arguments(self):
        from _placement_probe import ping_pong_ns
        for args in ((-1, 0), (0, 1 << 20), (0, 0, 0.0), (0, 0, 2.0), (0, 0, float("nan"))):
            with self.subTest(args=args), self.assertRaises(ValueError):
                ping_pong_ns(*args)
        with self.assertRaises(TypeError):
            ping_pong_ns("0", 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
