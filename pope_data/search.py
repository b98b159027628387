"""Search strategies as pure state machines: which prefix to probe next, with how many samples.

`s = make_strategy("bisect-seq", problem_id=..., min_prefix=1, max_prefix=m, n=8, wave_size=2)`
(or `make_strategy("curate", ..., n=k)` for the hard set); loop `s.next_probes()` /
`s.update(outcome)` until `s.done`, then `s.result()`. No I/O, no clocks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

from pope_data.records import Probe, ProbeOutcome, SearchResult
from pope_eval.errors import ConfigError
from pope_eval.registry import Registry


class Strategy(Protocol):
    problem_id: str

    def next_probes(self) -> list[Probe]: ...

    def update(self, outcome: ProbeOutcome) -> None: ...

    @property
    def done(self) -> bool: ...

    def result(self) -> SearchResult: ...

    @classmethod
    def max_probes(cls, candidates: int) -> int:
        """Most prefixes this strategy probes on a problem with `candidates` prefixes."""
        ...


@dataclass
class _Prefix:
    """What is known about one candidate prefix length."""

    drawn: int = 0
    correct: int = 0
    waves: int = 0

    def resolved(self, n: int) -> bool:
        return self.correct > 0 or self.drawn >= n

    @property
    def success(self) -> bool:
        return self.correct > 0


@dataclass
class _Search:
    """Shared machinery: per-prefix tallies, one probe in flight, sequential waves.

    A prefix is decided as soon as one sample is correct (success) or n samples were all wrong
    (failure). With `wave_size < n`, samples are drawn in waves and the prefix stops at the first
    wave holding a correct sample: "at least one correct of n" needs nothing more.
    """

    problem_id: str
    min_prefix: int
    max_prefix: int
    n: int
    wave_size: int | None = None
    seed: int = 0
    prefixes: dict[int, _Prefix] = field(default_factory=dict)
    _pending: Probe | None = None
    _done: bool = False
    _i_star: int | None = None
    probes: int = 0
    samples: int = 0
    tokens: int = 0

    def __post_init__(self) -> None:
        if self.min_prefix < 0:
            raise ConfigError(f"search: min_prefix must be >= 0, got {self.min_prefix}")
        if self.max_prefix < self.min_prefix:
            raise ConfigError(
                f"search: max_prefix ({self.max_prefix}) < min_prefix ({self.min_prefix}) "
                f"for problem {self.problem_id}")
        if self.n < 1:
            raise ConfigError(f"search: n must be >= 1, got {self.n}")
        if self.wave_size is None or self.wave_size > self.n:
            self.wave_size = self.n
        if self.wave_size < 1:
            raise ConfigError(f"search: wave_size must be >= 1, got {self.wave_size}")

    # -- protocol ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done

    def next_probes(self) -> list[Probe]:
        if self._done or self._pending is not None:
            return []
        i = self._choose()
        if i is None:
            self._done = True
            return []
        st = self.prefixes.setdefault(i, _Prefix())
        size = min(self._wave_size(st), self.n - st.drawn)
        self._pending = Probe(self.problem_id, i, size, st.waves, st.drawn)
        return [self._pending]

    def update(self, outcome: ProbeOutcome) -> None:
        probe = outcome.probe
        if self._pending is None or probe.key != self._pending.key:
            raise ConfigError(f"search: unexpected outcome for {probe.key} (problem "
                              f"{self.problem_id} awaits {self._pending and self._pending.key})")
        self._pending = None
        st = self.prefixes[probe.prefix_segments]
        st.drawn += outcome.samples
        st.correct += outcome.correct
        st.waves += 1
        self.probes += 1
        self.samples += outcome.samples
        self.tokens += outcome.tokens

    def result(self) -> SearchResult:
        if not self._done:
            raise ConfigError(f"search: problem {self.problem_id} is not finished")
        return SearchResult(self.problem_id, self._i_star, self._i_star is None,
                            self.probes, self.samples, self.tokens)

    # -- helpers ----------------------------------------------------------------------------
    def _state(self, i: int) -> _Prefix:
        return self.prefixes.get(i, _Prefix())

    def _wave_size(self, st: _Prefix) -> int:
        return self.wave_size

    def _decide(self, i: int | None) -> None:
        self._i_star = i

    def _choose(self) -> int | None:
        raise NotImplementedError

    @classmethod
    def max_probes(cls, candidates: int) -> int:
        raise NotImplementedError


STRATEGIES: Registry[type[_Search]] = Registry("search strategy", option="--strategy")


@STRATEGIES.register("sweep")
class Sweep(_Search):
    """Shortest first: probe min..max in order, stop at the first prefix with a correct sample."""

    @classmethod
    def max_probes(cls, candidates: int) -> int:
        return max(candidates, 0)

    def _choose(self) -> int | None:
        for i in range(self.min_prefix, self.max_prefix + 1):
            st = self._state(i)
            if st.success:
                self._decide(i)
                return None
            if not st.resolved(self.n):
                return i
        self._decide(None)
        return None


@STRATEGIES.register("bisect")
class Bisect(_Search):
    """Binary search for the shortest solving prefix, assuming success grows with i.

    The longest candidate is probed first: if even it fails, no prefix is taken to work
    (fallback) after one probe instead of m. Then the gap between the longest known failure
    below the shortest known success and that success is halved until it closes.
    """

    split: float = 0.6

    @classmethod
    def max_probes(cls, candidates: int) -> int:
        # The longest candidate, then the most probes that close the gap below it.
        return 1 + _gap_probes(candidates, cls.split) if candidates > 0 else 0

    def _choose(self) -> int | None:
        hi = self.max_prefix
        successes = [i for i, st in self.prefixes.items() if st.success]
        if not successes:
            top = self._state(hi)
            if top.resolved(self.n):
                self._decide(None)
                return None
            return hi
        h = min(successes)
        fails = [i for i, st in self.prefixes.items()
                 if i < h and st.resolved(self.n) and not st.success]
        lo = max(fails) if fails else self.min_prefix - 1
        # A prefix still mid-waves is finished before a new midpoint is chosen.
        open_ = [i for i, st in self.prefixes.items()
                 if lo < i < h and not st.resolved(self.n) and st.drawn > 0]
        if open_:
            return open_[0]
        if h - lo <= 1:
            self._decide(h)
            return None
        # Probe above the midpoint: a failing probe costs n long samples, a succeeding one
        # (with waves) about 1/p short ones, so splits that fail less often are cheaper.
        return min(h - 1, max(lo + 1, lo + round((h - lo) * self.split)))


@functools.cache
def _gap_probes(gap: int, split: float) -> int:
    """Most probes Bisect needs to close `gap` = shortest success - longest failure below it:
    it probes `split` of the way up, a success leaves the part below, a failure the part above."""
    if gap <= 1:
        return 0
    d = min(gap - 1, max(1, round(gap * split)))
    return 1 + max(_gap_probes(d, split), _gap_probes(gap - d, split))


@STRATEGIES.register("once")
class Once(_Search):
    """A single probe of n samples at `min_prefix`: the curate stage (k unguided samples,
    min_prefix = max_prefix = 0). i* = min_prefix when any sample is correct."""

    @classmethod
    def max_probes(cls, candidates: int) -> int:
        return 1  # its one prefix, whatever the candidates

    def _choose(self) -> int | None:
        st = self._state(self.min_prefix)
        if not st.resolved(self.n):
            return self.min_prefix
        self._decide(self.min_prefix if st.success else None)
        return None


CURATE_SCHEDULES: dict[str, str] = {
    "growing": "waves doubling the samples drawn (1, 1, 2, 4, ... up to the wave size), stop "
               "at the first correct",
    "fixed": "waves of the wave size, stop at the first correct",
    "all": "all k samples at once: exact per-problem pass rates, no saving",
}
# Chosen with bench/curate_cost.py (k = 128, 30% truly hard, 2000 problems): growing waves capped
# at 32 cost 1.13x the floor and 0.47x all-at-once in tokens in 9 sequential rounds; fixed 16
# costs 1.23x (0.52x) in 8; caps 8/16 save <1% more tokens but need 19/12 rounds, which cost
# latency where too few problems are left to fill the engine's batch.
DEFAULT_CURATE_SCHEDULE = "growing"
DEFAULT_CURATE_WAVE_SIZE = 32


@STRATEGIES.register("curate")
@dataclass
class Curate(Once):
    """The curate stage: k unguided samples at `min_prefix`, hard iff none is correct.

    Samples are drawn in waves and the problem stops at the wave holding its first correct
    sample: one correct sample proves the problem is not hard, so an easy problem costs a few
    samples instead of k, and only hard problems pay for all k. Every probe carries `offset`
    (samples drawn before it), so the samples drawn are a prefix of the same k-sample sequence
    whatever the schedule, and the hard set equals the all-at-once hard set for the same seeds.

    Trade-off: with early stopping the correct count of an easy problem is a lower bound (it
    stops at the first correct wave), not its pass rate out of k. Use schedule "all" where
    per-problem pass rates matter (e.g. an easy set selected by a pass-rate band); it costs k
    samples for every problem. `wave_size` is the fixed wave, or the cap of growing waves; more
    waves mean more sequential engine rounds (latency once the batch can no longer be filled).
    """

    schedule: str = DEFAULT_CURATE_SCHEDULE

    def __post_init__(self) -> None:
        if self.schedule not in CURATE_SCHEDULES:
            raise ConfigError(f"curate schedule: unknown {self.schedule!r}; choose one of "
                              f"{', '.join(CURATE_SCHEDULES)}")
        if self.schedule == "all":
            self.wave_size = self.n
        super().__post_init__()

    def _wave_size(self, st: _Prefix) -> int:
        if self.schedule == "growing":
            # Double the samples drawn so far: totals 1, 2, 4, ... meet a power-of-two k
            # exactly (no last wave of a few samples), and an easy problem never draws more
            # than twice the samples up to its first correct one.
            return min(self.wave_size, max(1, st.drawn))
        return self.wave_size


# Single-prefix strategies for the unguided stages, not prefix searches (not in strategy_names).
_UNGUIDED = ("once", "curate")
SEQUENTIAL_SUFFIX = "-seq"
DEFAULT_STRATEGY = "bisect-seq"
DEFAULT_WAVE_SIZE = 2


def strategy_names() -> list[str]:
    return [name + suffix for name in STRATEGIES if name not in _UNGUIDED
            for suffix in ("", SEQUENTIAL_SUFFIX)]


def strategy_class(name: str) -> type[_Search]:
    """The class behind a strategy name ('NAME' or 'NAME-seq'); unknown names are a ConfigError
    naming the choices."""
    base = name.removesuffix(SEQUENTIAL_SUFFIX)
    if base not in STRATEGIES or (base == "curate" and base != name):
        raise ConfigError(f"search strategy: unknown {name!r}; choose one of "
                          f"{', '.join(strategy_names() + list(_UNGUIDED))}")
    return STRATEGIES[base]


def make_strategy(name: str, *, problem_id: str, min_prefix: int, max_prefix: int, n: int,
                  wave_size: int | None = None, seed: int = 0,
                  schedule: str | None = None) -> _Search:
    """Build a strategy. 'NAME-seq' draws samples in waves (default wave size 2) and stops a
    probe at its first correct sample; plain 'NAME' draws all n at once ('once': all n samples,
    as the oracle stage wants). 'curate' takes `schedule` (one of CURATE_SCHEDULES, default
    DEFAULT_CURATE_SCHEDULE) and `wave_size` (default DEFAULT_CURATE_WAVE_SIZE)."""
    cls = strategy_class(name)
    if cls is Curate:
        return Curate(problem_id=problem_id, min_prefix=min_prefix, max_prefix=max_prefix, n=n,
                      wave_size=wave_size or DEFAULT_CURATE_WAVE_SIZE, seed=seed,
                      schedule=schedule or DEFAULT_CURATE_SCHEDULE)
    if schedule is not None:
        raise ConfigError(f"search strategy {name!r}: schedule applies to 'curate' only")
    if name.endswith(SEQUENTIAL_SUFFIX):
        wave_size = wave_size or DEFAULT_WAVE_SIZE
    else:
        wave_size = n
    return cls(problem_id=problem_id, min_prefix=min_prefix, max_prefix=max_prefix, n=n,
               wave_size=wave_size, seed=seed)
