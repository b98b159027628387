"""Per-step training signals of the TRL backend: guided/unguided reward, solvability, metrics file, plot.

`batch_values(scores, infos, hard_ids)` / `batch_stats` summarise one step's rollouts; `MetricsWriter` appends one
JSON object per step (and per evaluation, `pope_train.backends.trl.eval`) to DIR/metrics.jsonl;
`plot_metrics(path, png)` draws them.
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
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "step_time": "step_time",
    # pope_train.backends.trl.trainer: what the step generated and showed (every run)
    "rollout_tokens": "pope/rollout_tokens",
    "guidance_tokens": "pope/guidance_tokens",
    # Zero-advantage accounting (every run): the share of groups whose rewards have no spread
    # (no gradient), all correct / all wrong, among guided and among unguided groups, and the
    # share of rollout tokens whose advantage is 0; TRL's own share of zero-std groups.
    "zero_spread_groups": "pope/zero_spread_groups",
    "zero_spread_all_correct": "pope/zero_spread_all_correct",
    "zero_spread_all_wrong": "pope/zero_spread_all_wrong",
    "zero_spread_guided": "pope/zero_spread_guided",
    "zero_spread_unguided": "pope/zero_spread_unguided",
    "zero_gradient_tokens": "pope/zero_gradient_tokens",
    "reward_zero_std": "frac_reward_zero_std",
}
SCHEME_PREFIX = "pope/scheme/"  # a guidance scheme's own step metrics (its `observe`): field = the rest


# An evaluation's record (`pope_train.backends.trl.eval.evaluate_policy`): a line with `eval_step` instead
# of `step`, so step records and evaluation records never mix.
EVAL_FIELDS: tuple[str, ...] = (
    "eval_step",                # the optimizer steps taken before it (0: the base model)
    "eval_solvable",            # training hard problems with >= 1 correct of eval_samples
    "eval_solvable_problems",   # how many training hard problems were measured
    "eval_pass_at_k",           # {"k": unbiased pass@k} on the held-out set
    "eval_pass_at_k_problems",  # how many held-out problems were measured
    "eval_samples",             # samples per problem
    "eval_clipped_ratio",       # samples cut by the evaluation's max tokens
    "eval_tokens",              # generated tokens
    "eval_time",                # seconds, generation and grading
)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def batch_values(scores: Sequence[float], infos: Sequence[Mapping[str, Any] | None],
                 hard_ids: frozenset[str] | set[str]) -> dict[str, list[float]]:
    """The values whose means are a step's signals: the reward of every guided and of every
    unguided row, and per unguided hard problem in the batch 1.0 when a rollout of it is
    correct ("solvable"). A key is absent when the batch has no row of its kind. Logged one
    value at a time, so the mean over several processes' batches is the mean over all rows."""
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
    values = {"pope/reward_guided": guided, "pope/reward_unguided": unguided,
              "pope/solvable": [float(v) for v in solved.values()]}
    return {key: v for key, v in values.items() if v}


def batch_stats(scores: Sequence[float], infos: Sequence[Mapping[str, Any] | None],
                hard_ids: frozenset[str] | set[str]) -> dict[str, float]:
    """Mean reward on guided and on unguided rows, and the fraction of unguided hard problems in
    the batch with at least one correct rollout ("solvable"); `batch_values`' means. A key is
    absent when the batch has no row of its kind (a step of a mix may draw only guided
    prompts)."""
    values = batch_values(scores, infos, hard_ids)
    stats = {key: sum(v) / len(v) for key, v in values.items()}
    stats["pope/unguided_hard_problems"] = float(len(values.get("pope/solvable", ())))
    return stats


def step_record(step: int, logs: Mapping[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl object from TRL's logs of a step (None where the step had no value),
    plus the guidance scheme's own step metrics (e.g. ghpo's `hinted_groups`)."""
    def clean(value: Any) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) \
            else float(value)

    record: dict[str, Any] = {"step": step}
    for key, name in STEP_FIELDS.items():
        record[key] = clean(logs.get(name))
    for name, value in logs.items():
        if name.startswith(SCHEME_PREFIX):
            record.setdefault(name[len(SCHEME_PREFIX):], clean(value))
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
    """Reward (guided / unguided), solvability, entropy and response length against the step; with
    evaluation records, a third row: the evaluated solvability and held-out pass@k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(path)
    steps = [r for r in records if "step" in r]
    evals = [r for r in records if "eval_step" in r]

    def series(rows: list[dict[str, Any]], x: str, key: str) -> tuple[list[int], list[float]]:
        pairs = [(r[x], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    rows = 3 + bool(evals)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 3.5 * rows), sharex=True)
    panels = [
        (axes[0][0], "reward", (("reward_guided", "guided"), ("reward_unguided", "unguided"),
                                ("reward", "all"))),
        (axes[0][1], "solvable (unguided hard, >=1 correct)", (("solvable", "solvable"),)),
        (axes[1][0], "token entropy", (("entropy", "entropy"),)),
        (axes[1][1], "response length (tokens)", (("response_length", "mean length"),)),
        (axes[2][0], "groups with zero reward spread (no gradient)", (
            ("zero_spread_groups", "all"), ("zero_spread_guided", "guided"),
            ("zero_spread_unguided", "unguided"), ("zero_spread_all_correct", "all correct"),
            ("zero_spread_all_wrong", "all wrong"))),
        (axes[2][1], "rollout tokens with zero advantage (share)", (
            ("zero_gradient_tokens", "tokens"),)),
    ]
    for ax, title, keys in panels:
        for key, label in keys:
            xs, ys = series(steps, "step", key)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    if evals:
        samples = evals[-1]["eval_samples"]
        solvable, pass_at_k = axes[3]
        xs, ys = series(evals, "eval_step", "eval_solvable")
        solvable.plot(xs, ys, marker="o", markersize=3)
        solvable.set_title(f"eval: training hard set solvable (>=1 of {samples}, unguided)")
        measured = [r for r in evals if r.get("eval_pass_at_k")]
        ks = list(measured[-1]["eval_pass_at_k"]) if measured else []  # the same k in every record
        for k in ks:
            pass_at_k.plot([r["eval_step"] for r in measured],
                           [r["eval_pass_at_k"][k] for r in measured], marker="o", markersize=3,
                           label=f"pass@{k}")
        pass_at_k.set_title("eval: held-out pass@k (unguided)")
        if ks:
            pass_at_k.legend()
        for ax, shown in ((solvable, xs), (pass_at_k, ks)):
            if not shown:
                ax.text(0.5, 0.5, "not measured in this run", ha="center", transform=ax.transAxes)
        for ax in axes[3]:
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
