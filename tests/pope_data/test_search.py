"""Search strategies against a scripted engine with known answers; bisect == sweep on monotone curves;
curation with early stopping finds the same hard set as all-at-once for any sample pattern."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pope_data.records import ProbeOutcome
from pope_data.search import (
    CURATE_SCHEDULES,
    DEFAULT_CURATE_SCHEDULE,
    DEFAULT_STRATEGY,
    make_strategy,
    strategy_names,
)
from pope_eval.errors import ConfigError


def drive(strategy, solves, log=None):
    """Scripted engine: sample j at prefix i is correct iff solves(i, j)."""
    drawn = {}
    while True:
        probes = strategy.next_probes()
        if not probes:
            assert strategy.done
            return strategy.result()
        for pr in probes:
            start = drawn.get(pr.prefix_segments, 0)
            # The probe names the same position in the prefix's sample sequence as the engine.
            assert pr.offset == start
            correct = sum(solves(pr.prefix_segments, j) for j in range(start, start + pr.n))
            drawn[pr.prefix_segments] = start + pr.n
            if log is not None:
                log.append((pr.prefix_segments, pr.wave, pr.n, correct))
            strategy.update(ProbeOutcome(pr, pr.n, correct, 10 * pr.n))


def mk(name, m=10, n=8, **kw):
    return make_strategy(name, problem_id="p", min_prefix=1, max_prefix=m, n=n, **kw)


@pytest.mark.parametrize("name", strategy_names())
@pytest.mark.parametrize("i_star", [1, 4, 10])
def test_exact_probes_find_the_threshold(name, i_star):
    r = drive(mk(name), lambda i, j: i >= i_star)
    assert (r.i_star, r.fallback) == (i_star, False)
    assert r.samples > 0 and r.tokens == 10 * r.samples


@pytest.mark.parametrize("name", strategy_names())
def test_nothing_works_means_fallback(name):
    r = drive(mk(name), lambda i, j: False)
    assert r.i_star is None and r.fallback


def test_sweep_stops_at_first_success_and_costs_one_probe_per_prefix():
    log = []
    r = drive(mk("sweep"), lambda i, j: i >= 3, log)
    assert [x[0] for x in log] == [1, 2, 3] and r.probes == 3 and r.samples == 24


def test_sequential_sampling_stops_at_the_first_correct_wave():
    log = []
    # At prefix 2 only sample 5 is correct: waves of 2 stop after the third wave (6 samples).
    r = drive(mk("sweep-seq", m=3, wave_size=2), lambda i, j: i == 2 and j == 5, log)
    assert r.i_star == 2
    assert log == [(1, 0, 2, 0), (1, 1, 2, 0), (1, 2, 2, 0), (1, 3, 2, 0),
                   (2, 0, 2, 0), (2, 1, 2, 0), (2, 2, 2, 1)]
    assert r.samples == 14


def test_bisect_probes_the_longest_prefix_first_and_few_overall():
    log = []
    r = drive(mk("bisect", m=32), lambda i, j: i >= 20, log)
    assert log[0][0] == 32 and r.i_star == 20 and r.probes <= 7


def test_strategies_are_deterministic_and_replayable():
    solves = lambda i, j: i >= 6 and j % 3 == 2  # noqa: E731
    a, b = [], []
    drive(mk(DEFAULT_STRATEGY), solves, a)
    drive(mk(DEFAULT_STRATEGY), solves, b)
    assert a == b
    # Replaying recorded outcomes into a fresh machine reproduces its next probe (resume).
    s = mk(DEFAULT_STRATEGY)
    for prefix, wave, n, correct in a[:3]:
        (pr,) = s.next_probes()
        assert (pr.prefix_segments, pr.wave, pr.n) == (prefix, wave, n)
        s.update(ProbeOutcome(pr, n, correct, 0))
    assert s.next_probes()[0].prefix_segments == a[3][0]


def test_protocol_errors():
    s = mk("sweep")
    (pr,) = s.next_probes()
    assert s.next_probes() == []  # one probe in flight at a time
    with pytest.raises(ConfigError, match="not finished"):
        s.result()
    other = mk("sweep", m=5).next_probes()[0]
    s.update(ProbeOutcome(pr, 8, 0, 0))
    with pytest.raises(ConfigError, match="unexpected outcome"):
        s.update(ProbeOutcome(other, 8, 0, 0))
    with pytest.raises(ConfigError, match="unknown"):
        mk("galloping")
    with pytest.raises(ConfigError, match="max_prefix"):
        make_strategy("sweep", problem_id="p", min_prefix=3, max_prefix=2, n=4)


@settings(max_examples=300, deadline=None)
@given(m=st.integers(1, 40), t=st.integers(1, 41), n=st.integers(1, 8), wave=st.integers(1, 8))
def test_bisect_equals_sweep_on_any_monotone_curve_with_exact_probes(m, t, n, wave):
    solves = lambda i, j: i >= t  # noqa: E731  (t > m: unsolvable)
    for seq in ("", "-seq"):
        a = drive(mk("sweep" + seq, m=m, n=n, wave_size=wave), solves)
        b = drive(mk("bisect" + seq, m=m, n=n, wave_size=wave), solves)
        assert a.i_star == b.i_star == (t if t <= m else None)


def curate(k, schedule=None, wave=None):
    return make_strategy("curate", problem_id="p", min_prefix=0, max_prefix=0, n=k,
                         wave_size=wave, schedule=schedule)


@pytest.mark.parametrize(("schedule", "wave", "sizes"), [
    ("growing", 32, [1, 1, 2, 4, 8, 16, 32, 32, 32]),
    ("growing", 16, [1, 1, 2, 4, 8] + [16] * 7),
    ("growing", 128, [1, 1, 2, 4, 8, 16, 32, 64]),
    ("fixed", 16, [16] * 8),
    ("fixed", 48, [48, 48, 32]),
    ("all", 16, [128]),
])
def test_curate_wave_schedules_on_a_hard_problem(schedule, wave, sizes):
    log = []
    r = drive(curate(128, schedule, wave), lambda i, j: False, log)
    assert [x[2] for x in log] == sizes and [x[1] for x in log] == list(range(len(sizes)))
    assert r.fallback and r.i_star is None and r.samples == 128


def test_curate_stops_an_easy_problem_at_its_first_correct_wave():
    log = []
    # Sample 5 is the first correct one: growing waves 1, 1, 2, 4 cover samples 0..7.
    r = drive(curate(128), lambda i, j: j >= 5, log)
    assert DEFAULT_CURATE_SCHEDULE == "growing"
    assert [x[2] for x in log] == [1, 1, 2, 4] and (r.i_star, r.samples) == (0, 8)
    # "all" keeps the per-problem pass rate: every sample is drawn and counted.
    log = []
    r = drive(curate(128, "all"), lambda i, j: j >= 5, log)
    assert log == [(0, 0, 128, 123)] and r.samples == 128


def test_once_still_draws_all_n_for_the_oracle_stage():
    log = []
    drive(make_strategy("once", problem_id="p", min_prefix=0, max_prefix=0, n=8),
          lambda i, j: True, log)
    assert log == [(0, 0, 8, 8)]


def test_curate_errors_and_names():
    assert "curate" not in strategy_names() and "once" not in strategy_names()
    with pytest.raises(ConfigError, match="unknown 'doubling'"):
        curate(8, "doubling")
    with pytest.raises(ConfigError, match="curate' only"):
        mk("bisect-seq", schedule="growing")
    with pytest.raises(ConfigError, match="unknown 'curate-seq'"):
        make_strategy("curate-seq", problem_id="p", min_prefix=0, max_prefix=0, n=8)


@settings(max_examples=400, deadline=None)
@given(pattern=st.lists(st.booleans(), min_size=1, max_size=160),
       schedule=st.sampled_from(sorted(CURATE_SCHEDULES)), wave=st.integers(1, 40))
def test_curate_hard_set_is_identical_to_all_at_once_for_any_schedule(pattern, schedule, wave):
    """Every probe continues the same k-sample sequence (offset), so the samples drawn are a
    prefix of it: hard iff no sample of k is correct, whatever the schedule."""
    k = len(pattern)
    log = []
    r = drive(curate(k, schedule, wave), lambda i, j: pattern[j], log)
    assert r.fallback == (not any(pattern)) == (r.i_star is None)
    sizes = [x[2] for x in log]
    assert r.samples == sum(sizes) <= k
    if any(pattern):
        first = pattern.index(True)
        # Early stop: the last wave holds the first correct sample, none after it is drawn.
        assert r.samples - sizes[-1] <= first < r.samples
    else:
        assert r.samples == k
    if schedule == "all":
        assert sizes == [k]


def test_a_strategy_name_is_registered_once():
    from pope_data.search import STRATEGIES, Sweep

    with pytest.raises(ValueError, match="'sweep' is already registered"):
        STRATEGIES.add("sweep", Sweep)
    assert STRATEGIES.names() == ["sweep", "bisect", "once", "curate"]


@pytest.mark.parametrize("name", strategy_names())
@pytest.mark.parametrize("m", [1, 2, 5, 10, 31])
def test_each_strategy_probes_at_most_the_prefixes_it_declares(name, m):
    from pope_data.search import strategy_class

    bound = strategy_class(name).max_probes(m)
    worst = 0
    for t in range(1, m + 2):  # t = m + 1: no prefix works
        log = []
        drive(mk(name, m=m), lambda i, j, t=t: i >= t, log)
        worst = max(worst, len({x[0] for x in log}))
    assert worst <= bound
    if name.startswith("sweep"):
        assert worst == bound == m  # a sweep of an unsolvable problem probes every prefix
    assert strategy_class(name).max_probes(0) == 0


def test_the_bill_asks_the_strategy_class_for_its_bound(monkeypatch):
    from pope_data.config import BuildConfig
    from pope_data.cost import plan_cost
    from pope_data.search import Bisect

    config = BuildConfig(strategy="bisect-seq")
    assert plan_cost(config, 2, [8, 1]).probes_per_problem == 5  # 8, 5, 3, 2, 1 if all work
    assert plan_cost(BuildConfig(strategy="sweep"), 2, [8, 1]).probes_per_problem == 8
    monkeypatch.setattr(Bisect, "max_probes", classmethod(lambda cls, c: 7 * c))
    assert plan_cost(config, 2, [8, 1]).probes_per_problem == 56
