"""`pope-train run --backend trl --processes N`: options checked before any process starts, and two
CPU processes (torchrun, gloo) whose guidance agrees with one process's.

Sampling differs per process, so what must agree is what the gathered outcomes decide: every
process's scheme state after every step (one digest each in OUT/guidance/steps.jsonl), the rows
of the first step (the same prompts, shown the same way, as with one process), and a one-process
replay of the scheme on the logged outcomes reproduces every decision (rows shown, groups
regenerated per round, moves, the step's scheme metrics, the state).
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

from pope_eval.runinfo import LOCK_OWNER
from pope_train.backends.trl.metrics import read_metrics
from pope_train.backends.trl.resume import checkpoints
from pope_train.backends.trl.trainer import STEPS_LOG, group_records, state_digest
from pope_train.guidance import Runtime
from tests.trl.conftest import make_export, scripted_build

ROOT = Path(__file__).resolve().parents[2]
ORGANISM = ROOT / "tests" / "data" / "organism"
runner = CliRunner()
GROUP = 2  # --num-generations
PROMPTS = 4  # --prompts-per-step: two whole groups per process


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return scripted_build(tmp_path_factory.mktemp("processes"))


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> Path:
    """Unguided rows of problems outside the build: ghpo never hints their groups, so the
    processes of a ghpo step have different numbers of groups to regenerate."""
    return make_export(tmp_path_factory.mktemp("easy"), hard=1, easy=3) / "easy" / "train.parquet"


def _cli(*args: str) -> list[str]:
    return ["run", *args[:1], "--backend", "trl", "--model", str(ORGANISM), *args[1:]]


# -- checked before any process starts -------------------------------------------------------------

def test_prompts_per_step_must_split_over_the_processes_before_anything_is_written(export,
                                                                                   tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, _cli("pope", "--export", str(export), "--out", str(out),
                                  "--processes", "2", "--prompts-per-step", "3"))
    assert res.exit_code == 2
    line = " ".join(res.output.split())
    assert "--prompts-per-step: 3 prompts cannot be split over --processes 2" in line
    assert not out.exists()
    res = runner.invoke(app, _cli("pope", "--export", str(export), "--out", str(out),
                                  "--processes", "0"))
    assert res.exit_code == 2 and "--processes: must be >= 1" in res.output
    res = runner.invoke(app, _cli("sft_then_rl", "--export", str(export), "--out", str(out),
                                  "--processes", "2"))
    assert res.exit_code == 2 and "--processes: config sft_then_rl's SFT stage" in res.output
    # a valid split: each process generates its share of the step's rollouts
    res = runner.invoke(app, _cli("pope", "--export", str(export), "--out", str(out),
                                  "--processes", "2", "--prompts-per-step", "4",
                                  "--num-generations", "4", "--dry-run"))
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output[res.output.index("{"):])
    assert plan["grpo_config"]["per_device_train_batch_size"] == 8
    assert plan["grpo_config"]["ddp_backend"] == "gloo" and plan["config"]["processes"] == 2
    assert not out.exists()


def test_a_launcher_started_run_is_refused_with_the_flag_to_use(monkeypatch, export, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = runner.invoke(app, _cli("pope", "--export", str(export), "--out", str(tmp_path / "o")))
    assert res.exit_code == 2
    assert "started by a launcher (WORLD_SIZE=2)" in res.output and "--processes 2" in res.output
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_of_several_processes_resumes(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "pope_state.json"):
        (ckpt / name).write_text("{}")
    assert checkpoints(tmp_path) == []  # no RNG state: cut short
    (ckpt / "rng_state_1.pth").write_text("")
    assert checkpoints(tmp_path) == []  # process 0's is the one written first
    (ckpt / "rng_state_0.pth").write_text("")
    assert checkpoints(tmp_path) == [ckpt]


def test_a_failed_launch_names_the_process_and_its_error(tmp_path):
    from pope_train.backends.trl.launch import OUTPUT, _failure

    (tmp_path / OUTPUT).write_text("torchrun: ChildFailedError\n")
    assert "torchrun exited 1" in _failure(tmp_path, 1)  # no process left its error
    (tmp_path / "error-1.txt").write_text("Traceback (most recent call last):\n  ...\n"
                                          "RuntimeError: guidance: states differ\n")
    message = _failure(tmp_path, 1)
    assert message.splitlines()[0] == ("training process 1 failed: RuntimeError: guidance: "
                                       "states differ")


# -- two processes agree with one ------------------------------------------------------------------

SCHEMES = {  # recipe: extra options
    "pope": (),
    "pope_online": ("--refresh-every", "1", "--refresh-n", "2"),
    "ghpo": (),
    "pope_adaptive": (),
}


def _train(recipe: str, export: Path, out: Path, processes: int, easy: Path) -> str:
    extra = ("--train", str(easy)) if recipe == "ghpo" else ()
    res = runner.invoke(app, _cli(recipe, "--export", str(export), "--out", str(out),
                                  "--max-steps", "2", "--prompts-per-step", str(PROMPTS),
                                  "--num-generations", str(GROUP), "--max-completion-length",
                                  "8", "--processes", str(processes), *extra,
                                  *SCHEMES[recipe]))
    assert res.exit_code == 0, res.output
    return res.output


def _shown(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "scores"}


def _replay(recipe: str, export: Path, out: Path, easy: Path, tmp: Path,
            steps: list[dict]) -> None:
    """A fresh scheme in this one process, fed every step's logged outcomes, makes the run's
    decisions: the rows each step showed, the groups regenerated per round, the scheme's step
    metrics and the state every process reported."""
    import pyarrow.parquet as pq

    from pope_train.backends.trl.backend import TrlConfig, plan_trl

    extra = {"train_files": (str(easy),)} if recipe == "ghpo" else {}
    options = {"refresh_every": 1, "refresh_n": 2} if recipe == "pope_online" else {}
    plan = plan_trl(TrlConfig(config=recipe, model=str(ORGANISM), export_dir=str(export),
                              out_dir=str(out), max_steps=2, prompts_per_step=PROMPTS,
                              num_generations=GROUP, max_completion_length=8,
                              processes=steps[0]["processes"], **extra, **options))
    assert plan.folder.finished  # the same config as the run: its fresh scheme
    scheme = plan.scheme
    scheme.start(Runtime(out_dir=tmp, group=GROUP, count_tokens=len, write=lambda r: None,
                         say=lambda line: None))
    source = {(r["extra_info"]["problem_id"], bool(r["extra_info"]["guided"])): r
              for path in plan.train_files for r in pq.read_table(path).to_pylist()}
    metrics = {r["step"]: r for r in read_metrics(out / "metrics.jsonl") if "step" in r}
    refreshes = [json.loads(x) for x in (out / "guidance" / "refreshes.jsonl").read_text()
                 .splitlines()] if recipe == "pope_online" else []
    for trace in steps:
        step = trace["step"] - 1
        inputs = [source[(g["problem_id"], bool(g.get("guided") or g.get("graduated")))]
                  for g in trace["first"] for _ in range(GROUP)]
        rows = scheme.rows(inputs, step)
        assert [_shown(g) for g in group_records(rows, [0] * len(rows), GROUP)] == \
            [_shown(g) for g in trace["first"]], f"step {trace['step']}: rows shown"
        scores = [s for g in trace["first"] for s in g["scores"]]
        for round, done in enumerate(trace["rounds"]):
            redo = scheme.regenerate(rows, scores, round, step)
            assert sorted(redo) == done["groups"], f"step {trace['step']} round {round}"
            for g, new in zip(done["groups"], done["new"]):
                rows[g * GROUP:(g + 1) * GROUP] = redo[g]
                scores[g * GROUP:(g + 1) * GROUP] = new["scores"]
                assert _shown(group_records(redo[g], new["scores"], GROUP)[0]) == _shown(new)
        assert scheme.regenerate(rows, scores, len(trace["rounds"]), step) == {}
        logged = scheme.observe(rows, scores, step)
        for key, value in logged.items():
            assert metrics[trace["step"]][key] == pytest.approx(value), key
        # every process reported the state this one-process replay reached
        assert set(trace["state_digests"]) == {state_digest(scheme.state())}
        # online POPE: the main process's refresh, taken by every process (next step's rows)
        for refresh in refreshes:
            if refresh.get("refresh_step") == trace["step"] and not refresh.get("start"):
                scheme.table.prefix = dict(refresh["prefix"])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(SCHEMES))
def test_two_processes_make_the_decisions_one_process_makes(recipe, export, easy, tmp_path):
    runs = {n: tmp_path / f"p{n}" for n in (1, 2)}
    console = {n: _train(recipe, export, out, n, easy) for n, out in runs.items()}
    traces = {}
    for n, out in runs.items():
        # one writer: the run's files once each, no lock left, the config records the count
        assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "step" in r] == [1, 2]
        assert not (out / LOCK_OWNER).exists() and (out / "final" / "config.json").is_file()
        config = json.loads((out / "run_config.json").read_text())
        assert config["config"]["processes"] == n
        assert config["grpo_config"]["per_device_train_batch_size"] == PROMPTS * GROUP // n
        traces[n] = [json.loads(x) for x in (out / "guidance" / STEPS_LOG).read_text()
                     .splitlines()]
        assert [t["step"] for t in traces[n]] == [1, 2]
        assert all(t["processes"] == n and len(t["state_digests"]) == n for t in traces[n])
        assert "done: 2 steps" in " ".join(console[n].split())
        _replay(recipe, export, out, easy, tmp_path / f"replay{n}", traces[n])
    # the first step: the same prompts, shown alike, with one process or two
    assert [_shown(g) for g in traces[2][0]["first"]] == [_shown(g) for g in traces[1][0]["first"]]
    out = runs[2]
    if recipe == "pope_adaptive":
        table = (out / "guidance" / "adaptive.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in table] == [1, 2]
    if recipe == "pope_online":
        records = read_metrics(out / "metrics.jsonl")
        assert [r["refresh_step"] for r in records if "refresh_step" in r] == [1]
        assert "refresh at step 1:" in console[2]
    if recipe == "ghpo":
        rounds = [r for t in traces[2] for r in t["rounds"]]
        assert rounds, "the organism fails these problems within 8 tokens: groups are hinted"
        per_process = [[g // (PROMPTS // 2) for g in r["groups"]] for r in rounds]
        # some round had processes with different numbers of groups to redo (no deadlock)
        assert any(p.count(0) != p.count(1) for p in per_process), per_process
        hints = [json.loads(x) for x in (out / "guidance" / "hints.jsonl").read_text()
                 .splitlines()]
        assert [len(h["groups"]) for h in hints] == [len(r["groups"]) for r in rounds]


# -- killed and resumed ----------------------------------------------------------------------------

def _resumable(export: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pope_cli.train",
            *_cli("pope_adaptive", "--export", str(export), "--out", str(out), "--max-steps", "4",
                  "--save-steps", "2", "--prompts-per-step", str(PROMPTS), "--num-generations",
                  str(GROUP), "--max-completion-length", "8", "--processes", "2", "--seed", "3")]


@pytest.mark.slow
def test_two_processes_killed_after_a_checkpoint_resume_to_the_uninterrupted_run(export,
                                                                                 tmp_path):
    """kill -9 of `pope-train run` (its process group: torchrun has a session of its own) once
    checkpoint-2 is complete: torchrun and both training processes die with it, none goes on
    writing; the same command resumes the run, and metrics, guidance steps, scheme state and
    final weights equal a run never interrupted."""
    import torch
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    done = subprocess.run(_resumable(export, whole), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job = subprocess.Popen(_resumable(export, resumed), cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while not checkpoints(resumed) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    time.sleep(10)  # orphaned training processes would finish the 4 steps by now
    assert not (resumed / "final").exists() and len(checkpoints(resumed)) == 1
    # every process's RNG state is in the checkpoint that the kill left complete
    assert {p.name for p in checkpoints(resumed)[0].glob("rng_state_*.pth")} == \
        {"rng_state_0.pth", "rng_state_1.pth"}
    done = subprocess.run(_resumable(export, resumed), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from" in " ".join((done.stdout + done.stderr).split())

    def steps(out: Path) -> list[dict]:
        return [r for r in read_metrics(out / "metrics.jsonl") if "step" in r]

    def timeless(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.endswith("_time")} for r in records]

    assert [r["step"] for r in steps(resumed)] == [1, 2, 3, 4]  # no step twice
    assert timeless(steps(resumed)) == timeless(steps(whole))
    traces = {d: [json.loads(x) for x in (d / "guidance" / STEPS_LOG).read_text().splitlines()]
              for d in (whole, resumed)}
    assert [t["step"] for t in traces[resumed]] == [1, 2, 3, 4]
    assert [t["state_digests"] for t in traces[resumed]] == \
        [t["state_digests"] for t in traces[whole]]
    a = load_file(whole / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
