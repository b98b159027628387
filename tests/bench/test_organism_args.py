"""bench/organism.py refuses every bad argument before it builds anything, naming the option.

Each case runs the script as a user would (a subprocess) into a folder that must stay unmade.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    (["--arms", ""], "argument --arms: comma-separated names expected, got ''"),
    (["--arms", "pass_at_k"], "--arms pass_at_k: TRL has no pass@k advantage estimator"),
    (["--arms", "pope,nonsense"], "--arms nonsense: unknown arm"),
    (["--arms", "pope,pope"], "argument --arms: comma-separated names expected, got 'pope,pope' "
                              "(a name repeats)"),
    (["--jobs", "0"], "argument --jobs: an integer >= 1 expected, got '0'"),
    (["--seeds", "-1"], "argument --seeds: comma-separated distinct integers >= 0 expected, "
                        "got '-1'"),
    (["--seeds", "a,b"], "argument --seeds: comma-separated distinct integers >= 0 expected"),
    (["--temperature", "nan"], "argument --temperature: a number > 0 expected, got 'nan'"),
    (["--steps", "1.5"], "argument --steps: an integer >= 1 expected, got '1.5'"),
    (["--difficulty", "40"], "--difficulty / --easy-difficulty: difficulty: must be an integer"),
    (["--arms", "pope_no_restate"], "--arms pope_no_restate needs --ablation-model"),
    (["--hypotheses", "/nonexistent/h.json"], "--hypotheses /nonexistent/h.json: "),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0]) or "''" for c in CASES])
def test_a_bad_argument_is_refused_before_anything_is_written(tmp_path, argv, message):
    out = tmp_path / "study"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "organism.py"), "--out", str(out),
                          *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert message in last, last
    assert "invalid" not in last and "<lambda>" not in last
    assert not out.exists()
