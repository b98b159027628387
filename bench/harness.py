"""What the bench/ studies share: checked argument types, running a pope CLI with its log, spreads,
the two decision rules, hypotheses read from a file, and markdown tables.

A study script builds its parser with these types, so every bad value is refused by argparse with
the option's name and what it takes before anything is built; `decide_range` is the organism
study's pre-registered rule and `decide_bootstrap` the rule with power added in issue 30
(bench/RESULTS.md has both pre-registrations).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

HOLDS, REVERSED, TIE = "holds", "rejected (reversed)", "not distinguishable"


# ---- argument types: each names its option and what it takes -----------------------------------

def _typed(option: str, what: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError) as exc:
            detail = f" ({exc})" if str(exc) and not str(exc).startswith("invalid literal") else ""
            raise argparse.ArgumentTypeError(f"{what} expected, got {text!r}{detail}") \
                from None
    parse.__name__ = option  # argparse names the type in its fallback message
    return parse


def int_at_least(option: str, low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"below {low}")
        return value
    return _typed(option, f"an integer >= {low}", convert)


def float_in(option: str, low: float, high: float | None = None, *,
             open_low: bool = False) -> Callable[[str], float]:
    bound = f"{'>' if open_low else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")

    def convert(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or (value <= low if open_low else value < low) \
                or (high is not None and value > high):
            raise ValueError(f"outside {bound}")
        return value
    return _typed(option, f"a number {bound}", convert)


def int_list(option: str, low: int = 0) -> Callable[[str], list[int]]:
    """Comma-separated distinct integers >= low, at least one."""
    def convert(text: str) -> list[int]:
        values = [int(x) for x in text.split(",") if x.strip()]
        if not values:
            raise ValueError("empty")
        if min(values) < low:
            raise ValueError(f"{min(values)} is below {low}")
        if len(set(values)) != len(values):
            raise ValueError("a value repeats")
        return values
    return _typed(option, f"comma-separated distinct integers >= {low}", convert)


def name_list(option: str, allowed: Sequence[str] | None = None) -> Callable[[str], list[str]]:
    """Comma-separated names, at least one, each in `allowed` when given."""
    def convert(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        if not values:
            raise ValueError("empty")
        if len(set(values)) != len(values):
            raise ValueError("a name repeats")
        unknown = [v for v in values if allowed is not None and v not in allowed]
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return values
    return _typed(option, "comma-separated names", convert)


def add_common_arguments(ap: argparse.ArgumentParser, *, jobs: int = 2) -> None:
    """--out (the study folder, re-run to resume) and --jobs (runs at a time)."""
    ap.add_argument("--out", type=Path, required=True, help="study folder (re-run to resume)")
    ap.add_argument("--jobs", type=int_at_least("--jobs", 1), default=jobs,
                    help="runs at a time (integer >= 1)")


# ---- running pope's command line ---------------------------------------------------------------

def cli(name: str) -> str:
    """The pope CLI `name` next to this Python (a venv's bin), else on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def run_logged(cmd: Sequence[str], log: Path, threads: int) -> None:
    """One CLI command on `threads` threads, its output in `log`; a failure stops the study
    naming the command and the log's last lines."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        rc = subprocess.run(list(map(str, cmd)), stdout=f, stderr=subprocess.STDOUT,
                            env=env).returncode
    if rc:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"failed (rc {rc}): {' '.join(map(str, cmd))}\n-- {log} --\n{tail}")


# ---- spreads and decisions ---------------------------------------------------------------------

def spread(values: Sequence[float]) -> dict[str, Any]:
    values = list(values)
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "values": values}


def decide_range(better: Sequence[float], worse: Sequence[float]) -> str:
    """The pre-registered rule of the organism studies: `better` > `worse` holds when the
    difference of the means exceeds the larger of the two seed ranges and every value of `better`
    reaches `worse`'s mean; reversed by the same margin = rejected; otherwise not
    distinguishable."""
    b, w = spread(better), spread(worse)
    margin = max(b["max"] - b["min"], w["max"] - w["min"])
    diff = b["mean"] - w["mean"]
    if diff > margin and min(b["values"]) >= w["mean"]:
        return HOLDS
    if -diff > margin and min(w["values"]) >= b["mean"]:
        return REVERSED
    return TIE


@dataclass(frozen=True)
class Bootstrap:
    """The second rule, fixed before the run: a percentile bootstrap confidence interval of the
    mean difference better - worse over runs paired by (task seed, training seed) (unpaired
    resampling of each arm when the runs do not pair up); the hypothesis holds when the whole
    interval is above 0, is rejected when it is below 0, otherwise not distinguishable."""

    level: float = 0.95
    resamples: int = 10_000
    seed: int = 0

    def interval(self, better: Sequence[float], worse: Sequence[float],
                 paired: bool) -> tuple[float, float, float]:
        rng = random.Random(self.seed)
        if paired:
            if len(better) != len(worse):
                raise ValueError("paired values need equal lengths")
            diffs = [b - w for b, w in zip(better, worse)]
            point = statistics.fmean(diffs)
            means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs)))
                           for _ in range(self.resamples))
        else:
            point = statistics.fmean(better) - statistics.fmean(worse)
            means = sorted(statistics.fmean(rng.choices(better, k=len(better)))
                           - statistics.fmean(rng.choices(worse, k=len(worse)))
                           for _ in range(self.resamples))
        tail = (1 - self.level) / 2
        lo = means[int(math.floor(tail * (self.resamples - 1)))]
        hi = means[int(math.ceil((1 - tail) * (self.resamples - 1)))]
        return point, lo, hi

    def decide(self, better: Sequence[float], worse: Sequence[float],
               paired: bool = True) -> dict[str, Any]:
        point, lo, hi = self.interval(better, worse, paired)
        verdict = HOLDS if lo > 0 else REVERSED if hi < 0 else TIE
        return {"verdict": verdict, "difference": point, "ci": [lo, hi], "level": self.level,
                "paired": paired, "n": [len(better), len(worse)]}


def decide_bootstrap(better: Sequence[float], worse: Sequence[float], *,
                     paired: bool = True) -> dict[str, Any]:
    return Bootstrap().decide(better, worse, paired)


@dataclass(frozen=True)
class Hypothesis:
    """One comparison: `better` beats `worse` on `metric` (`higher` or `fewer`)."""

    name: str
    better: str
    worse: str
    metric: str
    direction: str = "higher"
    note: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "fewer"):
            raise ValueError(f"hypothesis {self.name}: direction must be higher or fewer, got "
                             f"{self.direction!r}")


def load_hypotheses(path: Path) -> list[Hypothesis]:
    """Hypotheses from a JSON list of {name, better, worse, metric[, direction, note]}."""
    rows = json.loads(Path(path).read_text())
    return [Hypothesis(**row) for row in rows]


def judge(hypotheses: Sequence[Hypothesis],
          values: Callable[[str, str], dict[tuple[int, int], float] | None]) -> dict[str, dict]:
    """Both rules for every hypothesis whose two arms have values: `values(arm, metric)` gives
    {(task seed, training seed): value}. The range rule takes every run of both arms; the
    bootstrap pairs runs on their keys when every run of the arm with fewer runs has its twin in
    the other (then over those pairs only), else resamples each arm on its own."""
    out = {}
    for h in hypotheses:
        a, b = values(h.better, h.metric), values(h.worse, h.metric)
        if not a or not b:
            continue
        sign = -1.0 if h.direction == "fewer" else 1.0
        keys = sorted(set(a) & set(b))
        paired = len(keys) == min(len(a), len(b))
        better = [sign * v for v in a.values()]
        worse = [sign * v for v in b.values()]
        boot = (decide_bootstrap([sign * a[k] for k in keys], [sign * b[k] for k in keys])
                if paired else decide_bootstrap(better, worse, paired=False))
        out[h.name] = {"better": h.better, "worse": h.worse, "metric": h.metric,
                       "direction": h.direction, "runs": [len(a), len(b)],
                       "range_rule": decide_range(better, worse), "bootstrap": boot}
    return out


# ---- tables -----------------------------------------------------------------------------------

def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   numeric: Sequence[bool] | None = None) -> list[str]:
    """Lines of a markdown table; `numeric` columns are right-aligned."""
    numeric = numeric or [False] * len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def fmt_spread(s: dict | None, digits: int = 3) -> str:
    if s is None:
        return "-"
    return f"{s['mean']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"
