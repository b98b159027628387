"""The bench harness's decision rules on synthetic per-run values, and hypotheses read as data.

A clear win, a clear loss and a tie under both rules: the pre-registered range rule and the
paired bootstrap interval of the mean difference.
"""

from __future__ import annotations

import json

import pytest

from bench.harness import (
    HOLDS,
    REVERSED,
    TIE,
    Bootstrap,
    decide_bootstrap,
    decide_range,
    judge,
    load_hypotheses,
    markdown_table,
)

# Ten runs per arm, paired by (task seed, training seed).
WEAK = [0.0, 0.1, 0.05, 0.2, 0.0, 0.15, 0.1, 0.05, 0.0, 0.1]
STRONG = [0.9, 0.95, 1.0, 0.85, 0.9, 1.0, 0.95, 0.9, 0.85, 1.0]
NOISY_A = [0.0, 0.75, 0.1, 0.9, 0.2, 0.6, 0.0, 0.8, 0.3, 0.5]
NOISY_B = [0.7, 0.1, 0.8, 0.2, 0.5, 0.3, 0.9, 0.0, 0.4, 0.45]


def test_a_clear_win_holds_under_both_rules():
    assert decide_range(STRONG, WEAK) == HOLDS
    d = decide_bootstrap(STRONG, WEAK)
    assert d["verdict"] == HOLDS and d["ci"][0] > 0.7 and d["n"] == [10, 10]


def test_a_clear_loss_is_rejected_under_both_rules():
    assert decide_range(WEAK, STRONG) == REVERSED
    assert decide_bootstrap(WEAK, STRONG)["verdict"] == REVERSED


def test_a_tie_is_not_distinguishable_under_both_rules():
    assert decide_range(NOISY_A, NOISY_B) == TIE
    d = decide_bootstrap(NOISY_A, NOISY_B)
    assert d["verdict"] == TIE and d["ci"][0] < 0 < d["ci"][1]
    same = decide_bootstrap([0.5] * 10, [0.5] * 10)  # every difference exactly 0
    assert same["verdict"] == TIE and same["ci"] == [0.0, 0.0]


def test_the_bootstrap_rule_has_power_the_range_rule_lacks():
    """A consistent paired gain of ~0.15 over wide per-run spreads: every paired difference is
    positive, which the range rule cannot see."""
    worse = [0.0, 0.3, 0.6, 0.1, 0.5, 0.2, 0.7, 0.4, 0.0, 0.3]
    better = [w + 0.15 + 0.01 * i for i, w in enumerate(worse)]
    assert decide_range(better, worse) == TIE
    assert decide_bootstrap(better, worse)["verdict"] == HOLDS
    # Unpaired, the same values are far less certain.
    assert decide_bootstrap(better, worse, paired=False)["verdict"] == TIE


def test_the_bootstrap_is_seeded_and_refuses_unequal_pairs():
    assert Bootstrap().interval(NOISY_A, NOISY_B, True) == \
        Bootstrap().interval(NOISY_A, NOISY_B, True)
    with pytest.raises(ValueError):
        Bootstrap().interval([1.0, 2.0], [1.0], True)


def test_hypotheses_are_data_and_fewer_compares_the_negated_values(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps([
        {"name": "win", "better": "a", "worse": "b", "metric": "S"},
        {"name": "cheaper", "better": "a", "worse": "b", "metric": "tokens",
         "direction": "fewer"},
        {"name": "absent arm", "better": "a", "worse": "c", "metric": "S"}]))
    hyps = load_hypotheses(path)
    table = {"a": {"S": STRONG, "tokens": [100.0 + i for i in range(10)]},
             "b": {"S": WEAK, "tokens": [900.0 + i for i in range(10)]}}

    def values(arm, metric):
        if arm not in table:
            return None
        return {(0, i): v for i, v in enumerate(table[arm][metric])}

    out = judge(hyps, values)
    assert set(out) == {"win", "cheaper"}  # a hypothesis without both arms is not judged
    assert out["win"]["range_rule"] == HOLDS and out["win"]["bootstrap"]["paired"]
    assert out["cheaper"]["range_rule"] == HOLDS
    assert out["cheaper"]["bootstrap"]["verdict"] == HOLDS
    # an arm with half the runs pairs on its own runs; runs that do not pair are resampled apart
    half = judge(hyps[:1], lambda arm, metric: {k: v for k, v in values(arm, metric).items()
                                                if arm == "a" or k[1] < 5})
    assert half["win"]["runs"] == [10, 5] and half["win"]["bootstrap"]["n"] == [5, 5]
    assert half["win"]["bootstrap"]["paired"]
    apart = judge(hyps[:1], lambda arm, metric: {(arm, k): v for k, v in
                                                 values(arm, metric).items()})
    assert not apart["win"]["bootstrap"]["paired"] and apart["win"]["bootstrap"]["n"] == [10, 10]
    path.write_text(json.dumps([{"name": "x", "better": "a", "worse": "b", "metric": "S",
                                 "direction": "lower"}]))
    with pytest.raises(ValueError, match="direction must be higher or fewer"):
        load_hypotheses(path)


def test_the_committed_hypotheses_file_loads():
    from bench.organism import HYPOTHESES

    names = [h.name for h in load_hypotheses(HYPOTHESES)]
    assert "H1 (S)" in names and "H1 (held-out S)" in names and len(names) == len(set(names))


def test_markdown_table_aligns_numeric_columns():
    assert markdown_table(["arm", "S"], [["pope", "0.5"]], [False, True]) == [
        "| arm | S |", "|---|---:|", "| pope | 0.5 |"]
