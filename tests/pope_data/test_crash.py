"""kill -9 in the middle of a build's export and of a merge: the rerun completes the folder.

A subprocess runs the build (scripted engine) or the merge and stalls right after writing the
temporary file of its third export table, before the rename; the test kills it there.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from pope_data.build import run_build
from pope_data.config import BuildConfig
from pope_data.export import CONFIGS, SPLITS
from pope_data.shards import merge
from pope_data.synthetic import generate_synthetic
from pope_eval.engines import EngineConfig, Sampling
from tests.pope_data.fake_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]
STALLING = r'''
import json, sys, time
from pathlib import Path

import pyarrow.parquet as pq

what, marker, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
real = pq.write_table
written = []


def stall(table, where, *a, **kw):
    real(table, where, *a, **kw)
    if "export" in Path(where).parts:
        written.append(where)
        if len(written) == 3:  # written to its temporary name, not yet renamed into place
            marker.write_text(str(where))
            time.sleep(600)


pq.write_table = stall
if what == "build":
    from pope_data.build import run_build
    from tests.pope_data.test_crash import _config, _engine

    run_build(_config(Path(args["path"]), Path(args["out"])), engine=_engine(Path(args["path"])))
else:
    from pope_data.shards import merge

    merge(args["shards"], args["out"])
'''


def _problems(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _engine(path: Path) -> ScriptedEngine:
    rows = _problems(path)
    return ScriptedEngine({r["problem"]: r["answer"] for r in rows},
                          {r["problem"]: 1 + j % 3 for j, r in enumerate(rows)})


def _config(path: Path, out: Path, shard: str | None = None) -> BuildConfig:
    return BuildConfig(out=str(out), source="generic", path=str(path), k=2, n=2, wave_size=1,
                       sampling=Sampling(max_tokens=16, temperature=0.8, top_p=0.95),
                       engine=EngineConfig(engine="transformers"), decontaminate=False,
                       shard=shard)


def _problems_file(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n"
                            for p in generate_synthetic(8, seed=5)))
    return path


def _kill_while_exporting(tmp_path: Path, what: str, args: dict) -> str:
    """Run `what` in a subprocess, kill -9 it (and its grading workers) once it stalls; returns
    the path of the temporary file it was writing."""
    marker = tmp_path / f"{what}.stalled"
    proc = subprocess.Popen([sys.executable, "-c", STALLING, what, str(marker), json.dumps(args)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the subprocess never reached the export"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return marker.read_text()


def _same_outputs(a: Path, b: Path) -> None:
    for config in CONFIGS:
        for split in SPLITS:
            name = Path("export") / config / f"{split}.parquet"
            assert pl.read_parquet(a / name).equals(pl.read_parquet(b / name)), name
    assert pl.read_parquet(a / "prefixes.parquet").equals(pl.read_parquet(b / "prefixes.parquet"))


def test_kill_9_during_export_then_rerun_completes_the_folder(tmp_path):
    path = _problems_file(tmp_path)
    run_build(_config(path, tmp_path / "ref"), engine=_engine(path))
    out = tmp_path / "run"
    partial = _kill_while_exporting(tmp_path, "build", {"path": str(path), "out": str(out)})
    assert Path(partial).exists() and Path(partial).name.endswith(".tmp")
    assert not (out / "summary.json").exists()  # the folder says it is unfinished

    again = _engine(path)
    s = run_build(_config(path, out), engine=again)
    assert again.calls == 0  # every probe was journaled before the export
    assert s.replayed > 0 and not list(out.rglob(".*.tmp"))
    _same_outputs(tmp_path / "ref", out)
    assert json.loads((out / "summary.json").read_text())["counts"] == s.counts


def test_kill_9_during_merge_then_rerun_completes_the_folder(tmp_path):
    path = _problems_file(tmp_path)
    shards = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        run_build(_config(path, out, shard=f"{i}/2"), engine=_engine(path))
        shards.append(str(out))
    counts = merge(shards, tmp_path / "ref")
    dest = tmp_path / "merged"
    partial = _kill_while_exporting(tmp_path, "merge", {"shards": shards, "out": str(dest)})
    assert Path(partial).exists() and not (dest / "summary.json").exists()

    assert merge(shards, dest) == counts
    assert not list(dest.rglob(".*.tmp"))
    _same_outputs(tmp_path / "ref", dest)
    ref = json.loads((tmp_path / "ref" / "summary.json").read_text())
    got = json.loads((dest / "summary.json").read_text())
    assert {**got, "out": None} == {**ref, "out": None}
