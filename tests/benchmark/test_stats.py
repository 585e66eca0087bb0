"""Statistics over seeds against hand-computed cases (issue 8)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmark import stats

T_975_2 = 4.303  # t_{0.975, 2}, from a printed t table
T_95_2 = 2.920   # t_{0.95, 2}


def test_t_interval_of_three_values_by_hand():
    s = stats.summarize([1.0, 2.0, 3.0])
    # mean 2, s = sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1, half-width = 4.303 * 1 / sqrt(3) = 2.4843
    assert s.n == 3 and s.mean == pytest.approx(2.0) and s.std == pytest.approx(1.0)
    assert s.half_width == pytest.approx(T_975_2 / math.sqrt(3), rel=1e-3)
    assert (s.lo, s.hi) == pytest.approx((2 - 2.4843, 2 + 2.4843), rel=1e-3)
    assert stats.t_critical(3) == pytest.approx(T_975_2, rel=1e-3)


def test_t_interval_second_case_by_hand():
    s = stats.summarize([50.0, 52.0, 54.0])   # s = 2 -> half = 4.303 * 2 / sqrt 3 = 4.969
    assert s.mean == pytest.approx(52.0) and s.half_width == pytest.approx(4.969, abs=2e-3)


def test_single_seed_has_undefined_interval():
    s = stats.summarize([55.0])
    assert s.n == 1 and s.mean == 55.0
    assert math.isnan(s.std) and math.isnan(s.half_width) and not s.ci_defined


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError):
        stats.summarize([1.0, float("nan")])


def test_paired_t_test_by_hand():
    # d = [2, 3, 4]: mean 3, sd 1, t = 3 / (1 / sqrt 3) = 5.196; for df = 2 the t cdf has the closed form
    # P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2, so p = 1 - t / sqrt(t^2 + 2) = 1 - 5.196 / sqrt(29) = 0.0351
    r = stats.paired_test([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    t = 3 * math.sqrt(3)
    assert r.n == 3 and r.mean_diff == pytest.approx(3.0) and r.sd_diff == pytest.approx(1.0)
    assert r.t == pytest.approx(t) and r.d_z == pytest.approx(3.0)
    assert r.p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    assert r.ci95 == pytest.approx((3 - T_975_2 / math.sqrt(3), 3 + T_975_2 / math.sqrt(3)), rel=1e-3)
    assert r.ci90 == pytest.approx((3 - T_95_2 / math.sqrt(3), 3 + T_95_2 / math.sqrt(3)), rel=1e-3)


def test_paired_test_matches_scipy_on_random_data():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=7)
    mine, ref = stats.paired_test(a, b), scipy_stats.ttest_rel(a, b)
    assert mine.t == pytest.approx(ref.statistic) and mine.p == pytest.approx(ref.pvalue)
    # the intervals are scipy.stats' too: the 95 % CI and the TOST (90 %) interval of mean(a - b)
    assert mine.ci95 == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert mine.ci90 == pytest.approx(tuple(ref.confidence_interval(0.90)))
    d = a - b
    assert stats.summarize(d).half_width == pytest.approx(
        scipy_stats.t.ppf(0.975, d.size - 1) * scipy_stats.sem(d))


def test_paired_test_degenerate_and_short_cases():
    same = stats.paired_test([1.0, 2.0], [1.0, 2.0])
    assert same.p == 1.0 and same.t == 0.0
    shift = stats.paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])   # constant difference: no seed noise
    assert shift.p == 0.0 and shift.d_z == math.inf
    one = stats.paired_test([1.0], [0.0])
    assert one.n == 1 and math.isnan(one.p) and one.mean_diff == 1.0
    with pytest.raises(ValueError):
        stats.paired_test([1.0, 2.0], [1.0])


def test_equivalence_and_difference_beyond_margin_by_hand():
    # d = [0.1, 0.2, 0.0]: mean 0.1, sd 0.1; 90 % CI = 0.1 ± 2.920 * 0.1 / sqrt 3 = [-0.069, 0.269] inside ±1
    small = stats.paired_test([0.1, 0.2, 0.0], [0.0, 0.0, 0.0])
    assert small.ci90 == pytest.approx((0.1 - 0.1686, 0.1 + 0.1686), abs=1e-3)
    assert stats.equivalent(small, 1.0) and not stats.equivalent(small, 0.2)
    assert not stats.differs_beyond(small, 1.0)
    # d = [3, 3.2, 2.8]: 95 % CI = 3 ± 4.303 * 0.2 / sqrt 3 = [2.503, 3.497], entirely beyond +1
    big = stats.paired_test([3.0, 3.2, 2.8], [0.0, 0.0, 0.0])
    assert stats.differs_beyond(big, 1.0) and not stats.equivalent(big, 1.0)
    assert not stats.differs_beyond(big, 2.6)   # 2.503 < 2.6: not beyond that margin


def test_holm_against_a_hand_computed_case():
    # m = 4, sorted p = 0.01, 0.02, 0.03, 0.04 -> bounds 0.05/4 = 0.0125, 0.05/3 = 0.0167, 0.025, 0.05:
    # 0.01 <= 0.0125 rejected, 0.02 > 0.0167 stops; everything after is kept although 0.04 <= 0.05.
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == [False, True, False, False]
    # m = 3: 0.001 <= 0.0167, 0.02 <= 0.025, 0.04 <= 0.05: all three rejected (uncorrected and Bonferroni differ)
    assert stats.holm([0.04, 0.001, 0.02]) == [True, True, True]
    assert sum(stats.holm([0.04, 0.001, 0.02], alpha=0.05)) == 3
    assert [p < 0.05 / 3 for p in (0.04, 0.001, 0.02)] == [False, True, False]   # Bonferroni keeps two of them


def test_holm_edge_cases():
    assert stats.holm([]) == []
    assert stats.holm([float("nan"), 0.001]) == [False, True]
    assert stats.holm([0.049]) == [True] and stats.holm([0.051]) == [False]


def test_table_caption_counts_separated_pairs_after_holm(tmp_path):
    """Three rows, three pairs on Avg. First case p = 0.0033, 0.00008, 0.0057: all under Holm's bounds (0.05/3,
    0.025, 0.05), 3 of 3. Second case p = 0.0377, 0.00008, 0.0373: every pair has p < 0.05 uncorrected, but the
    second smallest misses 0.05/2, so Holm counts 1 of 3."""
    from benchmark import tables
    from test_tables import put, tables_store_results

    def caption(values):
        store = tmp_path / str(len(list(tmp_path.iterdir())))
        for method, per_seed in values.items():
            for seed, v in enumerate(per_seed):
                put(store, method, "t", seed, {"X": {"acc": v}})
        grid = {"name": "three", "seeds": [0, 1, 2], "methods": list(values), "tasks": ["t"],
                "table": {"columns": [{"task": "t", "direction": "X"}],
                          "rows": [{"method": m} for m in values] + [{"method": "z", "reference": True}]}}
        bt = tables.build(tables.parse_table(grid), tables_store_results(store))
        pvalues = [stats.paired_test(values[x], values[y]).p for x, y in (("a", "b"), ("a", "c"), ("b", "c"))]
        return bt.separated_pairs(), pvalues, tables.caption(bt)

    got, p, text = caption({"a": [60.0, 61.0, 62.0], "b": [55.0, 55.5, 57.5], "c": [50.0, 51.2, 51.9]})
    assert max(p) < 0.05 and got == (3, 3), (p, got)
    assert "Separated: 3 of 3 pairs of rows differ on Avg." in text and "Holm-corrected" in text
    got, p, text = caption({"a": [60.0, 61.0, 62.0], "b": [53.0, 57.0, 58.0], "c": [50.0, 51.2, 51.9]})
    assert max(p) < 0.05 and got == (1, 3), (p, got)
    assert "Separated: 1 of 3 pairs" in text
