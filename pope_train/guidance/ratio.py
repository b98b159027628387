"""Fixed-ratio guidance (QuestA-style): a fixed share of the solution per phase of training.

Registered as `ratio`; its option `--ratio-schedule` (one share per equal phase of --max-steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pope_eval.options import option
from pope_train.guidance.base import GuidanceScheme, Row
from pope_train.guidance.table import parse_ratios, ratio_at, ratio_prefix


@dataclass(frozen=True, kw_only=True)
class RatioOptions:
    ratio_schedule: tuple[float, ...] = option(
        (0.5, 0.25), "Fixed-ratio guidance (config fixed_ratio): shares of the solution shown, "
        "one per equal phase of --max-steps, e.g. '0.5,0.25'.",
        parse=lambda text: parse_ratios(text, "--ratio-schedule"))

    def __post_init__(self) -> None:
        parse_ratios(",".join(map(str, self.ratio_schedule)), "--ratio-schedule")


class Ratio(GuidanceScheme):
    """Guided rows show the longest prefix within the phase's share of the solution."""

    name = "ratio"
    summary = "a fixed share of the solution per phase of training (--ratio-schedule)"
    options = RatioOptions

    def prefix_at(self, pid: str, step: int) -> int:
        seg = self.problems[pid].segmentation
        return ratio_prefix(seg, ratio_at(self.opts.ratio_schedule, step, self.setup.max_steps))

    def rows(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[Row]:
        out = []
        for r in rows:
            pid = (r.get("extra_info") or {}).get("problem_id")
            out.append(self.table.render(r, self.prefix_at(pid, step)) if pid in self.problems
                       else dict(r))
        return out
