"""An interrupted `pope-train run --backend trl` resumes: kill -9 after a checkpoint, the same command again, and the result equals an uninterrupted run.

Real CLI in a subprocess on the organism model (tests/data/organism) and a scripted build's export;
also a finished run rerun (one line, exit 0, nothing trained) and a changed option (refused with
the changed fields).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pope_cli.train import app
from typer.testing import CliRunner

from pope_data.organism import generate_organism
from pope_train.backends.trl.metrics import read_metrics
from tests.trl.conftest import make_export, scripted_build

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ORGANISM = ROOT / "tests" / "data" / "organism"
runner = CliRunner()
# Wall-clock fields: the only ones allowed to differ between the two runs.
TIMES = {"step_time", "refresh_time", "eval_time"}
EXTRA = {"pope": [], "pope_online": ["--refresh-every", "2", "--refresh-n", "2"]}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """pope: 6 organism problems of 10 operations, each unguided and guided (12 rows);
    pope_online needs a build folder (a scripted build)."""
    root = tmp_path_factory.mktemp("resume")
    return {"pope": make_export(root / "organism", easy=0,
                                problems=generate_organism(6, seed=0, difficulty=10)),
            "pope_online": scripted_build(root / "scripted")}


def _args(recipe: str, export: Path, out: Path) -> list[str]:
    return ["run", recipe, "--backend", "trl", "--model", str(ORGANISM), "--export", str(export),
            "--out", str(out), "--max-steps", "6", "--save-steps", "3", "--prompts-per-step",
            "4", "--num-generations", "4", "--max-completion-length", "16",
            "--learning-rate", "1e-4", "--seed", "3", *EXTRA[recipe]]


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pope_cli.train", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _killed_after_checkpoint(args: list[str], out: Path) -> None:
    """Start the command, kill -9 it as soon as checkpoint-3 is complete (before the run ends).
    3 steps of 4 prompts are one pass over the export's 12 rows: the rerun starts a new epoch,
    whose prompt order must continue the uninterrupted run's."""
    proc = subprocess.Popen(_command(args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = out / "checkpoint-3" / "pope_state.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "final").exists()


def _without_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


@pytest.fixture(scope="module", params=sorted(EXTRA))
def runs(request, exports, tmp_path_factory):
    """(recipe, uninterrupted run folder, interrupted-and-resumed run folder, rerun's output)."""
    recipe, root = request.param, tmp_path_factory.mktemp(f"resume_{request.param}")
    export = exports[recipe]
    whole, resumed = root / "whole", root / "resumed"
    res = subprocess.run(_command(_args(recipe, export, whole)), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _killed_after_checkpoint(_args(recipe, export, resumed), resumed)
    res = subprocess.run(_command(_args(recipe, export, resumed)), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return recipe, whole, resumed, res.stdout + res.stderr


def test_the_rerun_resumes_from_the_last_checkpoint(runs):
    _, _, resumed, output = runs
    text = " ".join(output.split())
    assert "resuming from" in text and "checkpoint-" in text
    for n in (3, 6):
        ckpt = resumed / f"checkpoint-{n}"
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "pope_state.json",
                     "model.safetensors"):
            assert (ckpt / name).is_file(), ckpt / name


def test_resumed_metrics_equal_the_uninterrupted_run_step_for_step(runs):
    recipe, whole, resumed, _ = runs
    a, b = read_metrics(whole / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in b if "step" in r] == [1, 2, 3, 4, 5, 6]  # no step twice
    # CPU float32 with the same seed: the resumed run's numbers are exactly the uninterrupted's.
    assert _without_times(b) == _without_times(a)
    # Entropy follows the prompts and the sampling RNG step by step.
    assert len({r["entropy"] for r in a if "step" in r}) > 1
    if recipe == "pope_online":
        assert [r["refresh_step"] for r in b if "refresh_step" in r] == [2, 4]
        history = [_without_times(read_metrics(d / "guidance" / "refreshes.jsonl"))
                   for d in (whole, resumed)]
        assert history[0] == history[1] and [r["refresh_step"] for r in history[1]] == [0, 2, 4]
        state = json.loads((resumed / "checkpoint-3" / "pope_state.json").read_text())
        assert state["scheme"] == "online" and state["state"]["prefix"] == history[1][1]["prefix"]


def test_resumed_final_weights_equal_the_uninterrupted_run(runs):
    import torch
    from safetensors.torch import load_file

    recipe, whole, resumed, _ = runs
    a = load_file(whole / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    start = load_file(ORGANISM / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert start.keys() <= a.keys()


def test_a_finished_run_rerun_says_so_and_trains_nothing(runs, exports):
    recipe, whole, _, _ = runs
    export = exports[recipe]
    before = (whole / "metrics.jsonl").read_text()
    stamp = (whole / "final" / "model.safetensors").stat().st_mtime_ns
    # -v is not part of the run's config: still the same run.
    res = runner.invoke(app, [*_args(recipe, export, whole), "-v"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    done = [line for line in lines if line.startswith("done:")]
    assert len(done) == 1 and "finished (6 steps" in done[0] and "nothing to train" in done[0]
    # Nothing else from the command: no plan lines, no progress.
    assert not [line for line in lines if line.startswith(("train:", "model:", "out:", "step "))]
    assert (whole / "metrics.jsonl").read_text() == before
    assert (whole / "final" / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_changed_option_is_refused_with_the_changed_fields(runs, exports):
    recipe, _, resumed, _ = runs
    export = exports[recipe]
    args = _args(recipe, export, resumed)
    changed = [*args[:args.index("--learning-rate") + 1], "2e-4",
               *args[args.index("--learning-rate") + 2:]]
    before = (resumed / "metrics.jsonl").read_text()
    res = runner.invoke(app, changed)
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "holds a run with another config" in text
    assert "Changed: learning_rate: 0.0001 -> 0.0002" in text
    assert (resumed / "metrics.jsonl").read_text() == before


def test_pope_online_resumes_with_the_prefix_table_of_its_checkpoint(runs, exports, tmp_path):
    """The prefix table comes from checkpoint-N/pope_state.json: a table shortened there is what
    the resumed steps show and the next refresh starts from (a refresh never lengthens)."""
    import shutil

    recipe, _, resumed, _ = runs
    if recipe != "pope_online":
        pytest.skip("the prefix table is pope_online's")
    out = tmp_path / "again"
    shutil.copytree(resumed, out)
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoint-6")
    path = out / "checkpoint-3" / "pope_state.json"
    saved = json.loads(path.read_text())
    longest = max(saved["state"]["prefix"], key=saved["state"]["prefix"].get)
    assert saved["state"]["prefix"][longest] > 1
    saved["state"]["prefix"][longest] = 1
    path.write_text(json.dumps(saved))
    res = runner.invoke(app, _args(recipe, exports[recipe], out))
    assert res.exit_code == 0, res.output
    history = read_metrics(out / "guidance" / "refreshes.jsonl")
    assert [r["refresh_step"] for r in history] == [0, 2, 4]
    assert history[2]["prefix"][longest] <= 1 < history[1]["prefix"][longest]
