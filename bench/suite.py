#!/usr/bin/env python3
"""The shmkit benchmark suite: every bench binary, one report.

    suite.py [--build-dir build/release] [--quick | --full] [--out RUN.json]
             [--only NAME,...] [--markdown BENCHMARKS.md] [--plots DIR]

--quick (the default; `shmkit bench` and the README's first command) runs
each binary with 3 repetitions and short minimum times, in well under three
minutes on 2 CPUs, showing progress, then prints one table: primitive, shmkit
figure, baseline figure, ratio, target, met. --full uses 5 repetitions and
Google Benchmark's default minimum time, writes the merged Google Benchmark
JSON to --out, and with --markdown regenerates the part of BENCHMARKS.md
between its "suite:begin" and "suite:end" markers (machine, compiler, flags,
commit, date, one table per component), with --plots the PNG plots.

Every comparison is computed inside one run of one binary: candidate and
baseline are interleaved (--benchmark_enable_random_interleaving) and the
ratio is the median of paired per-repetition ratios (bench/compare.py says
how each row is judged). Every target is printed; a row that is missing (its
binary not built, failed or exited non-zero), failed (a zero figure) or
inconclusive (its paired ratios straddle the target) counts as missed.
Targets are reported, never asserted.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import collect, rows, tally, value  # noqa: E402

# (binary, what it measures). Binaries that were not built are skipped.
SUITES = [
    ("bench_shared_memory", "SharedMemory create/attach vs raw syscalls and CPython"),
    ("bench_shareable_list", "ShareableList get/set vs CPython"),
    ("bench_sync", "locks, 1-8 processes and threads"),
    ("bench_atomic", "atomics vs std::atomic"),
    ("bench_sharedctypes", "Value/Array/Heap vs bare locks, memcpy and CPython"),
    ("bench_lockfree", "queues, SeqLock vs Boost, moodycamel, TBB, pipes; SpscQueue vs four SPSC rings in rounds"),
    ("bench_fanout", "BroadcastRing and SeqLock with 0-4 reader processes"),
    ("bench_mpi", "shmkit::mpi vs MPI on one node (starts its own mpirun jobs)"),
    ("bench_order_book", "the example order book: SeqLock top-of-book reads vs the RobustMutex; writer with 0-4 readers"),
    ("bench_python", "the Python package vs CPython: locks, atomics, queues, ShareableList, the call cost"),
]
# Why a binary may be missing beyond "not built yet".
SKIP_REASONS = {"bench_mpi": "shmkit was configured without MPI (libopenmpi-dev, openmpi-bin)",
                "bench_python": "shmkit was configured without the Python extension (python3-dev)"}


def list_tests(binary):
    out = subprocess.run([binary, "--benchmark_list_tests"], capture_output=True, text=True, check=True)
    return [l for l in out.stdout.splitlines() if l.strip()]


def run_binary(binary, reps, min_time, index, total, out_json):
    """The binary's JSON, or (None, why) when it failed."""
    n_tests = len(list_tests(binary))
    expected = max(1, n_tests * reps)
    args = [binary, f"--benchmark_repetitions={reps}", "--benchmark_enable_random_interleaving=true",
            "--benchmark_report_aggregates_only=false", f"--benchmark_out={out_json}",
            "--benchmark_out_format=json"]
    if min_time is not None:
        args.append(f"--benchmark_min_time={min_time}")
    start = time.monotonic()
    name = Path(binary).name
    done = 0
    tty = sys.stderr.isatty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        # One console line per finished repetition (aggregates end in _mean etc.).
        head = line.split(" ", 1)[0]
        if head and not head.startswith(("-", "Benchmark")) and not head.endswith(("_mean", "_median", "_stddev", "_cv")):
            done += 1
            if tty:
                sys.stderr.write(f"\r[{index}/{total}] {name}: {min(done, expected)}/{expected} runs, "
                                 f"{time.monotonic() - start:5.1f}s ")
                sys.stderr.flush()
    rc = proc.wait()
    sys.stderr.write(("\r" if tty else "") + f"[{index}/{total}] {name}: {done} runs in "
                     f"{time.monotonic() - start:.1f}s{'' if rc == 0 else f' (exit {rc})'}\n")
    if rc != 0:
        return None, f"exited with status {rc}"
    try:
        return json.loads(Path(out_json).read_text()), None
    except (OSError, ValueError) as e:
        return None, f"wrote no readable JSON ({e})"


def print_table(rows, failed_binaries=()):
    header = ("primitive", "shmkit", "baseline", "baseline figure", "ratio", "range", "target", "met", "note")
    table = [header] + [(r["title"], r["cand"], r["baseline"], r["base"], r["ratio"], r["ratio_range"],
                         r["target"], r["met"], r["note"]) for r in rows]
    widths = [min(52, max(len(str(row[i])) for row in table)) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(str(x)[:w].ljust(w) for x, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    met, missed = tally(rows)
    print(f"\n{met} of {met + len(missed)} targets met" + (f"; missed: {'; '.join(missed)}" if missed else ""))
    for b, why in failed_binaries:
        print(f"{b}: {why}; its rows are missing")


def cpu_model():
    """The model name with its family and model numbers: "AMD EPYC" alone
    does not tell Zen 3 (family 25) from Zen 5 (family 26)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = val.strip()
            if not line.strip() and fields:
                break
    except OSError:
        pass
    name = fields.get("model name", "unknown")
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name


HANDOFF_LOCKS = ["shmkit::Mutex", "pthread_pshared", "shmkit::RobustMutex", "pthread_robust_pshared"]


def handoff_line(series):
    """Median fraction of acquisitions that passed the lock to the other process (2 contended)."""
    parts = []
    for lock in HANDOFF_LOCKS:
        name = next((n for n in series if n.startswith(f"contended/{lock}/procs/2/")), None)
        vals = value(series[name], "handoff") if name else []
        if vals:
            parts.append(f"{lock} {100 * statistics.median(vals):.1f}%")
    return ", ".join(parts) or "not measured"


def machine_lines(context, build_dir, series=None):
    cpu = cpu_model()
    virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip() or "unknown"
    cache = {}
    try:
        for line in (Path(build_dir) / "CMakeCache.txt").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key.startswith("CMAKE_CXX_FLAGS") or key in ("CMAKE_CXX_COMPILER", "CMAKE_BUILD_TYPE"):
                cache[key] = line.split("=", 1)[1]
    except OSError:
        pass
    build_type = cache.get("CMAKE_BUILD_TYPE", "")
    # The flags the build really used: the common ones, then the build type's.
    flags = " ".join(f for f in (cache.get("CMAKE_CXX_FLAGS", ""),
                                 cache.get(f"CMAKE_CXX_FLAGS_{build_type.upper()}", "") if build_type else "")
                     if f.strip())
    compiler = subprocess.run([cache.get("CMAKE_CXX_COMPILER", "c++"), "--version"], capture_output=True,
                              text=True).stdout.splitlines()[:1]
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    # The report's own outputs do not make the measured code "dirty".
    dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--untracked-files=no",
                            "--", ".", ":!BENCHMARKS.md", ":!bench/plots"],
                           capture_output=True, text=True).stdout.strip()
    return [
        f"| CPU | {cpu}, {context.get('num_cpus')} CPUs as seen by the run |",
        f"| virtualisation | {virt} |",
        f"| spin policy (spin.hpp) | {context.get('spin_policy', 'not reported')} |",
        f"| SPSC rows: placement | {context.get('spsc_placement', 'not reported')} |",
        f"| SPSC rows: what the consumer does | {context.get('spsc_consumer', 'not reported')} |",
        f"| lock hand-offs, 2 processes contended | {handoff_line(series or {})} |",
        f"| Python queue and pool placement | {context.get('python_queue_placement', 'not reported')} |",
        f"| kernel | {platform.release()} |",
        f"| compiler | {compiler[0] if compiler else '?'}; build type {build_type or '(none)'} "
        f"(`{flags}`), `-std=c++20` |",
        f"| commit | `{commit}`{' plus uncommitted changes' if dirty else ''} |",
        f"| date | {context.get('date', '?')} |",
        f"| load average at the end | {os.getloadavg()[0]:.2f} |",
    ]


def markdown(rows, context, build_dir, plots, series=None):
    out = ["<!-- suite:begin (generated by bench/suite.py --full --markdown; edits here are overwritten) -->",
           "", "### Machine and build of this run", "", "| | |", "|---|---|"]
    out += machine_lines(context, build_dir, series)
    groups = []
    for r in rows:
        if r["group"] not in groups:
            groups.append(r["group"])
    for g in groups:
        out += ["", f"### {g}", "",
                "| comparison | shmkit median (min-max) | baseline | baseline median (min-max) "
                "| paired ratio (min-max) | target | met | note |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["group"] == g:
                out.append(f"| {r['title']} | {r['cand']} ({r['cand_range']}) | {r['baseline']} | {r['base']} "
                           f"({r['base_range']}) | {r['ratio']} ({r['ratio_range']}) | {r['target']} | {r['met']} "
                           f"| {r['note']} |")
    met, missed = tally(rows)
    out += ["", f"{met} of {met + len(missed)} targets met" + (f"; missed: {'; '.join(missed)}" if missed else "")]
    for p in plots:
        out += ["", f"![{p.stem}]({p.as_posix()})"]
    out += ["", "<!-- suite:end -->"]
    return "\n".join(out)


def save(fig, ax, path, made):
    """The common end of every plot: grid, layout, PNG, close, record."""
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
    made.append(path)


def plot(series, outdir):
    """Throughput against processes for the locks, atomics and queues."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("suite: matplotlib (python3-matplotlib) is not installed; no plots\n")
        return []
    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    pattern = re.compile(r"^contended/(?P<lock>[^/]+)/procs/(?P<n>\d+)/")
    curves = {}
    for name, entries in series.items():
        m = pattern.match(name)
        if not m:
            continue
        vals = value(entries, "Mops/s")
        if vals:
            curves.setdefault(m.group("lock"), []).append((int(m.group("n")), statistics.median(vals)))
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for lock, pts in sorted(curves.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lock)
        ax.set_xlabel("processes (on the machine's CPUs; beyond them, oversubscribed)")
        ax.set_ylabel("M operations/s while all run (median)")
        ax.set_title("Locked increments and atomics: throughput against processes")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
        save(fig, ax, outdir / "locks_vs_processes.png", made)

    # MpmcQueue throughput against processes (items/s while all run).
    mp = re.compile(r"^mpmc_scaling/(?P<q>[^/]+)/(?P<n>\d+)/")
    pts = sorted((int(m.group("n")), statistics.median(value(e, "Mitems/s")))
                 for name, e in series.items() if (m := mp.match(name)) and value(e, "Mitems/s"))
    if pts:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="shmkit::MpmcQueue")
        ax.set_xlabel("processes (half producers, half consumers; beyond the CPUs, oversubscribed)")
        ax.set_ylabel("M items/s while all run (median)")
        ax.set_title("MpmcQueue: throughput against processes")
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        save(fig, ax, outdir / "queues_vs_processes.png", made)

    # Round trip between two processes against the spin ping-pong limit.
    rt = re.compile(r"^rtt/(?P<q>[^/]+)/(?:(?P<cap>1024)/)?procs/")
    bars = sorted((statistics.median(value(e, "ns")), m.group("q"))
                  for name, e in series.items() if (m := rt.match(name)))
    if bars:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.barh([b[1] for b in bars], [b[0] for b in bars], color="#4c72b0")
        limit = next((b[0] for b in bars if b[1] == "spin_pingpong"), None)
        if limit:
            ax.axvline(limit, color="#c44e52", linestyle="--", label=f"spin ping-pong limit {limit:.0f} ns")
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("round trip between two pinned processes, ns (median, log scale)")
        ax.set_title("Round trip through two queues (capacity 1024)")
        save(fig, ax, outdir / "round_trip.png", made)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(HERE.parent / "build" / "release"))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--out", help="write the merged Google Benchmark JSON here")
    ap.add_argument("--only", help="comma-separated binaries to run")
    ap.add_argument("--markdown", help="regenerate the suite section of this BENCHMARKS.md")
    ap.add_argument("--plots", help="write PNG plots into this directory")
    args = ap.parse_args()

    reps, min_time = (5, None) if args.full else (3, 0.05)
    bench_dir = Path(args.build_dir) / "bench"
    chosen = [s for s in SUITES if not args.only or s[0] in args.only.split(",")]
    present = [(b, d) for b, d in chosen if (bench_dir / b).exists()]
    for b, _ in chosen:
        if not (bench_dir / b).exists():
            why = f" ({SKIP_REASONS[b]})" if b in SKIP_REASONS else ""
            sys.stderr.write(f"suite: {b} not built in {bench_dir}; skipped{why}\n")
    if not present:
        sys.exit(f"suite: no benchmark binaries in {bench_dir} (build the release preset first)")

    # With --only, the rows counted are those the chosen binaries can
    # produce; without it, every comparison counts (a binary not built
    # leaves its rows missing, and missed).
    scope = None
    if args.only:
        scope = set()
        for b, _ in present:
            scope.update(list_tests(str(bench_dir / b)))
    built = {b for b, _ in present}
    failed = [(b, "not built") for b, _ in chosen if b not in built]
    merged = {"context": None, "benchmarks": []}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"shmkit-suite-{os.getpid()}.json"
    t0 = time.monotonic()
    sys.stderr.write(f"shmkit benchmark suite ({'full' if args.full else 'quick'} mode: {reps} repetitions, "
                     f"interleaved) on {os.cpu_count()} CPUs: {cpu_model()}\n")
    for i, (b, desc) in enumerate(present, 1):
        data, why = run_binary(str(bench_dir / b), reps, min_time, i, len(present), tmp)
        if data is None:
            failed.append((b, why))
            continue
        merged["context"] = merged["context"] or data["context"]
        for k, v in data["context"].items():  # each binary's own context lines (spin policy, ...)
            merged["context"].setdefault(k, v)
        for entry in data["benchmarks"]:
            entry["binary"] = b
        merged["benchmarks"] += data["benchmarks"]
    tmp.unlink(missing_ok=True)
    sys.stderr.write(f"done in {time.monotonic() - t0:.0f}s\n\n")

    series = collect(merged["benchmarks"])
    table = rows(series, scope)
    ctx = merged["context"] or {}
    print(f"CPU: {cpu_model()}; spin policy: {ctx.get('spin_policy', 'not reported')}")
    if "spsc_placement" in ctx:
        print(f"SPSC rows: {ctx['spsc_placement']}")
    print(f"lock hand-offs, 2 processes contended: {handoff_line(series)}")
    if "python_queue_placement" in ctx:
        print(f"Python queue and pool placement: {ctx['python_queue_placement']}")
    print_table(table, failed)
    if args.out:
        Path(args.out).write_text(json.dumps(merged, indent=1))
    plots = plot(series, Path(args.plots)) if args.plots else []
    if args.markdown:
        md_path = Path(args.markdown)
        text = md_path.read_text()
        begin, end = text.find("<!-- suite:begin"), text.find("<!-- suite:end -->")
        rel_plots = [Path(os.path.relpath(p, md_path.parent)) for p in plots]
        section = markdown(table, merged["context"] or {}, args.build_dir, rel_plots, series)
        if begin == -1 or end == -1:
            text = text.rstrip() + "\n\n" + section + "\n"
        else:
            text = text[:begin] + section + text[end + len("<!-- suite:end -->"):]
        md_path.write_text(text)
        sys.stderr.write(f"regenerated the suite section of {md_path}\n")


if __name__ == "__main__":
    main()
