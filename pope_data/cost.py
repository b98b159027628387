"""The bill before a long run: planned work and an upper bound of generated tokens per stage.

`plan_cost(config, problems, candidates)` is printed by `pope-data build` before it generates and
kept in the report beside the tokens each stage actually spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pope_data.config import BuildConfig


@dataclass(frozen=True)
class CostPlan:
    """Planned work and the most tokens each stage can generate (every sample at max tokens)."""

    problems: int
    k: int
    n: int
    max_tokens: int
    candidates: int  # candidate prefixes summed over problems with a solution
    probes_per_problem: int  # most prefixes the strategy probes for one problem
    upper_tokens: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"problems": self.problems, "k": self.k, "n": self.n,
                "max_tokens": self.max_tokens, "candidates": self.candidates,
                "probes_per_problem": self.probes_per_problem,
                "upper_tokens": dict(self.upper_tokens)}

    def lines(self) -> list[str]:
        """Human-readable plan, one line each."""
        t = self.upper_tokens
        return [
            f"plan: {self.problems} problems, k = {self.k} unguided samples each, n = {self.n} "
            f"per probed prefix, max {self.max_tokens} tokens per sample, "
            f"{self.candidates} candidate prefixes",
            f"upper bound of generated tokens: curate {t['curate']:,}, oracle {t['solve']:,}, "
            f"prefix search {t['prefix']:,} (if every problem is hard, every sample runs to max "
            "tokens and every probe fails); total "
            f"{sum(t.values()):,}",
        ]


def strategy_probes(strategy: str, candidates: int) -> int:
    """Most prefixes a strategy probes on a problem with `candidates` prefixes."""
    if candidates <= 0:
        return 0
    if strategy.startswith("sweep"):
        return candidates
    # bisect: the longest candidate, then a binary search over the rest.
    return 1 + math.ceil(math.log2(candidates)) if candidates > 1 else 1


def plan_cost(config: BuildConfig, problems: int, candidates: list[int],
              unsolved: int = 0) -> CostPlan:
    """`candidates[i]` = candidate prefixes of problem i (0 without a solution); `unsolved` =
    problems without a solution that the oracle stage would try."""
    max_tokens = config.sampling.max_tokens
    curate = problems * config.k * max_tokens
    solve = unsolved * config.solve_n * config.solve_max_tokens if config.solve else 0
    per = [strategy_probes(config.strategy, c) for c in candidates]
    prefix = sum(per) * config.n * max_tokens
    return CostPlan(problems=problems, k=config.k, n=config.n, max_tokens=max_tokens,
                    candidates=sum(candidates), probes_per_problem=max(per, default=0),
                    upper_tokens={"curate": curate, "solve": solve, "prefix": prefix})
