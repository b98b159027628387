"""`pope_shorter`: static POPE one segment shorter than the build's i* (at least one segment).

Registered as `shorter`; it asks whether POPE's fixed prefix trains better a step down the
success curve (docs/training.md, "Guidance during training").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pope_train.guidance.base import GuidanceScheme, Row


class Shorter(GuidanceScheme):
    """Each guided row shows i* - 1 segments (1 when i* is 1), for the whole run."""

    name = "shorter"
    summary = "the build's prefix one segment shorter (i* - 1, at least 1), unchanged"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.table is not None:
            # i* - 1, at least 1; a problem that starts unguided (a one-segment solution) stays so
            self.table.prefix = {pid: min(p.start, max(p.start - 1, 1))
                                 for pid, p in self.problems.items()}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.table is not None:
            out["prefix"] = dict(sorted(self.table.prefix.items()))
        return out

    def rows(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[Row]:
        return [self.table.render(r) for r in rows]
