"""Per-step training signals of the TRL backend: guided/unguided reward, solvability, metrics file, plot.

`batch_stats(scores, infos, hard_ids)` summarises one step's rollouts; `MetricsWriter` appends one
JSON object per step to DIR/metrics.jsonl; `plot_metrics(path, png)` draws them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# What a researcher watches per step (README "One machine: TRL"): our keys -> the name in TRL's
# logs. The pope/* ones are logged by our reward function through TRL's `log_metric`.
STEP_FIELDS: dict[str, str] = {
    "reward": "reward",
    "reward_guided": "pope/reward_guided",
    "reward_unguided": "pope/reward_unguided",
    "solvable": "pope/solvable",
    "entropy": "entropy",
    "response_length": "completions/mean_length",
    "clipped_ratio": "completions/clipped_ratio",
    "loss": "loss",
    "learning_rate": "learning_rate",
    "step_time": "step_time",
}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def batch_stats(scores: Sequence[float], infos: Sequence[Mapping[str, Any] | None],
                hard_ids: frozenset[str] | set[str]) -> dict[str, float]:
    """Mean reward on guided and on unguided rows, and the fraction of unguided hard problems in
    the batch with at least one correct rollout ("solvable"). A key is absent when the batch has
    no row of its kind (a step of a mix may draw only guided prompts)."""
    guided: list[float] = []
    unguided: list[float] = []
    solved: dict[str, bool] = {}
    for score, info in zip(scores, infos):
        info = info or {}
        if info.get("guided", False):
            guided.append(score)
            continue
        unguided.append(score)
        pid = info.get("problem_id")
        if pid in hard_ids:
            solved[pid] = solved.get(pid, False) or score > 0
    stats: dict[str, float] = {}
    for key, values in (("pope/reward_guided", guided), ("pope/reward_unguided", unguided)):
        mean = _mean(values)
        if mean is not None:
            stats[key] = mean
    if solved:
        stats["pope/solvable"] = sum(solved.values()) / len(solved)
    stats["pope/unguided_hard_problems"] = float(len(solved))
    return stats


def step_record(step: int, logs: Mapping[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl object from TRL's logs of a step (None where the step had no value)."""
    record: dict[str, Any] = {"step": step}
    for key, name in STEP_FIELDS.items():
        value = logs.get(name)
        record[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) \
            else float(value)
    return record


class MetricsWriter:
    """Appends step records to a JSONL file, flushing each so a crashed run keeps its history."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_metrics(path: str | Path, png: str | Path) -> Path:
    """Reward (guided / unguided), solvability, entropy and response length against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(path)
    steps = [r["step"] for r in records]

    def series(key: str) -> tuple[list[int], list[float]]:
        pairs = [(s, r[key]) for s, r in zip(steps, records) if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    panels = [
        (axes[0][0], "reward", (("reward_guided", "guided"), ("reward_unguided", "unguided"),
                                ("reward", "all"))),
        (axes[0][1], "solvable (unguided hard, >=1 correct)", (("solvable", "solvable"),)),
        (axes[1][0], "token entropy", (("entropy", "entropy"),)),
        (axes[1][1], "response length (tokens)", (("response_length", "mean length"),)),
    ]
    for ax, title, keys in panels:
        for key, label in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
