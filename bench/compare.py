#!/usr/bin/env python3
"""Medians, min-max and ratios from one Google Benchmark JSON run.

    compare.py RUN.json [--markdown]

RUN.json comes from a bench binary run with --benchmark_repetitions=N
--benchmark_enable_random_interleaving=true --benchmark_format=json (or
--benchmark_out). Each comparison in bench/targets.py names a candidate and a
baseline from the same run, so both saw the same machine state. Prints one
row per comparison: both medians (min-max), the ratio, the target, and
whether it is met. Exit status is 0 whatever the result: targets are
reported, never asserted.
"""
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import COMPARISONS  # noqa: E402


def per_op_ns(b):
    unit = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return b["real_time"] * unit


def collect(runs):
    """name -> list of per-repetition values (ns per op, or a named counter)."""
    series = {}
    for b in runs:
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            continue
        name = b.get("run_name", b["name"])
        series.setdefault(name, []).append(b)
    return series


def value(entries, metric):
    if metric == "ns":
        return [per_op_ns(b) for b in entries]
    return [b[metric] for b in entries if metric in b]


def fmt(v, metric):
    if metric == "ns":
        return f"{v/1000:.2f} us" if v >= 1000 else f"{v:.1f} ns"
    if v >= 1e6:
        return f"{v/1e6:.2f} M/s"
    return f"{v:.3g}"


def rows(series):
    """One dict per comparison of targets.COMPARISONS found in `series`:
    medians, min-max ranges, the ratio and whether its target is met."""
    out = []
    for c in COMPARISONS:
        cand, base = series.get(c["candidate"]), series.get(c["baseline"])
        if not cand or not base:
            continue
        metric = c.get("metric", "ns")
        cv, bv = value(cand, metric), value(base, metric)
        if not cv or not bv:
            continue
        cm, bm = statistics.median(cv), statistics.median(bv)
        # at_most: candidate time / baseline time (lower is better);
        # at_least: how many times faster the candidate is.
        # A counter can be 0 (a lag of 0 items): then there is no ratio.
        try:
            if c["goal"] == "at_most":
                ratio = cm / bm if metric == "ns" else bm / cm
            else:
                ratio = bm / cm if metric == "ns" else cm / bm
        except ZeroDivisionError:
            ratio = None
        t = c.get("target")
        met = None if t is None or ratio is None else (ratio <= t if c["goal"] == "at_most" else ratio >= t)
        out.append(dict(group=c.get("group", ""), title=c["title"], baseline=c["baseline_label"],
                        cand=fmt(cm, metric), cand_range=f"{fmt(min(cv), metric)}-{fmt(max(cv), metric)}",
                        base=fmt(bm, metric), base_range=f"{fmt(min(bv), metric)}-{fmt(max(bv), metric)}",
                        ratio="n/a" if ratio is None else f"{ratio:.2f}x",
                        target="-" if t is None else ("<= " if c["goal"] == "at_most" else ">= ") + f"{t}x",
                        met="-" if met is None else ("yes" if met else "NO"), reps=len(cv)))
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    markdown = "--markdown" in sys.argv
    data = json.loads(Path(sys.argv[1]).read_text())
    table = [(r["title"], f"{r['cand']} ({r['cand_range']})", r["baseline"], f"{r['base']} ({r['base_range']})",
              r["ratio"], r["target"], r["met"], r["reps"]) for r in rows(collect(data["benchmarks"]))]
    header = ("comparison", "shmkit median (min-max)", "baseline", "baseline median (min-max)",
              "ratio", "target", "met", "reps")
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in table:
            print("| " + " | ".join(str(x) for x in r) + " |")
    else:
        widths = [max(len(str(r[i])) for r in table + [header]) for i in range(len(header))]
        for r in [header] + table:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    main()
