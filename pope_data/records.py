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


@dataclass
class RowCounts:
    """Where every row of a source went: `read` is the sum of all the other fields.

    Counted by `pope_data.sources.load_problems` (read to over_limit) and the build's later checks
    (rejected, decontaminated); printed in the bill and kept in summary.json.
    """

    read: int = 0  # rows read from the source (made, for a generator source)
    unreadable: int = 0  # quarantined as read: not an object, a missing or bad field, a repeated id
    duplicates: int = 0  # repeats of a problem, dropped by a deduplicating source
    other_shards: int = 0  # left out by --shard
    filtered: int = 0  # left out by --difficulty-min / --difficulty-max / --domain
    over_limit: int = 0  # left out by --limit
    rejected: int = 0  # quarantined by the later checks (gold answer, prompt length)
    decontaminated: int = 0  # removed for overlapping an evaluation set
    kept: int = 0

    @property
    def quarantined(self) -> int:
        return self.unreadable + self.rejected

    def describe(self) -> str:
        """One line: read, quarantined, left out by --shard and --limit, kept (and the other
        causes when they took any row)."""
        parts = [f"{self.read} read", f"{self.quarantined} quarantined"
                 + (" (quarantine.jsonl)" if self.quarantined else "")]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates")
        parts.append(f"{self.other_shards} left out by --shard")
        if self.filtered:
            parts.append(f"{self.filtered} left out by the difficulty/domain filters")
        parts.append(f"{self.over_limit} left out by --limit")
        if self.decontaminated:
            parts.append(f"{self.decontaminated} removed by decontamination")
        return ", ".join(parts) + f"; {self.kept} kept"

    @classmethod
    def merged(cls, shards: list[RowCounts]) -> RowCounts:
        """The counts of one build from those of its `--shard i/N` parts: every shard reads the
        same rows and quarantines the same unreadable ones; the rest is split between them."""
        first = shards[0]
        total = cls(read=first.read, unreadable=first.unreadable, duplicates=first.duplicates)
        for name in ("filtered", "over_limit", "rejected", "decontaminated", "kept"):
            setattr(total, name, sum(getattr(s, name) for s in shards))
        in_shards = sum(s.read - s.unreadable - s.duplicates - s.other_shards for s in shards)
        total.other_shards = first.read - first.unreadable - first.duplicates - in_shards
        return total
