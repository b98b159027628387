"""GHPO-style hinting: a group whose rollouts all failed is generated again with growing shares
of the solution (--ghpo-ratios), stopping at the first share with a correct rollout.

Registered as `ghpo`; OUT/guidance/hints.jsonl lists every hinted group and the scores it replaced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pope_eval.options import option
from pope_train.guidance.base import GuidanceScheme, Row, Runtime
from pope_train.guidance.online import GUIDANCE_DIR
from pope_train.guidance.table import GroupHints, parse_ratios


@dataclass(frozen=True, kw_only=True)
class GhpoOptions:
    ghpo_ratios: tuple[float, ...] = option(
        (0.25, 0.5, 0.75), "GHPO-style hinting (config ghpo): shares of the solution tried in "
        "turn on a group whose rollouts all failed, e.g. '0.25,0.5,0.75'.",
        parse=lambda text: parse_ratios(text, "--ghpo-ratios"))

    def __post_init__(self) -> None:
        parse_ratios(",".join(map(str, self.ghpo_ratios)), "--ghpo-ratios")


class Ghpo(GuidanceScheme):
    """No guided rows of its own; `regenerate` names the all-failed groups, round by round."""

    name = "ghpo"
    summary = ("no guided rows; a group whose rollouts all failed is regenerated with growing "
               "shares of the solution (--ghpo-ratios)")
    options = GhpoOptions

    def start(self, run: Runtime) -> None:
        super().start(run)
        self.hints = GroupHints(self.opts.ghpo_ratios, self.table)
        self.hint_log = run.out_dir / GUIDANCE_DIR / "hints.jsonl"
        self.pending: list[tuple[int, list[dict[str, Any]]]] = []  # (round, groups) this step

    def rows(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[Row]:
        self.pending = []
        return [dict(r) for r in rows]

    def regenerate(self, rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
                   round: int, step: int) -> dict[int, list[Row]]:
        if round >= len(self.hints.ratios):
            return {}
        group = self.run.group
        failed = self.hints.failed_groups(list(scores), rows, group)
        if not failed:
            return {}
        ratio = self.hints.ratios[round]
        self.pending.append((round, [
            {"problem_id": rows[g * group]["extra_info"]["problem_id"],
             "scores_before": list(scores[g * group:(g + 1) * group])} for g in failed]))
        return {g: [self.hints.hinted(rows[g * group + j], ratio) for j in range(group)]
                for g in failed}

    def observe(self, rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
                step: int) -> dict[str, float]:
        """The step's hinted groups of every process: one hints.jsonl line per round (the main
        process writes it), counted over all processes."""
        rounds: dict[int, list[dict[str, Any]]] = {}
        for pending in self.run.gather(self.pending):
            for round, groups in pending:
                rounds.setdefault(round, []).extend(groups)
        if self.run.main and rounds:
            self.hint_log.parent.mkdir(parents=True, exist_ok=True)
            with self.hint_log.open("a") as f:
                for round in sorted(rounds):
                    f.write(json.dumps({"step": step + 1, "ratio": self.hints.ratios[round],
                                        "groups": rounds[round]}) + "\n")
        return {"hinted_groups": float(sum(len(g) for g in rounds.values())),
                "hint_rounds": float(len(rounds))}
