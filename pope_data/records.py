"""The records passed between pope_data's stages: Problem and search types (docs/design.md).

Sources yield `Problem`; strategies in `pope_data.search` emit `Probe`s and consume `ProbeOutcome`s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pope_eval.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One problem, normalised from any source. `id` is stable and unique within its source."""

    id: str
    problem: str
    answer: str
    source: str
    solution: str | None = None
    difficulty: float | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        for name in ("id", "problem", "answer", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"Problem.{name}: must be a non-empty string, got {value!r}")
        if self.solution is not None and not isinstance(self.solution, str):
            raise DataError(f"Problem.solution: must be a string or null (problem {self.id})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Probe:
    """A request from a strategy: draw `n` samples of problem `problem_id` with the first
    `prefix_segments` solution segments shown. `wave` numbers repeated draws at the same prefix
    (sequential sampling), so (problem_id, prefix_segments, wave) is unique and seeds derive from it.
    """

    problem_id: str
    prefix_segments: int
    n: int
    wave: int = 0
    # Samples already drawn at this prefix before this probe: sample j of the probe is sample
    # offset + j of the prefix, so per-sample seeds do not depend on how samples are split in waves.
    offset: int = 0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.problem_id, self.prefix_segments, self.wave)


@dataclass(frozen=True)
class ProbeOutcome:
    """What the service observed for a probe: samples drawn, how many were correct, tokens."""

    probe: Probe
    samples: int
    correct: int
    tokens: int


@dataclass(frozen=True)
class SearchResult:
    """Per-problem verdict of a strategy. `i_star` is None when no prefix worked (fallback)."""

    problem_id: str
    i_star: int | None
    fallback: bool
    probes: int
    samples: int
    tokens: int
