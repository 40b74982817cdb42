#!/usr/bin/env python3
"""Paired ratios and verdicts from one Google Benchmark JSON run.

    compare.py RUN.json [--markdown]

RUN.json comes from a bench binary run with --benchmark_repetitions=N
--benchmark_enable_random_interleaving=true --benchmark_format=json (or
--benchmark_out), or from bench/suite.py --out. Each comparison in
bench/targets.py names a candidate and a baseline from the same run, so both
saw the same machine state.

How a row is judged:
  * Every metric has a direction (targets.METRICS): time per operation and
    memory are lower-is-better, rates are higher-is-better. A comparison's
    goal only says how its ratio is shown: "at_most" shows the candidate's
    cost relative to the baseline's (<= target is met), "at_least" shows how
    many times better the candidate is (>= target is met). Both are computed
    from the metric's direction, never from the goal.
  * Ratios are paired: the i-th repetition of the candidate against the i-th
    repetition of the baseline, in run order. The row shows the median of the
    paired ratios and their min-max range.
  * Verdicts: "yes" when every paired ratio meets the target; "NO" when none
    does; "inconclusive" when the range straddles the target; "missing" when
    the candidate or the baseline has no repetition in the run (a binary that
    was not built, failed or exited non-zero); "failed" when a figure is zero,
    negative or not finite, so no ratio exists. Only "yes" counts as met: a
    target whose row is missing, failed or inconclusive is missed.
  * A row whose repetitions recorded a `runq_wait` counter (the share of the
    run a process spent runnable but not running) above DISTURBED is flagged:
    the CPUs were not the benchmark's alone.
  * A row whose paired ratios spread more than SPREAD (the largest over the
    smallest) is flagged: the run moved under it (placement, other jobs), so
    its median says less than its range.
  * A baseline may be a list of run names ("the best of"): each repetition's
    ratio is then taken against the best of the baselines in that same
    repetition, and the row names the one that was best most often.
  * Rows whose repetitions recorded where they ran (counters cpu_producer,
    cpu_consumer, shared_l2, shared_l3, cpu_moved: bench_lockfree's spsc/
    rows) say so in their note, and say when the candidate and a baseline
    did not run on the same CPUs.
  * Rows whose repetitions were framed by ping-pong probes (counters
    probe_before_ns, probe_after_ns: bench_lockfree's spsc/ rows and the
    Python queue and pool rows of bench_python) pair only
    like with like. The host can move a VM's two virtual CPUs between a
    "near" and a "far" placement (a spin ping-pong of about 120 ns against
    about 500 ns on the EPYC VM), and a pair measured on both sides of such
    a move compares placements, not queues. A pair is kept when the four
    probes around its two runs agree within PROBE_DRIFT; with several
    baselines, each repetition takes the best of those that ran in the
    candidate's placement. The pairs left out are counted in the note,
    whatever their ratio; a row with fewer than MIN_PAIRS pairs kept (and
    more repetitions than that) is inconclusive.
Exit status is 0 whatever the verdicts: targets are reported, never asserted.
"""
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import COMPARISONS, METRICS  # noqa: E402

# runq_wait above this (a fraction of the run) marks a disturbed repetition.
DISTURBED = 0.05
# Paired ratios whose largest is more than this times their smallest mark a
# row that the run's conditions moved.
SPREAD = 1.5
# Probes (spin ping-pong ns) within this factor of each other show the same
# placement of the two virtual CPUs: bench_lockfree's own bound
# (kProbeDrift) for a run "in place". The near and far placements differ by
# about 4x on the EPYC VM (about 120 ns against about 500 ns), but probes
# also fall between (100-125 and 150-200 ns clusters, 340-420 ns), so the
# bound stays tight: a pair it cannot call like with like is left out.
PROBE_DRIFT = 1.25
# The fewest like-for-like pairs a row with probes is judged on.
MIN_PAIRS = 3


def per_op_ns(b):
    unit = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return b["real_time"] * unit


def collect(runs):
    """name -> list of per-repetition entries, in run order. Entries that
    reported an error are kept out (their figures mean nothing)."""
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


def higher_is_better(metric):
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"compare: metric {metric!r} has no direction in targets.METRICS") from None


def fmt(v, metric):
    if metric == "ns":
        return f"{v/1000:.2f} us" if v >= 1000 else f"{v:.1f} ns"
    if v >= 1e6:
        return f"{v/1e6:.2f} M/s"
    return f"{v:.3g}"


def paired_ratios(cv, bv, metric, goal):
    """The ratio of each pair (cv[i], bv[i]) as the goal shows it, or None if
    a figure cannot give one (zero, negative, not finite)."""
    hib = higher_is_better(metric)
    out = []
    for c, b in zip(cv, bv):
        if not (math.isfinite(c) and math.isfinite(b)) or c <= 0 or b <= 0:
            return None
        cost = b / c if hib else c / b  # the candidate's cost relative to the baseline's
        out.append(cost if goal == "at_most" else 1.0 / cost)
    return out


def verdict(ratios, target, goal):
    if target is None:
        return "-"
    ok = [(r <= target) if goal == "at_most" else (r >= target) for r in ratios]
    if all(ok):
        return "yes"
    if not any(ok):
        return "NO"
    return "inconclusive"


def baseline_names(c):
    b = c["baseline"]
    return list(b) if isinstance(b, (list, tuple)) else [b]


def probes(entry):
    """The ping-pong probes (ns) that framed this repetition, or () when it
    recorded none."""
    got = [entry.get(k, 0) for k in ("probe_before_ns", "probe_after_ns")]
    return tuple(got) if all(isinstance(x, (int, float)) and x > 0 for x in got) else ()


def same_placement(a, b):
    """Whether repetitions a and b ran in the same placement of the virtual
    CPUs, as far as their probes tell (True when either has none)."""
    pa, pb = probes(a), probes(b)
    if not pa or not pb:
        return True
    every = pa + pb
    return max(every) <= PROBE_DRIFT * min(every)


def best_of(series, names, metric, cand_entries=None):
    """Per repetition, the best figure among the baselines `names` (only
    repetitions every baseline has), and the name that gave it. With
    `cand_entries`, only baselines that ran in the placement of that
    repetition of the candidate compete; a repetition none of them matches
    gives (None, None)."""
    entries = [[b for b in series.get(n, []) if metric == "ns" or metric in b] for n in names]
    if not entries or any(not e for e in entries):
        return [], []
    hib = higher_is_better(metric)
    figs, who = [], []
    for i in range(min(len(e) for e in entries)):
        ok = [k for k in range(len(names))
              if cand_entries is None or i >= len(cand_entries) or same_placement(cand_entries[i], entries[k][i])]
        if not ok:
            figs.append(None)
            who.append(None)
            continue
        vals = {k: value([entries[k][i]], metric)[0] for k in ok}
        j = max(ok, key=lambda k: vals[k]) if hib else min(ok, key=lambda k: vals[k])
        figs.append(vals[j])
        who.append(names[j])
    return figs, who


PLACEMENT = ("cpu_producer", "cpu_consumer", "shared_l2", "shared_l3")


def placements(entries):
    """The distinct (cpu_producer, cpu_consumer, shared_l2, shared_l3)
    tuples of these repetitions, and whether any worker changed CPU."""
    seen = sorted({tuple(int(b[k]) for k in PLACEMENT) for b in entries if all(k in b for k in PLACEMENT)})
    moved = any(b.get("cpu_moved", 0) for b in entries)
    return seen, moved


def placement_note(cand_entries, base_entries):
    seen, moved = placements(cand_entries)
    if not seen:
        return ""
    word = {1: "yes", 0: "no"}
    parts = [f"CPU {p} -> {q} (L2 shared: {word.get(l2, '?')}, L3 shared: {word.get(l3, '?')})"
             for p, q, l2, l3 in seen]
    note = "placed: " + "; ".join(parts)
    if moved:
        note += "; a worker changed CPU"
    bseen, _ = placements(base_entries)
    if bseen and bseen != seen:
        note += "; the baseline ran elsewhere"
    return note


def judge(c, series):
    """One comparison against the run's series: a dict with the figures, the
    paired ratio and the verdict."""
    metric = c.get("metric", "ns")
    higher_is_better(metric)  # an undeclared metric is an error, not a guess
    goal, t = c["goal"], c.get("target")
    row = dict(group=c.get("group", ""), title=c["title"], baseline=c["baseline_label"],
               cand="-", cand_range="-", base="-", base_range="-", ratio="n/a", ratio_range="-",
               target="-" if t is None else ("<= " if goal == "at_most" else ">= ") + f"{t}x",
               met="-", reps=0, note="", counts=t is not None)
    names = baseline_names(c)
    cand_entries = [b for b in series.get(c["candidate"], []) if metric == "ns" or metric in b]
    cv = value(cand_entries, metric)
    # Per repetition, the baseline figure it is paired with (None: no
    # baseline ran in the candidate's placement then), and whose it is.
    bv, who = best_of(series, names, metric, cand_entries)
    if cv:
        row.update(cand=fmt(statistics.median(cv), metric),
                   cand_range=f"{fmt(min(cv), metric)}-{fmt(max(cv), metric)}")
    every_bv = best_of(series, names, metric)[0]  # (all repetitions, for the figure shown)
    if every_bv:
        row.update(base=fmt(statistics.median(every_bv), metric),
                   base_range=f"{fmt(min(every_bv), metric)}-{fmt(max(every_bv), metric)}")
    if not cv or not bv:
        gone = [c["candidate"]] if not cv else []
        gone += [n for n in names if not value(series.get(n, []), metric)]
        row.update(met="missing", note="no repetition of " + ", ".join(gone))
        return row
    pairs = list(zip(cv, bv))
    kept = [(cf, bf) for cf, bf in pairs if bf is not None]
    ratios = paired_ratios([cf for cf, _ in kept], [bf for _, bf in kept], metric, goal)
    if ratios is None:
        row.update(met="failed", note="a zero, negative or non-finite figure: no ratio")
        return row
    notes = []
    left_out = len(pairs) - len(kept)
    if left_out:
        notes.append(f"{left_out} of {len(pairs)} pairs left out: the two sides ran in different placements "
                     "of the virtual CPUs (ping-pong probes)")
    if not ratios:
        row.update(met="inconclusive" if t is not None else "-")
        row["note"] = "; ".join(notes)
        return row
    met = verdict(ratios, t, goal)
    if left_out and len(ratios) < min(MIN_PAIRS, len(pairs)) and met != "-":
        met = "inconclusive"
        notes.append(f"fewer than {MIN_PAIRS} pairs kept")
    row.update(ratio=f"{statistics.median(ratios):.2f}x",
               ratio_range=f"{min(ratios):.2f}-{max(ratios):.2f}x", reps=len(ratios), met=met)
    base_entries = [b for n in names for b in series.get(n, [])]
    named = [w for w in who if w is not None]
    if len(names) > 1 and named:
        top = max(set(named), key=named.count)
        notes.append(f"best baseline: {top} in {named.count(top)} of {len(named)} repetitions")
    waits = value(series[c["candidate"]], "runq_wait") + value(base_entries, "runq_wait")
    if waits and max(waits) > DISTURBED:
        notes.append(f"disturbed: runq_wait up to {100 * max(waits):.0f}%")
    if max(ratios) > SPREAD * min(ratios):
        notes.append(f"spread: paired ratios {min(ratios):.2f}-{max(ratios):.2f}x, over {SPREAD}x")
    where = placement_note(series[c["candidate"]], base_entries)
    if where:
        notes.append(where)
    row["note"] = "; ".join(notes)
    return row


def rows(series, scope=None):
    """One row per comparison of targets.COMPARISONS. `scope`, when given, is
    the set of benchmark names the binaries of this run could produce: a
    comparison with neither side in it belongs to a binary that was not asked
    for and is left out. Every other comparison gets a row, missing or not."""
    out = []
    for c in COMPARISONS:
        if scope is not None and c["candidate"] not in scope and not any(n in scope for n in baseline_names(c)):
            continue
        out.append(judge(c, series))
    return out


def tally(table):
    """(met, missed): the rows with a target that are met, and the titles
    (with their verdict) of those that are not."""
    counted = [r for r in table if r["counts"]]
    met = [r for r in counted if r["met"] == "yes"]
    missed = [f"{r['title']} ({r['met']})" for r in counted if r["met"] != "yes"]
    return len(met), missed


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    markdown = "--markdown" in sys.argv
    data = json.loads(Path(sys.argv[1]).read_text())
    result = rows(collect(data["benchmarks"]))
    table = [(r["title"], f"{r['cand']} ({r['cand_range']})", r["baseline"], f"{r['base']} ({r['base_range']})",
              r["ratio"], r["ratio_range"], r["target"], r["met"], r["reps"], r["note"]) for r in result]
    header = ("comparison", "shmkit median (min-max)", "baseline", "baseline median (min-max)",
              "paired ratio", "range", "target", "met", "reps", "note")
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in table:
            print("| " + " | ".join(str(x) for x in r) + " |")
    else:
        widths = [max(len(str(r[i])) for r in table + [header]) for i in range(len(header))]
        for r in [header] + table:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    met, missed = tally(result)
    print(f"\n{met} of {met + len(missed)} targets met" + (f"; missed: {'; '.join(missed)}" if missed else ""))


if __name__ == "__main__":
    main()
