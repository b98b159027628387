"""Small POPE exports for the TRL backend tests, written by pope_data's own export code.

`make_export(root, hard=2, easy=1)` for data checks; `echo_export` for real GRPO steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pope_data.export import PrefixChoice, write_export
from pope_data.records import Problem
from pope_data.synthetic import generate_synthetic

# SmolLM2-135M answers almost nothing within a few dozen tokens, and GRPO moves no weight while
# every rollout scores 0. This one it gets right about 2 times in 8 within 24 tokens at T = 1
# (measured with pope-eval pass-at-k), so two steps of 8 rollouts see a correct one.
ECHO = Problem(id="echo-7", problem="Repeat exactly this sentence: The final answer is \\boxed{7}.",
               answer="7", source="test", solution="Read the sentence.\nThe final answer is \\boxed{7}.")


def make_export(root: Path, hard: int = 1, easy: int = 1, prefix_steps: int | None = None,
                problems: list[Problem] | None = None) -> Path:
    """OUT/export with `hard` synthetic hard problems (or `problems`) guided by a prefix of
    `prefix_steps` solution steps (default: all but the last) and `easy` easy problems; no
    validation split."""
    problems = problems or generate_synthetic(hard, seed=0, difficulty=1)
    prefixes = {}
    for p in problems:
        steps = p.solution.splitlines()
        i = len(steps) - 1 if prefix_steps is None else prefix_steps
        prefixes[p.id] = PrefixChoice(
            problem_id=p.id, num_segments=len(steps), i_star=i, prefix_segments=i,
            prefix_fraction=i / len(steps), prefix_text="\n".join(steps[:i]), fallback=False,
            probes=1, samples=8, tokens=0)
    easy_problems = generate_synthetic(easy, seed=1, difficulty=1) if easy else []
    write_export(root, problems, prefixes, easy=easy_problems, validation_fraction=0.0)
    return root / "export"


@pytest.fixture(scope="session")
def one_problem_export(tmp_path_factory) -> Path:
    """One hard problem the tiny model sometimes solves (its unguided and guided rows), no easy."""
    return make_export(tmp_path_factory.mktemp("trl_export"), easy=0, problems=[ECHO])
