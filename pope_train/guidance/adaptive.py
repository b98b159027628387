"""`pope_adaptive`: POPE whose prefixes follow the rollouts training already generates (no extra generation).

Registered as `adaptive`. The rule (docs/training.md, "pope_adaptive", fixed before any run): after
each step, a guided group all correct -> one segment shorter, all wrong -> one longer (never past
the longest prefix the build probed); the unguided twin's group with a success graduates it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_train.guidance.base import GuidanceScheme, Row, Runtime
from pope_train.guidance.online import GUIDANCE_DIR

TABLE_LOG = "adaptive.jsonl"  # OUT/guidance/: the table after every step (the resume journal)


@dataclass(frozen=True, kw_only=True)
class AdaptiveOptions:
    adaptive_shorten_at: float = option(
        1.0, "Adaptive guidance (config pope_adaptive): a guided group with at least this share "
        "of correct rollouts moves its prefix shorter (default 1: all correct).")
    adaptive_lengthen_at: float = option(
        0.0, "Adaptive guidance: a guided group with at most this share of correct rollouts "
        "moves its prefix longer (default 0: all wrong).")
    adaptive_step: int = option(1, "Adaptive guidance: segments per move.")
    adaptive_graduate: bool = option(
        True, "Adaptive guidance: a problem whose unguided group has a correct rollout "
        "graduates (its guided row becomes the unguided prompt for the rest of the run).")

    def __post_init__(self) -> None:
        if not 0 < self.adaptive_shorten_at <= 1:
            raise ConfigError(f"--adaptive-shorten-at: must be in (0, 1], got "
                              f"{self.adaptive_shorten_at}")
        if not 0 <= self.adaptive_lengthen_at < self.adaptive_shorten_at:
            raise ConfigError(f"--adaptive-lengthen-at: must be in [0, --adaptive-shorten-at), "
                              f"got {self.adaptive_lengthen_at}")
        if self.adaptive_step < 1:
            raise ConfigError(f"--adaptive-step: must be >= 1, got {self.adaptive_step}")


def probed_caps(build: Path, start: Mapping[str, int]) -> dict[str, int]:
    """Per problem the longest prefix the build probed (its journal.sqlite), at least its start:
    a prefix the build never tried is not one the rule may show."""
    caps = dict(start)
    path = build / "journal.sqlite"
    if path.is_file():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT problem_id, MAX(prefix_segments) FROM probes "
                                "GROUP BY problem_id").fetchall()
        finally:
            conn.close()
        for pid, longest in rows:
            if pid in caps:
                caps[pid] = max(caps[pid], int(longest))
    return caps


class Adaptive(GuidanceScheme):
    """Guided rows show the table's prefix; `observe` moves it from the step's own groups."""

    name = "adaptive"
    summary = ("prefix moves with the guided group's outcome (all correct: shorter, all wrong: "
               "longer, up to the build's longest probe); an unguided success graduates")
    options = AdaptiveOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        start = {pid: p.start for pid, p in self.problems.items()}
        build = Path(self.setup.export_dir).resolve().parent if self.setup.export_dir else None
        self.cap = probed_caps(build, start) if build else start
        self.log_path: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cap": dict(sorted(self.cap.items()))}

    def start(self, run: Runtime) -> None:
        super().start(run)
        self.log_path = run.out_dir / GUIDANCE_DIR / TABLE_LOG

    def rows(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[Row]:
        return [self.table.render(r) for r in rows]

    def moves(self, outcomes: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
        """Apply the rule to one step's groups: `outcomes[pid]` holds "guided" and/or
        "unguided", each the group's scores. Returns what moved."""
        o = self.opts
        shortened, lengthened, capped, graduates = {}, {}, [], []
        for pid in sorted(outcomes):
            if pid not in self.table.prefix or self.table.prefix[pid] == 0:
                continue
            groups, now = outcomes[pid], self.table.prefix[pid]
            unguided = groups.get("unguided")
            if o.adaptive_graduate and unguided and any(s > 0 for s in unguided):
                self.table.prefix[pid] = 0
                graduates.append(pid)
                continue
            guided = groups.get("guided")
            if not guided:
                continue
            share = sum(s > 0 for s in guided) / len(guided)
            if share >= o.adaptive_shorten_at and now > 1:
                self.table.prefix[pid] = max(now - o.adaptive_step, 1)
                shortened[pid] = (now, self.table.prefix[pid])
            elif share <= o.adaptive_lengthen_at:
                new = min(now + o.adaptive_step, self.cap[pid])
                if new > now:
                    self.table.prefix[pid] = new
                    lengthened[pid] = (now, new)
                else:
                    capped.append(pid)
        return {"shortened": shortened, "lengthened": lengthened, "capped": capped,
                "graduates": graduates}

    def observe(self, rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
                step: int) -> dict[str, float]:
        outcomes: dict[str, dict[str, list[float]]] = {}
        for row, score in zip(rows, scores):
            info = row.get("extra_info") or {}
            pid = info.get("problem_id")
            if pid not in self.problems:
                continue
            kind = "guided" if info.get("guided") else "unguided"
            outcomes.setdefault(pid, {}).setdefault(kind, []).append(float(score))
        moved = self.moves(outcomes)
        if self.log_path is not None and self.run.main:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as f:
                f.write(json.dumps({"step": step + 1, **moved, **self.table.snapshot()}) + "\n")
        values = list(self.table.prefix.values())
        return {"adaptive_shortened": float(len(moved["shortened"])),
                "adaptive_lengthened": float(len(moved["lengthened"])),
                "adaptive_capped": float(len(moved["capped"])),
                "adaptive_new_graduates": float(len(moved["graduates"])),
                "adaptive_graduated": float(sum(v == 0 for v in values)),
                "adaptive_prefix_mean": sum(values) / len(values) if values else 0.0}

    def histogram(self) -> dict[str, int]:
        return {str(i): c for i, c in sorted(Counter(self.table.prefix.values()).items())}
