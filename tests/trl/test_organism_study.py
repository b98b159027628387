"""The model-organism study end to end, at CI size: the committed organism -> `pope-data build
--source organism` -> 10 TRL GRPO steps of each arm -> `pope-eval pass-at-k` -> tables and
figures, all through `bench/organism.py --quick` and the command lines it calls (the `study`
fixture, tests/trl/conftest.py; the guidance arms' own checks: test_guidance_study.py).

It asserts the pipeline, not the science: which arm wins is the benchmark's finding.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from bench.organism import recounted, run_tokens
from pope_train.backends.trl.metrics import EVAL_FIELDS, read_metrics
from tests.trl.conftest import QUICK_EVERY, QUICK_STEPS, STUDY_ARMS

ROOT = Path(__file__).resolve().parents[2]
ORGANISM = ROOT / "tests" / "data" / "organism"


def test_the_hard_set_is_zero_of_k_and_most_hard_problems_get_a_minimal_prefix(study):
    curate = pl.read_parquet(study / "t0" / "build" / "curate.parquet")
    hard = curate.filter(pl.col("hard"))
    assert hard.height >= 4
    assert (hard["correct"] == 0).all() and (hard["drawn"] == hard["k"]).all()
    assert (hard["k"] >= 64).all()
    easy = curate.filter(~pl.col("hard"))
    assert easy.height >= 4 and (easy["correct"] >= 1).all()  # the easy set of the same family
    prefixes = pl.read_parquet(study / "t0" / "build" / "prefixes.parquet")
    assert set(prefixes["problem_id"]) == set(hard["id"])
    found = prefixes.filter(~pl.col("fallback"))
    assert found.height > prefixes.height / 2
    assert (found["i_star"] < found["num_segments"]).all()


def test_pope_learns_from_guided_rollouts_and_hard_only_gets_no_update_without_a_success(study):
    pope = [r for r in read_metrics(study / "t0" / "runs" / "pope-s0" / "metrics.jsonl") if "step" in r]
    hard = [r for r in read_metrics(study / "t0" / "runs" / "hard_only-s0" / "metrics.jsonl")
            if "step" in r]
    assert len(pope) == len(hard) == QUICK_STEPS
    assert any((r["reward_guided"] or 0) > 0 for r in pope)
    assert any(r["grad_norm"] > 0 for r in pope)
    assert all(r["reward_guided"] is None for r in hard)
    silent = [r for r in hard if r["reward"] == 0]
    assert len(silent) >= len(hard) // 2  # 0 of 64 at the build: most steps see no success
    # No correct rollout in a group: every advantage is 0, so loss and gradient are exactly 0.
    assert all(r["loss"] == 0.0 and r["grad_norm"] == 0.0 for r in silent)
    if len(silent) == len(hard):  # and then the weights never moved
        from safetensors.numpy import load_file

        base = load_file(ORGANISM / "model.safetensors")
        final = load_file(study / "t0" / "runs" / "hard_only-s0" / "final" / "model.safetensors")
        assert all((final[k] == v).all() for k, v in base.items())


def test_the_evaluation_callback_and_pope_eval_report_every_arm(study):
    for arm in STUDY_ARMS:
        evals = [r for r in read_metrics(study / "t0" / "runs" / f"{arm}-s0" / "metrics.jsonl")
                 if "eval_step" in r]
        assert [r["eval_step"] for r in evals] == [0, QUICK_EVERY, QUICK_STEPS]
        assert all(set(EVAL_FIELDS) <= set(r) for r in evals)
        assert evals[0]["eval_solvable"] == 0.0  # the hard set, by construction
        summary = json.loads((study / "t0" / "eval" / f"{arm}-s0" / "summary.json").read_text())
        assert "8" in summary["pass_at_k"]
    results = json.loads((study / "results.json").read_text())
    assert set(results["summaries"]) == set(STUDY_ARMS)
    assert results["final_solvable"]["pope"]["values"] and "H1 (S)" in results["decisions"]
    table = (study / "results.md").read_text()
    assert "| pope |" in table and "| hard_only |" in table and "| base |" in table
    for arm in STUDY_ARMS:  # each run on its own row: its S curve, rewards and held-out S
        row = next(line for line in table.splitlines() if line.startswith(f"| {arm}, t0-s0 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        run = results["summaries"][arm]["per_run"]["t0-s0"]
        assert len(cells[1].split(", ")) == len(run["S_curve"]) == 3
        assert float(cells[4]) == round(run["heldout_S"], 3)
    for png in ("solvable.png", "pass_at_k.png"):
        assert (study / png).stat().st_size > 5000


def test_the_records_of_a_study_restore_into_a_folder_that_summarises_them_without_training(
        study, tmp_path):
    """bench/study_records.py: what a session keeps of its part, and the next part's start."""
    import subprocess
    import sys

    records, again = tmp_path / "records", tmp_path / "again"
    # A run still training is left out by name, never half kept.
    cut = study / "t0" / "runs" / "pope-s9"
    (cut / "checkpoint-5").mkdir(parents=True)
    try:
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "study_records.py"), "save",
                              str(study), str(records)], capture_output=True, text=True, check=True,
                             cwd=ROOT).stdout
    finally:
        (cut / "checkpoint-5").rmdir()
        cut.rmdir()
    assert f"saved 1 builds and {len(STUDY_ARMS)} runs" in out
    assert "left out: t0/runs/pope-s9: training" in out
    kept = [p.relative_to(records).as_posix() for p in records.rglob("*") if p.is_file()]
    assert not [p for p in kept if p.endswith((".safetensors", ".pt", ".sqlite"))
                or "checkpoint-" in p]
    assert "t0/runs/pope-s0/metrics.jsonl" in kept and "t0/eval/pope-s0/summary.json" in kept
    assert "t0/build/export/hard/validation.parquet" in kept
    subprocess.run([sys.executable, str(ROOT / "bench" / "study_records.py"), "restore",
                    str(records), str(again)], check=True, cwd=ROOT, capture_output=True)
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "organism.py"), "--out", str(again),
                          "--quick", "--arms", ",".join(STUDY_ARMS), "--seeds", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"{len(STUDY_ARMS)} training runs ({len(STUDY_ARMS)} finished before)" in res.stdout
    first, second = (json.loads((d / "results.json").read_text()) for d in (study, again))
    for key in ("summaries", "final_solvable", "pass_at_k", "decisions"):
        assert second[key] == first[key], key
    # A study in progress: --summary-only trains nothing, names the runs it leaves out, and
    # summarises the finished ones as the full call does.
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "organism.py"), "--out", str(again),
                          "--quick", "--arms", ",".join(STUDY_ARMS), "--seeds", "0,1",
                          "--summary-only"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    left = ", ".join(f"{arm} t0-s1" for arm in STUDY_ARMS)
    assert f"summary only: {len(STUDY_ARMS)} unfinished runs left out ({left})" in res.stdout
    assert not list(again.glob("t0/runs/*-s1"))
    partial = json.loads((again / "results.json").read_text())
    assert partial["summaries"] == first["summaries"]
    assert "A partial summary: " in (again / "results.md").read_text()


def test_the_opchain_family_runs_the_same_study_end_to_end(opchain_study):
    """The second family through the same command: its build curates 6-rare-operation chains as
    hard (0 of k) and chains with no rare operation as easy, both arms train and are scored on
    held-out problems."""
    curate = pl.read_parquet(opchain_study / "t0" / "build" / "curate.parquet")
    hard = curate.filter(pl.col("hard"))
    assert hard.height >= 4 and (hard["correct"] == 0).all() and (hard["k"] >= 16).all()
    assert curate.filter(~pl.col("hard")).height >= 4
    problems = pl.read_parquet(opchain_study / "t0" / "build" / "problems.parquet")
    assert all(i.startswith("opchain-") for i in problems["id"])
    for arm in ("pope", "hard_only"):
        steps = [r for r in read_metrics(opchain_study / "t0" / "runs" / f"{arm}-s0"
                                         / "metrics.jsonl") if "step" in r]
        assert len(steps) == QUICK_STEPS
        summary = json.loads((opchain_study / "t0" / "eval" / f"{arm}-s0" / "summary.json")
                             .read_text())
        assert "8" in summary["pass_at_k"]
    results = json.loads((opchain_study / "results.json").read_text())
    settings = results["settings"]
    assert settings["source"] == "opchain" and settings["difficulty"] == 6
    assert settings["easy_difficulty"] == 0
    assert set(results["summaries"]) == {"pope", "hard_only"}


def test_the_guidance_recount_from_a_runs_trace_and_build_gives_what_the_trainer_logged(
        opchain_study, tmp_path):
    """bench/recount_guidance.py on a static POPE run whose build has fallback prefixes: from
    guidance/steps.jsonl, the build and the run's tokenizer it gives every step's logged count,
    fallback rows included; a run that logged no count gets the same total written beside it, and
    bench/organism.py reads it; a log the recount does not reproduce is refused by step."""
    import shutil
    import subprocess
    import sys

    tool = [sys.executable, str(ROOT / "bench" / "recount_guidance.py")]
    run = opchain_study / "t0" / "runs" / "pope-s0"
    res = subprocess.run(tool + [str(run)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    row = next(line for line in res.stdout.splitlines() if line.startswith(f"| {run} "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    steps, logged_steps, rule, logged, total, differing, fallback = cells[1:]
    assert (steps, logged_steps, rule, differing) == (str(QUICK_STEPS), str(QUICK_STEPS),
                                                      "as recounted", "0")
    assert float(logged) == int(total) > 0 and int(fallback) > 0

    def copy_with(dest: Path, change) -> Path:
        shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoint-*", "*.safetensors",
                                                                  "*.pt"))
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        (dest / "metrics.jsonl").write_text("".join(json.dumps(change(x)) + "\n" for x in rows))
        return dest

    unlogged = copy_with(tmp_path / "unlogged", lambda x: {**x, "guidance_tokens": None}
                         if "step" in x else x)
    res = subprocess.run(tool + [str(unlogged), "--write"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    written = json.loads((unlogged / "guidance_recount.json").read_text())
    assert written["logged_rule"] == "none logged" and written["total"] == int(total)
    rows = recounted(unlogged, read_metrics(unlogged / "metrics.jsonl"))
    assert run_tokens(rows, 8)["guidance"] == int(total)

    wrong = copy_with(tmp_path / "wrong", lambda x: {**x, "guidance_tokens": x["guidance_tokens"]
                                                     + (x["step"] == 3)} if "step" in x else x)
    res = subprocess.run(tool + [str(wrong), "--write"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 1 and "step 3 logged" in res.stderr
    assert not (wrong / "guidance_recount.json").exists()
