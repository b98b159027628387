"""Small POPE exports for the TRL backend tests, written by pope_data's own export code.

`one_problem_export` holds one synthetic hard problem (unguided + guided rows) and one easy one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pope_data.export import PrefixChoice, write_export
from pope_data.synthetic import generate_synthetic


def make_export(root: Path, hard: int = 1, easy: int = 1, prefix_steps: int | None = None) -> Path:
    """OUT/export with `hard` synthetic hard problems guided by a prefix of `prefix_steps` solution
    steps (default: the whole solution, so the tiny model sometimes repeats the right answer and
    GRPO gets a non-zero advantage) and `easy` easy problems; no validation split."""
    problems = generate_synthetic(hard, seed=0, difficulty=1)
    prefixes = {}
    for p in problems:
        steps = p.solution.splitlines()
        i = len(steps) if prefix_steps is None else prefix_steps
        prefixes[p.id] = PrefixChoice(
            problem_id=p.id, num_segments=len(steps), i_star=i, prefix_segments=i,
            prefix_fraction=i / len(steps), prefix_text="\n".join(steps[:i]), fallback=False,
            probes=1, samples=8, tokens=0)
    easy_problems = generate_synthetic(easy, seed=1, difficulty=1) if easy else []
    write_export(root, problems, prefixes, easy=easy_problems, validation_fraction=0.0)
    return root / "export"


@pytest.fixture(scope="session")
def one_problem_export(tmp_path_factory) -> Path:
    return make_export(tmp_path_factory.mktemp("trl_export"))
