"""Prefix-search strategies as pure state machines: which prefix to probe next, with how many samples.

`s = make_strategy("bisect-seq", problem_id=..., min_prefix=1, max_prefix=m, n=8, wave_size=2)`;
loop `s.next_probes()` / `s.update(outcome)` until `s.done`, then `s.result()`. No I/O, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pope_data.records import Probe, ProbeOutcome, SearchResult
from pope_eval.errors import ConfigError


class Strategy(Protocol):
    problem_id: str

    def next_probes(self) -> list[Probe]: ...

    def update(self, outcome: ProbeOutcome) -> None: ...

    @property
    def done(self) -> bool: ...

    def result(self) -> SearchResult: ...


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
        size = min(self.wave_size, self.n - st.drawn)
        self._pending = Probe(self.problem_id, i, size, st.waves)
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

    def _decide(self, i: int | None) -> None:
        self._i_star = i

    def _choose(self) -> int | None:
        raise NotImplementedError


class Sweep(_Search):
    """Shortest first: probe min..max in order, stop at the first prefix with a correct sample."""

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


class Bisect(_Search):
    """Binary search for the shortest solving prefix, assuming success grows with i.

    The longest candidate is probed first: if even it fails, no prefix is taken to work
    (fallback) after one probe instead of m. Then the gap between the longest known failure
    below the shortest known success and that success is halved until it closes.
    """

    split: float = 0.6

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


class Once(_Search):
    """A single probe of n samples at `min_prefix`: the curate stage (k unguided samples,
    min_prefix = max_prefix = 0). i* = min_prefix when any sample is correct."""

    def _choose(self) -> int | None:
        st = self._state(self.min_prefix)
        if not st.resolved(self.n):
            return self.min_prefix
        self._decide(self.min_prefix if st.success else None)
        return None


STRATEGIES: dict[str, type[_Search]] = {"sweep": Sweep, "bisect": Bisect, "once": Once}
SEQUENTIAL_SUFFIX = "-seq"
DEFAULT_STRATEGY = "bisect-seq"
DEFAULT_WAVE_SIZE = 2


def strategy_names() -> list[str]:
    return [name + suffix for name in STRATEGIES if name != "once"
            for suffix in ("", SEQUENTIAL_SUFFIX)]


def make_strategy(name: str, *, problem_id: str, min_prefix: int, max_prefix: int, n: int,
                  wave_size: int | None = None, seed: int = 0) -> _Search:
    """Build a strategy. 'NAME-seq' draws samples in waves (default wave size 2) and stops a
    probe at its first correct sample; plain 'NAME' draws all n at once."""
    base = name.removesuffix(SEQUENTIAL_SUFFIX)
    if base not in STRATEGIES:
        raise ConfigError(f"search strategy: unknown {name!r}; choose one of "
                          f"{', '.join(strategy_names())}")
    if name.endswith(SEQUENTIAL_SUFFIX):
        wave_size = wave_size or DEFAULT_WAVE_SIZE
    else:
        wave_size = n
    return STRATEGIES[base](problem_id=problem_id, min_prefix=min_prefix, max_prefix=max_prefix,
                            n=n, wave_size=wave_size, seed=seed)
