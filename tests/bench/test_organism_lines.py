"""bench/organism_lines.py on the committed running-sum organism: it computes every line it was
trained on (teacher-forced p near 1), while a line it never saw the like of scores near 0; bad
input is refused before the model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "bench" / "organism_lines.py"
ORGANISM = ROOT / "tests" / "data" / "organism"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_committed_organism_writes_its_lines_and_the_table_shows_it(tmp_path):
    out = tmp_path / "lines.json"
    done = _run(str(ORGANISM), "--family", "organism", "--count", "24", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "| unguided |" in done.stdout and "| guided |" in done.stdout
    result = json.loads(out.read_text())
    unguided = result["by_prompt"]["unguided"]
    assert unguided["demonstrations"] + result["by_prompt"]["guided"]["demonstrations"] == 24
    assert min(unguided["line_p"]) > 0.8  # it computes each line from the one above
    assert len(unguided["first_line_tokens"]) >= 6

    # the opchain layout is foreign to this organism: its lines are not written
    foreign = _run(str(ORGANISM), "--family", "opchain", "--count", "8", "--json", str(out))
    assert foreign.returncode == 0, foreign.stderr
    assert json.loads(out.read_text())["by_prompt"]["unguided"]["line_p"][0] < 0.1


@pytest.mark.parametrize("args, needle", [
    (["--count", "0"], "--count"),
    (["--guided-fraction", "1.5"], "--guided-fraction"),
])
def test_bad_options_are_refused_naming_them(args, needle):
    done = _run(str(ORGANISM), *args)
    assert done.returncode == 2 and needle in done.stderr


def test_a_folder_without_a_model_is_refused(tmp_path):
    done = _run(str(tmp_path))
    assert done.returncode == 2 and "config.json" in done.stderr
