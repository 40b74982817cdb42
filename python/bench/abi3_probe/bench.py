"""Builds abi3_probe/probe.c twice for the interpreter running this script
(the full C API, and the stable ABI with Py_LIMITED_API=0x030A0000), into a
scratch directory, and times the same calls through both:

    python3 python/bench/abi3_probe/bench.py [--reps 7] [--ops 2000000]

Prints one line per function: ns per call (median of --reps timed loops,
minus an empty loop) for the full build and for abi3, and the difference.
Ad hoc: not part of the package or its build."""
import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def build(outdir, name, limited):
    suffix = ".abi3.so" if limited else sysconfig.get_config_var("EXT_SUFFIX")
    out = os.path.join(outdir, name + suffix)
    cmd = ["cc", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-I", sysconfig.get_paths()["include"],
           "-DPROBE_NAME=\"%s\"" % name, "-DPROBE_MODULE=" + name, os.path.join(HERE, "probe.c"), "-o", out]
    if limited:
        cmd.insert(1, "-DPy_LIMITED_API=0x030A0000")
    subprocess.run(cmd, check=True)
    spec = importlib.util.spec_from_file_location(name, out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def per_call(fn, arg, ops, reps):
    def once():
        t0 = time.perf_counter_ns()
        if arg is None:
            for _ in range(ops):
                fn()
        else:
            for _ in range(ops):
                fn(arg)
        t1 = time.perf_counter_ns()
        for _ in range(ops):
            pass
        t2 = time.perf_counter_ns()
        return ((t1 - t0) - (t2 - t1)) / ops
    return statistics.median(once() for _ in range(reps))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--ops", type=int, default=2_000_000)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        full = build(d, "probe_full", False)
        abi3 = build(d, "probe_abi3", True)
        print("interpreter: %s %s; CPU: %s" % (sys.executable, platform.python_version(),
              next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")))
        floats = tuple(float(i) for i in range(16))
        for label, fname, arg in (("noop()", "noop", None), ("add1(7)", "add1", 7),
                                  ("fsum(16 floats)", "fsum", floats)):
            # Interleaved, so drift hits both alike.
            f = [per_call(getattr(full, fname), arg, a.ops, 1) for _ in range(a.reps)]
            b = [per_call(getattr(abi3, fname), arg, a.ops, 1) for _ in range(a.reps)]
            fm, bm = statistics.median(f), statistics.median(b)
            print("%-16s full %6.1f ns  abi3 %6.1f ns  abi3-full %+5.1f ns" % (label, fm, bm, bm - fm))


if __name__ == "__main__":
    main()
