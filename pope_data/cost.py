"""The bill before a long run: the rows taken, planned work and an upper bound of generated tokens.

`plan_cost(config, problems, candidates, rows=...)` is printed by `pope-data build` before it
generates and kept in summary.json and the report beside the tokens each stage actually spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pope_data.config import BuildConfig
from pope_data.records import RowCounts
from pope_data.search import strategy_class

STAGES = ("curate", "solve", "prefix")


@dataclass(frozen=True)
class CostPlan:
    """Planned work and the most tokens each stage can generate (every sample at max tokens).
    `replayed`: probes already in the journal, replayed on resume instead of generated."""

    problems: int
    k: int
    n: int
    max_tokens: int
    candidates: int  # candidate prefixes summed over problems with a solution
    probes_per_problem: int  # most prefixes the strategy probes for one problem
    upper_tokens: dict[str, int]
    rows: RowCounts = field(default_factory=RowCounts)
    replayed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostPlan:
        return cls(**{**d, "rows": RowCounts(**d["rows"])})

    def lines(self) -> list[str]:
        """Human-readable plan, one line each."""
        t = self.upper_tokens
        lines = [
            f"rows: {self.rows.describe()}",
            f"plan: {self.problems} problems, k = {self.k} unguided samples each, n = {self.n} "
            f"per probed prefix, max {self.max_tokens} tokens per sample, "
            f"{self.candidates} candidate prefixes",
            f"upper bound of generated tokens: curate {t['curate']:,}, oracle {t['solve']:,}, "
            f"prefix search {t['prefix']:,} (if every problem is hard, every sample runs to max "
            "tokens and every probe fails); total "
            f"{sum(t.values()):,}",
        ]
        if self.replayed:
            lines.append(f"resume: {self.replayed} probes replayed from the journal (not "
                         "generated again)")
        return lines

    @classmethod
    def combined(cls, plans: list[CostPlan]) -> CostPlan:
        """The plan of one build from those of its `--shard i/N` parts."""
        first = plans[0]
        return cls(problems=sum(p.problems for p in plans), k=first.k, n=first.n,
                   max_tokens=first.max_tokens, candidates=sum(p.candidates for p in plans),
                   probes_per_problem=max(p.probes_per_problem for p in plans),
                   upper_tokens={s: sum(p.upper_tokens[s] for p in plans) for s in STAGES},
                   rows=RowCounts.merged([p.rows for p in plans]),
                   replayed=sum(p.replayed for p in plans))


def strategy_probes(strategy: str, candidates: int) -> int:
    """Most prefixes a strategy probes on a problem with `candidates` prefixes (its class's
    declared bound)."""
    return strategy_class(strategy).max_probes(candidates)


def plan_cost(config: BuildConfig, problems: int, candidates: list[int],
              unsolved: int = 0, *, rows: RowCounts | None = None,
              replayed: int = 0) -> CostPlan:
    """`candidates[i]` = candidate prefixes of problem i (0 without a solution); `unsolved` =
    problems without a solution that the oracle stage would try; `rows` = where the source's
    rows went; `replayed` = probes already journaled."""
    max_tokens = config.sampling.max_tokens
    curate = problems * config.k * max_tokens
    solve = unsolved * config.solve_n * config.solve_max_tokens if config.solve else 0
    per = [strategy_probes(config.strategy, c) for c in candidates]
    prefix = sum(per) * config.n * max_tokens
    return CostPlan(problems=problems, k=config.k, n=config.n, max_tokens=max_tokens,
                    candidates=sum(candidates), probes_per_problem=max(per, default=0),
                    upper_tokens={"curate": curate, "solve": solve, "prefix": prefix},
                    rows=rows if rows is not None else RowCounts(), replayed=replayed)
