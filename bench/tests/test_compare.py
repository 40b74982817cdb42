#!/usr/bin/env python3
"""bench/compare.py's verdicts on synthetic runs: a missing row, a zero
figure, lower- and higher-is-better counters, a spread that straddles the
target, paired ratios, a disturbed run, a spread over 1.5x, the best of
several baselines, the placement note, pairs left out when their two sides
ran in different placements of the virtual CPUs, and the suite's count of
met targets. Run directly (ctest does) or under pytest."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import compare  # noqa: E402
import targets  # noqa: E402


def rep(name, real_time=None, **counters):
    b = {"name": name, "run_name": name, "run_type": "iteration", "time_unit": "ns",
         "real_time": 1.0 if real_time is None else real_time}
    b.update(counters)
    return b


def series(*entries):
    return compare.collect(list(entries))


def comparison(metric="ns", goal="at_least", target=2.0, cand="cand", base="base"):
    c = dict(group="g", title="t", candidate=cand, baseline=base, baseline_label="b", goal=goal, target=target)
    if metric != "ns":
        c["metric"] = metric
    return c


class Verdicts(unittest.TestCase):
    def test_met_when_every_paired_ratio_meets(self):
        s = series(rep("cand", 10), rep("base", 30), rep("cand", 11), rep("base", 33), rep("cand", 9), rep("base", 27))
        r = compare.judge(comparison(target=2.0), s)
        self.assertEqual(r["met"], "yes")
        self.assertEqual(r["ratio"], "3.00x")
        self.assertEqual(r["reps"], 3)

    def test_missed_when_no_paired_ratio_meets(self):
        s = series(rep("cand", 10), rep("base", 15), rep("cand", 10), rep("base", 12))
        self.assertEqual(compare.judge(comparison(target=2.0), s)["met"], "NO")

    def test_bimodal_spread_straddling_the_target_is_inconclusive(self):
        # Medians of the two series give 2.5x (met), but the pairs say 1.5x
        # and 3.0x and 2.5x: the run cannot tell.
        s = series(rep("cand", 10), rep("base", 15), rep("cand", 10), rep("base", 30), rep("cand", 10), rep("base", 25))
        r = compare.judge(comparison(target=2.0), s)
        self.assertEqual(r["met"], "inconclusive")
        self.assertEqual(r["ratio_range"], "1.50-3.00x")

    def test_ratios_are_paired_not_ratios_of_medians(self):
        # Each pair is 2x; the medians of the series are 20 and 30 (1.5x).
        s = series(rep("cand", 10), rep("base", 20), rep("cand", 20), rep("base", 40), rep("cand", 30), rep("base", 30))
        r = compare.judge(comparison(target=1.0), s)
        self.assertEqual(r["ratio"], "2.00x")

    def test_missing_candidate_or_baseline_is_missing_and_counts_as_missed(self):
        r = compare.judge(comparison(), series(rep("base", 10)))
        self.assertEqual(r["met"], "missing")
        self.assertIn("cand", r["note"])
        met, missed = compare.tally([r])
        self.assertEqual((met, len(missed)), (0, 1))

    def test_zero_figure_fails_and_counts_as_missed(self):
        s = series(rep("cand", 0.0), rep("base", 10))
        r = compare.judge(comparison(), s)
        self.assertEqual(r["met"], "failed")
        self.assertEqual(compare.tally([r]), (0, ["t (failed)"]))

    def test_zero_counter_fails(self):
        s = series(rep("cand", 1, **{"Mops/s": 0.0}), rep("base", 1, **{"Mops/s": 5.0}))
        self.assertEqual(compare.judge(comparison(metric="Mops/s"), s)["met"], "failed")

    def test_higher_is_better_counter(self):
        s = series(rep("cand", 1, **{"Mops/s": 30.0}), rep("base", 1, **{"Mops/s": 10.0}))
        self.assertEqual(compare.judge(comparison(metric="Mops/s", goal="at_least", target=2.0), s)["ratio"], "3.00x")
        # at_most shows the cost: a third of the baseline's.
        r = compare.judge(comparison(metric="Mops/s", goal="at_most", target=0.5), s)
        self.assertEqual((r["ratio"], r["met"]), ("0.33x", "yes"))

    def test_lower_is_better_counter_keeps_its_direction_whatever_the_goal(self):
        # A lag of 2 items against 8: the candidate is 4x better, 0.25x the cost.
        s = series(rep("cand", 1, lag_p50=2.0), rep("base", 1, lag_p50=8.0))
        self.assertEqual(compare.judge(comparison(metric="lag_p50", goal="at_least", target=3.0), s)["met"], "yes")
        r = compare.judge(comparison(metric="lag_p50", goal="at_most", target=0.5), s)
        self.assertEqual((r["ratio"], r["met"]), ("0.25x", "yes"))
        # The same figures under a higher-is-better reading would miss: the
        # direction comes from the metric, not from the goal label.
        worse = series(rep("cand", 1, lag_p50=8.0), rep("base", 1, lag_p50=2.0))
        self.assertEqual(compare.judge(comparison(metric="lag_p50", goal="at_least", target=3.0), worse)["met"], "NO")

    def test_undeclared_metric_is_an_error(self):
        with self.assertRaises(ValueError):
            compare.judge(comparison(metric="widgets"), series(rep("cand", 1, widgets=1), rep("base", 1, widgets=1)))

    def test_every_target_metric_has_a_direction(self):
        for c in targets.COMPARISONS:
            self.assertIn(c.get("metric", "ns"), targets.METRICS, c["title"])
            self.assertIn(c["goal"], ("at_most", "at_least"), c["title"])

    def test_row_without_target_is_reported_not_counted(self):
        r = compare.judge(comparison(target=None), series(rep("cand", 1), rep("base", 2)))
        self.assertEqual(r["met"], "-")
        self.assertEqual(compare.tally([r]), (0, []))

    def test_errored_repetitions_are_not_figures(self):
        bad = rep("cand", 1)
        bad["error_occurred"] = True
        r = compare.judge(comparison(), series(bad, rep("base", 10)))
        self.assertEqual(r["met"], "missing")

    def test_disturbed_run_is_flagged(self):
        s = series(rep("cand", 10, runq_wait=0.30), rep("base", 30, runq_wait=0.0))
        self.assertIn("disturbed", compare.judge(comparison(), s)["note"])
        quiet = series(rep("cand", 10, runq_wait=0.0), rep("base", 30, runq_wait=0.01))
        self.assertEqual(compare.judge(comparison(), quiet)["note"], "")

    def test_spread_over_the_limit_is_flagged(self):
        # Paired ratios 3.0, 3.0, 1.5: max/min 2.0 > 1.5, verdict unchanged.
        s = series(rep("cand", 10), rep("base", 30), rep("cand", 10), rep("base", 30), rep("cand", 20), rep("base", 30))
        r = compare.judge(comparison(target=1.0), s)
        self.assertEqual(r["met"], "yes")
        self.assertIn("spread", r["note"])
        self.assertIn("1.50-3.00x", r["note"])
        # 3.0, 2.5, 2.2: max/min 1.36, not flagged.
        tight = series(rep("cand", 10), rep("base", 30), rep("cand", 10), rep("base", 25), rep("cand", 10), rep("base", 22))
        self.assertNotIn("spread", compare.judge(comparison(target=1.0), tight)["note"])

    def test_best_of_baselines_is_taken_per_repetition(self):
        # Repetition 0: b1 is best (20); repetition 1: b2 is (15). Pairs 2.0 and 1.5.
        c = comparison(target=1.0, base=["b1", "b2"])
        s = series(rep("cand", 10), rep("b1", 20), rep("b2", 40), rep("cand", 10), rep("b1", 30), rep("b2", 15))
        r = compare.judge(c, s)
        self.assertEqual((r["ratio"], r["ratio_range"], r["met"]), ("1.75x", "1.50-2.00x", "yes"))
        self.assertIn("best baseline", r["note"])
        # A rate: higher is better, so the best baseline is the largest.
        rc = comparison(metric="Mops/s", goal="at_least", target=1.0, base=["b1", "b2"])
        rs = series(rep("cand", 1, **{"Mops/s": 30.0}), rep("b1", 1, **{"Mops/s": 10.0}), rep("b2", 1, **{"Mops/s": 20.0}))
        self.assertEqual(compare.judge(rc, rs)["ratio"], "1.50x")

    def test_best_of_with_a_baseline_missing_is_missing(self):
        c = comparison(base=["b1", "b2"])
        r = compare.judge(c, series(rep("cand", 10), rep("b1", 20)))
        self.assertEqual(r["met"], "missing")
        self.assertIn("b2", r["note"])

    def test_placement_is_reported_and_a_mismatch_flagged(self):
        where = dict(cpu_producer=0, cpu_consumer=1, shared_l2=0, shared_l3=1, cpu_moved=0)
        s = series(rep("cand", 10, **where), rep("base", 20, **where))
        note = compare.judge(comparison(target=1.0), s)["note"]
        self.assertIn("CPU 0 -> 1 (L2 shared: no, L3 shared: yes)", note)
        self.assertNotIn("elsewhere", note)
        moved = dict(where, cpu_moved=1)
        other = dict(where, cpu_consumer=2)
        s = series(rep("cand", 10, **moved), rep("base", 20, **other))
        note = compare.judge(comparison(target=1.0), s)["note"]
        self.assertIn("changed CPU", note)
        self.assertIn("the baseline ran elsewhere", note)


    def test_pairs_that_ran_in_different_placements_are_left_out(self):
        # Probes of about 120 ns ("near") and 500 ns ("far"). Repetition 2:
        # the candidate ran far (slow), the baseline near; that pair (0.5x)
        # compares placements and is left out, whatever its ratio.
        near, far = dict(probe_before_ns=118, probe_after_ns=121), dict(probe_before_ns=495, probe_after_ns=505)
        s = series(rep("cand", 10, **near), rep("base", 20, **near), rep("cand", 10, **near), rep("base", 22, **near),
                   rep("cand", 40, **far), rep("base", 20, **near), rep("cand", 10, **near), rep("base", 21, **near))
        r = compare.judge(comparison(target=1.5), s)
        self.assertEqual((r["met"], r["reps"], r["ratio_range"]), ("yes", 3, "2.00-2.20x"))
        self.assertIn("1 of 4 pairs left out", r["note"])
        # Both sides far: like with like, kept (the same rule, not "near only").
        s = series(rep("cand", 10, **far), rep("base", 20, **far), rep("cand", 10, **near), rep("base", 22, **near),
                   rep("cand", 10, **far), rep("base", 12, **far))
        r = compare.judge(comparison(target=1.5), s)
        self.assertEqual((r["met"], r["reps"]), ("inconclusive", 3))
        self.assertNotIn("left out", r["note"])
        # A pair left out never turns a miss into a pass: the kept pairs decide.
        s = series(rep("cand", 10, **near), rep("base", 12, **near), rep("cand", 10, **far), rep("base", 40, **near),
                   rep("cand", 10, **near), rep("base", 11, **near), rep("cand", 10, **near), rep("base", 13, **near))
        self.assertEqual(compare.judge(comparison(target=1.5), s)["met"], "NO")

    def test_too_few_like_pairs_is_inconclusive(self):
        near, far = dict(probe_before_ns=118, probe_after_ns=121), dict(probe_before_ns=495, probe_after_ns=505)
        s = series(rep("cand", 10, **near), rep("base", 30, **near), rep("cand", 10, **far), rep("base", 30, **near),
                   rep("cand", 10, **far), rep("base", 30, **near))
        r = compare.judge(comparison(target=2.0), s)
        self.assertEqual((r["met"], r["reps"]), ("inconclusive", 1))
        self.assertIn("fewer than 3 pairs kept", r["note"])
        none = series(rep("cand", 10, **far), rep("base", 30, **near))
        r = compare.judge(comparison(target=2.0), none)
        self.assertEqual(r["met"], "inconclusive")
        self.assertIn("1 of 1 pairs left out", r["note"])
        # A probe that drifts within a run (near before, far after) matches
        # neither placement.
        drifted = dict(probe_before_ns=120, probe_after_ns=480)
        r = compare.judge(comparison(target=2.0), series(rep("cand", 10, **drifted), rep("base", 30, **near)))
        self.assertEqual(r["met"], "inconclusive")

    def test_best_of_takes_only_baselines_in_the_candidates_placement(self):
        # Repetition 1: b1 ran far (40) and b2 near (15); the candidate ran
        # near, so b2 is its baseline even if b1 would be worse or better.
        near, far = dict(probe_before_ns=118, probe_after_ns=121), dict(probe_before_ns=495, probe_after_ns=505)
        c = comparison(target=1.0, base=["b1", "b2"])
        s = series(rep("cand", 10, **near), rep("b1", 20, **near), rep("b2", 30, **near),
                   rep("cand", 10, **near), rep("b1", 5, **far), rep("b2", 15, **near),
                   rep("cand", 10, **near), rep("b1", 25, **near), rep("b2", 22, **near))
        r = compare.judge(c, s)
        self.assertEqual((r["ratio_range"], r["met"], r["reps"]), ("1.50-2.20x", "yes", 3))
        self.assertIn("b2 in 2 of 3", r["note"])
        self.assertNotIn("left out", r["note"])

    def test_repetitions_without_probes_are_all_paired(self):
        near = dict(probe_before_ns=118, probe_after_ns=121)
        s = series(rep("cand", 10), rep("base", 30, **near), rep("cand", 10, **near), rep("base", 30))
        r = compare.judge(comparison(target=2.0), s)
        self.assertEqual((r["met"], r["reps"]), ("yes", 2))
        self.assertNotIn("left out", r["note"])


class Rows(unittest.TestCase):
    def setUp(self):
        self.saved = compare.COMPARISONS
        compare.COMPARISONS = [comparison(cand="a/c", base="a/b"), comparison(cand="x/c", base="x/b")]

    def tearDown(self):
        compare.COMPARISONS = self.saved

    def test_every_comparison_gets_a_row_without_scope(self):
        table = compare.rows(series(rep("a/c", 1), rep("a/b", 4)))
        self.assertEqual([r["met"] for r in table], ["yes", "missing"])
        self.assertEqual(compare.tally(table)[0], 1)
        self.assertEqual(len(compare.tally(table)[1]), 1)

    def test_scope_leaves_out_only_binaries_not_asked_for(self):
        table = compare.rows(series(rep("a/c", 1), rep("a/b", 4)), scope={"a/c", "a/b"})
        self.assertEqual(len(table), 1)
        # A binary asked for whose rows are absent (it failed) still counts.
        table = compare.rows(series(), scope={"a/c", "a/b"})
        self.assertEqual([r["met"] for r in table], ["missing"])


if __name__ == "__main__":
    unittest.main()
