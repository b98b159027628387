"""Fixed-ratio guidance that starts at POPE's prefix: phase 1 shows each problem's i*, later
phases a fixed multiple of i*'s share of the solution (`--istar-schedule`, default 1 then 0.5).

Registered as `istar_ratio`: "minimal" (pope) and "fixed share" (fixed_ratio) at the same start.
"""

from __future__ import annotations

from dataclasses import dataclass

from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_train.guidance.ratio import Ratio
from pope_train.guidance.table import ratio_at, ratio_prefix


def _parse(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or values[0] != 1 or not all(0 < v <= 1 for v in values):
        raise ConfigError(f"--istar-schedule: expected a comma list of multiples of i*'s share "
                          f"in (0, 1], the first 1 (phase 1 shows i*), got {text!r}")
    return values


@dataclass(frozen=True, kw_only=True)
class IstarRatioOptions:
    istar_schedule: tuple[float, ...] = option(
        (1.0, 0.5), "Fixed-ratio guidance from i* (config fixed_ratio_istar): per equal phase of "
        "--max-steps, the share of the solution shown as a multiple of i*'s share; the first is "
        "1 (i* itself), e.g. '1,0.5'.", parse=_parse)

    def __post_init__(self) -> None:
        _parse(",".join(map(str, self.istar_schedule)))


class IstarRatio(Ratio):
    """Phase j shows the longest prefix within istar_schedule[j] x (i*'s share of the
    solution); phase 1 is i* exactly. Rows are rendered as Ratio's, from this `prefix_at`."""

    name = "istar_ratio"
    summary = "phase 1 at each problem's i*, then fixed multiples of its share (--istar-schedule)"
    options = IstarRatioOptions

    def prefix_at(self, pid: str, step: int) -> int:
        p = self.problems[pid]
        m = ratio_at(self.opts.istar_schedule, step, self.setup.max_steps)
        if m == 1:
            return p.start
        return min(p.start, ratio_prefix(p.segmentation, m * p.segmentation.fraction(p.start)))

