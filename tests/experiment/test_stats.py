"""Every statistic of deploy_model.experiment against scipy.stats / statsmodels on the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)
from statsmodels.stats.weightstats import ttest_ind

from deploy_model.experiment.distributions import (
    incomplete_beta,
    normal_ppf,
    normal_sf,
    t_ppf,
    t_sf,
)
from deploy_model.experiment.sample_size import estimate, power_of
from deploy_model.experiment.stats import average_ranks, mann_whitney, two_proportions, welch


@pytest.mark.parametrize("df", [1, 2.5, 9, 57.3, 4000])
def test_t_distribution_matches_scipy(df: float) -> None:
    for t in (-12.0, -2.2, -0.3, 0.0, 0.9, 1.96, 4.0, 40.0):
        assert t_sf(t, df) == pytest.approx(sps.t.sf(t, df), rel=1e-9, abs=1e-300)
    for p in (1e-6, 0.025, 0.3, 0.5, 0.8, 0.975, 0.999999):
        assert t_ppf(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-8, abs=1e-10)


def test_normal_and_beta_match_scipy() -> None:
    for z in (-5.0, -1.0, 0.0, 1.5, 8.0, 30.0):
        assert normal_sf(z) == pytest.approx(sps.norm.sf(z), rel=1e-12)
    for p in (1e-9, 0.05, 0.5, 0.975):
        assert normal_ppf(p) == pytest.approx(sps.norm.ppf(p), rel=1e-9)
    for a, b, x in ((0.5, 0.5, 0.1), (3, 40, 0.07), (120, 0.5, 0.99), (2.5, 2.5, 0.5)):
        assert incomplete_beta(a, b, x) == pytest.approx(sps.beta.cdf(x, a, b), rel=1e-10)


@pytest.mark.parametrize(("xa", "na", "xb", "nb"), [(450, 500, 470, 500), (30, 1000, 52, 950), (5, 40, 9, 41), (0, 60, 3, 70)])
def test_two_proportions_match_statsmodels(xa: int, na: int, xb: int, nb: int) -> None:
    ours = two_proportions(xa, na, xb, nb, alpha=0.05)
    z, p = proportions_ztest([xb, xa], [nb, na])  # pooled variance, B - A
    assert ours.statistic == pytest.approx(z, rel=1e-10)
    assert ours.p_value == pytest.approx(p, rel=1e-9)
    low, high = confint_proportions_2indep(xb, nb, xa, na, method="wald", compare="diff", alpha=0.05)
    assert (ours.ci_low, ours.ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert ours.effect == pytest.approx(xb / nb - xa / na)


@pytest.mark.parametrize("seed", range(4))
def test_welch_matches_scipy_and_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(1.0, 1.0, 30 + 20 * seed)
    b = rng.normal(1.3, 2.5, 25 + 7 * seed)
    ours = welch(a, b, alpha=0.05)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    t, p, _df = ttest_ind(b, a, usevar="unequal")
    assert ours.statistic == pytest.approx(t, rel=1e-10)
    assert ours.p_value == pytest.approx(p, rel=1e-8)
    ci = ref.confidence_interval(0.95)
    assert (ours.ci_low, ours.ci_high) == (pytest.approx(ci.low, rel=1e-8), pytest.approx(ci.high, rel=1e-8))


@pytest.mark.parametrize("seed", range(4))
def test_mann_whitney_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Rounded latencies: many ties, as millisecond-resolution timings have.
    a = np.round(rng.lognormal(3.0, 0.4, 40 + 30 * seed), 0)
    b = np.round(rng.lognormal(3.1 + 0.05 * seed, 0.4, 35 + 11 * seed), 0)
    ours = mann_whitney(a, b)
    ref = sps.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.effect == pytest.approx(np.median(b) - np.median(a))


def test_average_ranks_match_scipy() -> None:
    values = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 7.0])
    ranks, ties = average_ranks(values)
    assert ranks.tolist() == sps.rankdata(values).tolist()
    assert sorted(ties.tolist()) == [1, 1, 2, 3]


@pytest.mark.parametrize(("baseline", "mde", "split"), [(0.9, 0.02, 0.5), (0.9, -0.03, 0.1), (0.2, 0.05, 0.3)])
def test_rate_sample_size_matches_statsmodels_power_solver(baseline: float, mde: float, split: float) -> None:
    ratio = split / (1 - split)
    size = estimate(traffic_rps=20, mde=mde, baseline=baseline, split=split, alpha=0.05, power=0.8)
    effect = proportion_effectsize(baseline + mde, baseline)
    assert size.effect_size == pytest.approx(effect, rel=1e-12)
    n1 = NormalIndPower().solve_power(effect_size=abs(effect), alpha=0.05, power=0.8, ratio=ratio)
    assert size.n_a == int(np.ceil(n1))
    assert size.n_b == int(np.ceil(ratio * n1))
    assert power_of(effect, size.n_a, ratio, 0.05) >= 0.8
    assert NormalIndPower().power(effect_size=abs(effect), nobs1=size.n_a, alpha=0.05, ratio=ratio) == pytest.approx(
        power_of(effect, size.n_a, ratio, 0.05), rel=1e-9)
    assert size.duration_seconds == pytest.approx(size.total_requests / 20)
    assert size.total_requests * split >= size.n_b - 1 and size.total_requests * (1 - split) >= size.n_a - 1


def test_mean_sample_size_matches_statsmodels() -> None:
    from statsmodels.stats.power import zt_ind_solve_power

    size = estimate(traffic_rps=2, mde=0.5, stdev=4.0, split=0.5, alpha=0.01, power=0.9, labelled_fraction=0.25)
    n1 = zt_ind_solve_power(effect_size=0.5 / 4.0, alpha=0.01, power=0.9, ratio=1.0)
    assert size.n_a == int(np.ceil(n1)) == size.n_b
    # Only a quarter of the requests are labelled: four times the duration.
    assert size.duration_seconds == pytest.approx(size.total_requests / (2 * 0.25))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"baseline": 0.9, "mde": 0.2}, r"baseline \+ mde must stay in \(0, 1\)"),
    ({"baseline": 0.9, "stdev": 1.0, "mde": 0.01}, "one of them"),
    ({"baseline": 0.5, "mde": 0.0}, "non-zero"),
    ({"baseline": 0.5, "mde": 0.1, "split": 1.0}, "split"),
])
def test_bad_sizing_inputs_are_refused_by_name(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        estimate(traffic_rps=1, **kwargs)
