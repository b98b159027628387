"""Small POPE exports for the TRL backend tests, written by pope_data's own export code.

`make_export(root, hard=2, easy=1)` for data checks; `echo_export` for real GRPO steps;
`scripted_build(root)` a whole `pope-data build` folder (journal, curate.parquet, export).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.organism import QUICK
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


def scripted_build(root: Path, count: int = 6, **config) -> Path:
    """A finished `pope-data build --out root` of `count` synthetic problems, answered by
    tests.pope_data.fake_engine.ScriptedEngine: problem j is solved once its prompt shows
    (j % 3) + 1 solution lines, never unguided, so every problem is hard and gets i* = (j % 3) + 1;
    the journal keeps the correct samples' texts (`\\boxed{answer}`). `config`: BuildConfig
    fields (retention, validation_fraction, ...). Returns root/export."""
    from pope_data.build import run_build
    from pope_data.config import BuildConfig
    from pope_eval.engines import EngineConfig, Sampling
    from tests.pope_data.fake_engine import ScriptedEngine

    problems = generate_synthetic(count, seed=5)
    path = root / "problems.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    engine = ScriptedEngine({p.problem: p.answer for p in problems},
                            {p.problem: (j % 3) + 1 for j, p in enumerate(problems)})
    settings = dict(out=str(root / "out"), source="generic", path=str(path), k=2, n=2,
                    wave_size=1, sampling=Sampling(max_tokens=16, temperature=0.8),
                    engine=EngineConfig(engine="transformers"), validation_fraction=0.0,
                    decontam_against=())
    run_build(BuildConfig(**{**settings, **config}), engine=engine)
    return root / "out" / "export"


@pytest.fixture(scope="session")
def one_problem_export(tmp_path_factory) -> Path:
    """One hard problem the tiny model sometimes solves (its unguided and guided rows), no easy."""
    return make_export(tmp_path_factory.mktemp("trl_export"), easy=0, problems=[ECHO])


ROOT = Path(__file__).resolve().parents[2]
# The quick organism study's arms: the paper's pair and the guidance arms (pope_train.guidance).
STUDY_ARMS = ("pope", "hard_only", "pope_online", "ghpo", "fixed_ratio")
# The quick study's size (bench/organism.py): steps, evaluation and refresh interval.
QUICK_STEPS, QUICK_EVERY = QUICK["steps"], QUICK["eval_every"]
assert QUICK["refresh_every"] == QUICK_EVERY and QUICK_STEPS == 2 * QUICK_EVERY


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    """`bench/organism.py --quick` (QUICK: 10 steps per arm, one seed) into a fresh folder."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("study") / "quick"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "organism.py"), "--out", str(out),
                          "--quick", "--arms", ",".join(STUDY_ARMS), "--seeds", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def opchain_study(tmp_path_factory) -> Path:
    """`bench/organism.py --quick --source opchain` (pope and hard_only, one seed): the second
    family end to end on its committed organism, with 16 unguided samples and 4 per probed
    prefix (the family's hard chains fail nearly every probe, so the search probes them all) and
    easy chains with no rare operation."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("opchain_study") / "quick"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "organism.py"), "--out", str(out),
                          "--quick", "--source", "opchain", "--arms", "pope,hard_only",
                          "--seeds", "0", "--k", "16", "--n", "4", "--easy-difficulty", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out
