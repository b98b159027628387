"""Fixtures for the verl tests: export-shaped parquet files (docs/design.md, "Data contracts") built with pope's prompts.

Every test here needs verl (the train venv); without it the whole folder is skipped with a reason.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pope_eval.prompts import guided_messages, problem_messages

HAS_VERL = importlib.util.find_spec("verl") is not None

# (problem id, problem, answer, solution segments): the prefix is the first segment.
PROBLEMS = [
    ("p-1", "Compute $3 \\times 4 + 5$.", "17", ["First, $3 \\times 4 = 12$.", "Then $12 + 5 = 17$."]),
    ("p-2", "What is $\\frac{1}{2} + \\frac{1}{3}$?", "\\frac{5}{6}",
     ["Use the common denominator 6.", "So $\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}$."]),
    ("p-3", "Compute $7 \\times 6 - 2$.", "40", ["First, $7 \\times 6 = 42$.", "Then $42 - 2 = 40$."]),
    ("p-4", "Find $2^5$.", "32", ["$2^2 = 4$ and $2^4 = 16$.", "So $2^5 = 32$."]),
]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.train)
            if not HAS_VERL:
                item.add_marker(pytest.mark.skip(
                    reason="verl is not installed here: run in .venv-train "
                           "(bash scripts/setup_train_env.sh)"))


def export_row(index: int, split: str, pid: str, problem: str, answer: str,
               prefix: str | None, segments: int, fraction: float) -> dict:
    """One row in the export schema: verl's columns plus plain problem/answer/solution/messages."""
    guided = prefix is not None
    messages = guided_messages(problem, prefix) if guided else problem_messages(problem)
    return {
        "data_source": "pope_test",
        "prompt": messages,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"index": index, "split": split, "problem_id": pid, "guided": guided,
                       "prefix_segments": segments if guided else 0,
                       "prefix_fraction": fraction if guided else 0.0, "fallback": False},
        "problem": messages[-1]["content"],
        "answer": answer,
        "solution": answer,
        "messages": messages,
    }


def _rows(kind: str, split: str) -> list[dict]:
    rows = []
    for pid, problem, answer, steps in PROBLEMS:
        frac = len(steps[0]) / len(" ".join(steps))
        if kind in ("hard", "easy", "mix"):
            rows.append(export_row(len(rows), split, pid, problem, answer, None, 0, 0.0))
        if kind in ("guided", "mix"):
            rows.append(export_row(len(rows), split, pid, problem, answer, steps[0], 1, frac))
    if kind == "easy":
        for r in rows:
            r["extra_info"]["problem_id"] += "-easy"
    return rows


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    """OUT/export with hard, guided, mix and easy subsets, train and validation splits."""
    import polars as pl

    root = tmp_path_factory.mktemp("build") / "export"
    for kind in ("hard", "guided", "mix", "easy"):
        for split in ("train", "validation"):
            (root / kind).mkdir(parents=True, exist_ok=True)
            pl.DataFrame(_rows(kind, split)).write_parquet(root / kind / f"{split}.parquet")
    return root
