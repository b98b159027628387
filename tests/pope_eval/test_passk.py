"""pass@k estimator against brute force, stability at n = 10,000, maj@k and bootstrap CIs."""

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pope_eval.errors import ConfigError
from pope_eval.passk import bootstrap_ci, default_ks, maj_at_k, pass_at_k, summarize


def brute_force(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_matches_enumeration_of_all_k_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_stable_up_to_n_10000_against_exact_fractions(nck):
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


def test_known_values_and_edges():
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-12)
    assert pass_at_k(10_000, 0, 5000) == 0.0
    assert pass_at_k(10_000, 1, 10_000) == 1.0
    assert pass_at_k(10_000, 5000, 2) == pytest.approx(1 - (5000 * 4999) / (10_000 * 9999))


def test_k_larger_than_n_says_so():
    with pytest.raises(ConfigError, match="k = 9 is larger than the n = 8"):
        pass_at_k(8, 1, 9)
    with pytest.raises(ConfigError):
        pass_at_k(8, 9, 1)


def test_default_ks():
    assert default_ks(16) == [1, 2, 4, 8, 16]
    assert default_ks(12) == [1, 2, 4, 8, 12]
    assert default_ks(1) == [1]


def test_maj_at_k_votes_over_the_first_k_with_first_seen_tie_break():
    answers = [["3", "5", "5", None], ["1", "2", None, None], [None, None, None, None]]
    correct = [[False, True, True, False], [True, False, False, False], [False] * 4]
    assert maj_at_k(answers, correct, 4) == pytest.approx(2 / 3)  # "5" wins; tie -> "1"
    assert maj_at_k(answers, correct, 1) == pytest.approx(1 / 3)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [0, 1, 1, 0, 1, 0.5, 0.25, 1]
    lo, hi = bootstrap_ci(values, seed=3)
    assert (lo, hi) == bootstrap_ci(values, seed=3)
    assert lo <= sum(values) / len(values) <= hi and lo < hi


def test_summarize_reports_estimate_and_ci_per_k():
    s = summarize([(4, 0), (4, 1), (4, 4)], [1, 4], n_boot=200)
    assert s["1"]["estimate"] == pytest.approx((0 + 0.25 + 1) / 3)
    assert s["4"]["estimate"] == pytest.approx(2 / 3)
    assert s["4"]["ci_low"] <= s["4"]["estimate"] <= s["4"]["ci_high"]
