"""The streaming search service: out-of-order completions give the batch path's verdicts, each probe
is journaled once, and a build killed mid-stream resumes to the same result."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pope_data.build import run_build
from pope_data.config import BuildConfig
from pope_data.synthetic import generate_synthetic
from pope_eval.engines import EngineConfig, Sampling
from tests.pope_data.fake_engine import OutOfOrderEngine, SeededScriptedEngine

REPO = Path(__file__).resolve().parents[2]
TABLES = ("curate.parquet", "prefixes.parquet")


def _problems_file(tmp_path: Path, count: int = 12) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n"
                            for p in generate_synthetic(count, seed=5)))
    return path


def _script(path: Path) -> tuple[dict, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return ({r["problem"]: r["answer"] for r in rows},
            {r["problem"]: (0 if j == 0 else 1 + j % 4) for j, r in enumerate(rows)})


def _config(path: Path, out: Path, window: int) -> BuildConfig:
    return BuildConfig(out=str(out), source="generic", path=str(path), k=4, n=4, wave_size=1,
                       sampling=Sampling(max_tokens=16, temperature=0.8, top_p=0.95),
                       engine=EngineConfig(engine="transformers"), decontaminate=False,
                       samples_per_batch=window)


def _tables(out: Path) -> dict[str, pl.DataFrame]:
    got = {t: pl.read_parquet(out / t) for t in TABLES}
    for split in ("train", "validation"):
        got[f"guided/{split}"] = pl.read_parquet(out / "export" / "guided" / f"{split}.parquet")
    return got


def _journal_keys(out: Path) -> list[tuple]:
    db = sqlite3.connect(out / "journal.sqlite")
    try:
        return db.execute("SELECT stage, problem_id, prefix_segments, wave FROM probes").fetchall()
    finally:
        db.close()


def _assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in a:
        key = "problem_id" if "problem_id" in a[name].columns else a[name].columns[0]
        left = a[name].sort(key).drop("provenance", strict=False)
        right = b[name].sort(key).drop("provenance", strict=False)
        assert left.equals(right), name


def test_out_of_order_stream_equals_the_batch_build(tmp_path):
    path = _problems_file(tmp_path)
    batch = SeededScriptedEngine(*_script(path))  # the default stream: generate() over chunks
    run_build(_config(path, tmp_path / "batch", window=10_000), engine=batch)
    reference = _tables(tmp_path / "batch")
    assert reference["prefixes.parquet"].height > 5  # a real search happened
    for order_seed in (1, 2):
        eng = OutOfOrderEngine(*_script(path), order_seed=order_seed)
        out = tmp_path / f"stream{order_seed}"
        run_build(_config(path, out, window=6), engine=eng)
        _assert_same(reference, _tables(out))
        keys = _journal_keys(out)
        assert len(keys) == len(set(keys)) == eng.requests  # each probe generated, journaled once
        assert 0 < eng.max_in_flight <= 6  # the window holds


def test_window_refills_as_probes_finish(tmp_path):
    """With one probe per problem finishing at a time, the window never drains to its last
    request while other problems wait: samples in flight stay at the window."""
    from pope_data.journal import Journal
    from pope_data.search import make_strategy
    from pope_data.service import SearchService, SearchTask

    problems = generate_synthetic(20, seed=3)
    eng = OutOfOrderEngine({p.problem: p.answer for p in problems},
                           {p.problem: 99 for p in problems}, order_seed=4)
    journal = Journal.open(tmp_path / "j.sqlite", {})
    service = SearchService(eng, journal, samples_per_batch=8, sampling=Sampling(max_tokens=8))
    tasks = [SearchTask(p, make_strategy("curate", problem_id=p.id, min_prefix=0, max_prefix=0,
                                         n=8, wave_size=2)) for p in problems]
    results = service.run("curate", tasks)
    assert all(r.fallback for r in results.values())  # all hard: 8 samples each, in waves
    assert journal.sample_counts("curate") == {p.id: 8 for p in problems}
    assert eng.max_in_flight == 8
    assert service.stream_stats.requests == journal.count("curate")


STALLING = r'''
import json, sys
from pathlib import Path

from pope_data.build import run_build
from tests.pope_data.fake_engine import OutOfOrderEngine
from tests.pope_data.test_stream_service import _config, _script

path, out, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
run_build(_config(path, out, window=6),
          engine=OutOfOrderEngine(*_script(path), order_seed=3, stall_after=25, marker=marker))
'''


def test_kill_mid_stream_then_resume_gives_the_same_build(tmp_path):
    path = _problems_file(tmp_path)
    run_build(_config(path, tmp_path / "whole", window=6),
              engine=OutOfOrderEngine(*_script(path), order_seed=3))
    out, marker = tmp_path / "killed", tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, "-c", STALLING, str(path), str(out), str(marker)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the build ended before it stalled"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    journaled = len(_journal_keys(out))
    assert 0 < journaled < 25  # mid-stream: some probes committed, the build not finished
    resumed = OutOfOrderEngine(*_script(path), order_seed=8)  # another completion order
    run_build(_config(path, out, window=6), engine=resumed)
    keys = _journal_keys(out)
    assert len(keys) == len(set(keys)) and resumed.requests == len(keys) - journaled
    _assert_same(_tables(tmp_path / "whole"), _tables(out))


@pytest.mark.parametrize("window", [1, 3])
def test_window_smaller_than_a_request_still_runs(tmp_path, window):
    # A request of n samples larger than the window goes alone; nothing deadlocks.
    path = _problems_file(tmp_path, count=4)
    eng = OutOfOrderEngine(*_script(path), order_seed=5)
    run_build(_config(path, tmp_path / "out", window=window), engine=eng)
    assert eng.max_in_flight <= max(window, 4)
