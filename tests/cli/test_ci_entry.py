"""`.ci/run` tests a copy of the checkout and removes that copy when it ends, pass or fail.

Each copy holds two venvs (~7 GB), so a copy left behind by every run fills the disk after a few
runs and the next one fails while installing. The real script runs here on a tiny git repo whose
scripts/test.sh stands in for the suite (the suite itself is what CI runs, not this test).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _repo(tmp_path: Path, status: int) -> Path:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    (repo / "scripts").mkdir()
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    (repo / "scripts" / "test.sh").write_text(f'pwd > "$CI_SEEN"\nexit {status}\n')
    (repo / "tracked.txt").write_text("x\n")
    (repo / "ignored.txt").write_text("x\n")
    (repo / ".gitignore").write_text("ignored.txt\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    return repo


def _run(repo: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    seen = tmp_path / "seen.txt"
    proc = subprocess.run(
        ["bash", ".ci/run"], cwd=repo, capture_output=True, text=True,
        env={**os.environ, "TMPDIR": str(scratch), "CI_SEEN": str(seen), **env},
    )
    return proc, scratch, Path(seen.read_text().strip())


@pytest.mark.parametrize("status", [0, 3])
def test_ci_run_passes_the_suites_status_through_and_removes_its_copy(tmp_path, status):
    proc, scratch, copy = _run(_repo(tmp_path, status), tmp_path)
    assert proc.returncode == status, proc.stderr
    # the suite ran in a copy under TMPDIR (what the copy holds: the test below) ...
    assert copy.is_relative_to(scratch) and copy.name == "pope"
    # ... and the copy is gone once the run ended
    assert not copy.exists() and list(scratch.iterdir()) == []


def test_ci_run_copies_tracked_files_only_and_keeps_the_copy_when_asked(tmp_path):
    proc, scratch, copy = _run(_repo(tmp_path, 1), tmp_path, POPE_CI_KEEP="1")
    assert proc.returncode == 1
    assert "keeping" in proc.stderr
    assert (copy / "tracked.txt").is_file() and (copy / "scripts" / "test.sh").is_file()
    assert not (copy / "ignored.txt").exists()
