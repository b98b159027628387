"""Guidance during training (pope_train.guidance, pope_train.backends.trl.trainer): the rules on small
inputs, the refresh through pope's journal with the real organism, and the three guidance arms
of the quick organism study (the `study` fixture: 10 real TRL GRPO steps per arm).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pope_data.journal import Journal
from pope_eval.engines import EngineConfig, Sampling
from pope_eval.engines.transformers_engine import TransformersEngine
from pope_eval.errors import ConfigError
from pope_train.backends.trl.metrics import read_metrics
from pope_train.backends.trl.trainer import merge_rows
from pope_train.guidance.online import REFRESH_FIELDS
from pope_train.guidance.table import (
    GuidanceTable,
    load_guided_problems,
    parse_ratios,
    ratio_at,
    ratio_prefix,
    refresh,
    refresh_fingerprint,
)
from tests.trl.conftest import QUICK_EVERY, QUICK_STEPS

ROOT = Path(__file__).resolve().parents[2]
ORGANISM = ROOT / "tests" / "data" / "organism"
POPE_TRAIN = str(Path(sys.executable).parent / "pope-train")


def _rows(study: Path, subset: str) -> list[dict]:
    return pq.read_table(study / "t0" / "build" / "export" / subset / "train.parquet").to_pylist()


def _hard_ids(study: Path) -> set[str]:
    return {r["extra_info"]["problem_id"] for r in _rows(study, "hard")}


def _table(study: Path) -> GuidanceTable:
    problems, guidance = load_guided_problems(study / "t0" / "build" / "export", _hard_ids(study))
    return GuidanceTable(problems, guidance)


# -- rules on small inputs (the schemes' own, on a small build: test_schemes.py) ---------------

def test_ratios_are_parsed_checked_and_scheduled_in_equal_phases():
    assert parse_ratios("0.5, 0.25", "--ratio-schedule") == (0.5, 0.25)
    for bad in ("", "0.5,1", "half", "0"):
        with pytest.raises(ConfigError, match="--ratio-schedule"):
            parse_ratios(bad, "--ratio-schedule")
    assert [ratio_at((0.5, 0.25), s, 10) for s in range(10)] == [0.5] * 5 + [0.25] * 5
    assert ratio_at((0.5, 0.25, 0.1), 99, 100) == 0.1


def test_merging_a_regenerated_group_re_pads_and_recounts_the_loss_normaliser():
    base = {"prompt_ids": torch.tensor([[9, 1, 2], [9, 1, 2], [5, 6, 7], [5, 6, 7]]),
            "prompt_mask": torch.ones(4, 3, dtype=torch.long),
            "completion_ids": torch.tensor([[3, 0], [3, 3], [4, 0], [4, 4]]),
            "completion_mask": torch.tensor([[1, 0], [1, 1], [1, 0], [1, 1]]),
            "advantages": torch.zeros(4), "num_items_in_batch": torch.tensor(6)}
    sub = {"prompt_ids": torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]]),
           "prompt_mask": torch.ones(2, 4, dtype=torch.long),
           "completion_ids": torch.tensor([[1, 2, 3], [1, 0, 0]]),
           "completion_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
           "advantages": torch.tensor([0.7, -0.7]), "num_items_in_batch": torch.tensor(4)}
    out = merge_rows(base, sub, [2, 3], pad_id=0)
    assert out["prompt_ids"].tolist() == [[0, 9, 1, 2], [0, 9, 1, 2], [5, 6, 7, 8], [5, 6, 7, 8]]
    assert out["prompt_mask"].tolist()[0] == [0, 1, 1, 1]  # prompts are padded on the left
    assert out["completion_ids"].tolist() == [[3, 0, 0], [3, 3, 0], [1, 2, 3], [1, 0, 0]]
    assert out["advantages"].tolist() == pytest.approx([0, 0, 0.7, -0.7])
    assert int(out["num_items_in_batch"]) == 1 + 2 + 3 + 1
    with pytest.raises(ValueError, match="differ in keys"):
        merge_rows(base, {k: v for k, v in sub.items() if k != "advantages"}, [2, 3], 0)


# -- the refresh with the real organism --------------------------------------------------------

class _Killed(Exception):
    pass


def _organism_engine() -> TransformersEngine:
    return TransformersEngine.from_config(EngineConfig(engine="transformers", model=str(ORGANISM),
                                                       seed=0, dtype="float32"))


class _DiesAfter(TransformersEngine):
    """The organism's engine, killed after `calls` generate() calls (a crash mid-refresh)."""

    def __init__(self, calls: int, loaded: TransformersEngine):
        super().__init__(model=loaded.model, model_obj=loaded.model_obj,
                         tokenizer=loaded.tokenizer, seed=loaded.seed, device=loaded.device,
                         dtype=loaded.dtype)
        self.calls = calls

    def _generate(self, requests, progress):
        if self.calls == 0:
            raise _Killed
        self.calls -= 1
        return super()._generate(requests, progress)


def _refresh(study: Path, journal_path: Path, engine, table: GuidanceTable) -> dict:
    sampling = Sampling(max_tokens=236, temperature=1.0, top_p=1.0, seed=0)
    journal = Journal.open(journal_path, refresh_fingerprint(str(ORGANISM), 0, 8, sampling,
                                                             table.guidance))
    try:
        return refresh(table, engine, journal, 10, n=8, sampling=sampling, batch_samples=32)
    finally:
        journal.close()


def test_a_killed_refresh_resumes_from_its_journal_to_the_same_prefixes(study, tmp_path):
    whole = _table(study)
    # Every problem starts from a prefix the organism solves at (6 of 10 lines: 48 of 48 in its
    # regime check), so each search has room to go down.
    whole.prefix = {pid: 6 for pid in whole.prefix}
    start = dict(whole.prefix)
    engine = _organism_engine()
    record = _refresh(study, tmp_path / "whole.sqlite", engine, whole)
    assert set(REFRESH_FIELDS) <= set(record)
    assert all(whole.prefix[p] <= start[p] for p in start)  # never longer
    assert record["refresh_shortened"] >= 1
    assert sum(record["refresh_istar_hist"].values()) == len(start)

    resumed = _table(study)
    resumed.prefix = dict(start)
    dying = _DiesAfter(2, engine)
    with pytest.raises(_Killed):
        _refresh(study, tmp_path / "resumed.sqlite", dying, resumed)
    assert resumed.prefix == start  # nothing applied from a refresh that did not finish
    kept = sqlite3.connect(tmp_path / "resumed.sqlite").execute(
        "SELECT COUNT(*) FROM probes").fetchone()[0]
    assert kept >= 1
    again = _refresh(study, tmp_path / "resumed.sqlite", engine, resumed)
    assert resumed.prefix == whole.prefix
    assert again["refresh_istar_hist"] == record["refresh_istar_hist"]
    stage = sqlite3.connect(tmp_path / "resumed.sqlite").execute(
        "SELECT DISTINCT stage FROM probes").fetchall()
    assert stage == [("refresh-step-000010",)]


# -- the guidance arms of the quick study --------------------------------------------------------

def _steps(study: Path, arm: str) -> list[dict]:
    return [r for r in read_metrics(study / "t0" / "runs" / f"{arm}-s0" / "metrics.jsonl") if "step" in r]


def test_online_pope_refreshes_through_its_journal_and_never_lengthens_a_prefix(study):
    run = study / "t0" / "runs" / "pope_online-s0"
    records = [r for r in read_metrics(run / "metrics.jsonl") if "refresh_step" in r]
    # every QUICK_EVERY steps, not after the last
    assert [r["refresh_step"] for r in records] == [QUICK_EVERY]
    assert all(set(REFRESH_FIELDS) <= set(r) for r in records)
    assert records[0]["refresh_tokens"] > 0 and records[0]["refresh_samples"] > 0
    history = [json.loads(x) for x in (run / "guidance" / "refreshes.jsonl").read_text().splitlines()]
    assert history[0]["start"] and [h["refresh_step"] for h in history] == [0, QUICK_EVERY]
    before, after = history[0]["prefix"], history[-1]["prefix"]
    assert before.keys() == after.keys() == _hard_ids(study)
    assert all(after[p] <= before[p] for p in before)
    conn = sqlite3.connect(run / "guidance" / "journal.sqlite")
    assert conn.execute("SELECT DISTINCT stage FROM probes").fetchall() == [
        (f"refresh-step-{QUICK_EVERY:06d}",)]
    assert conn.execute("SELECT SUM(tokens) FROM probes").fetchone()[0] == \
        records[0]["refresh_tokens"]


def test_online_pope_keeps_two_rows_per_hard_problem_with_the_unguided_half_unchanged(study):
    history = (study / "t0" / "runs" / "pope_online-s0" / "guidance" / "refreshes.jsonl").read_text()
    table = _table(study)
    table.prefix = json.loads(history.splitlines()[-1])["prefix"]
    mix = _rows(study, "mix")
    rendered = [table.render(r) for r in mix]
    per_problem: dict[str, int] = {}
    for row, new in zip(mix, rendered):
        pid = row["extra_info"]["problem_id"]
        per_problem[pid] = per_problem.get(pid, 0) + 1
        if not row["extra_info"]["guided"]:
            assert new == row
    assert set(per_problem.values()) == {2}
    guided = sum(r["extra_info"]["guided"] for r in rendered)
    assert guided == len(per_problem) - len(table.graduated)


def test_every_arm_counts_the_tokens_it_generates_and_shows(study):
    for arm in ("pope", "pope_online", "fixed_ratio", "ghpo", "hard_only"):
        steps = _steps(study, arm)
        assert len(steps) == QUICK_STEPS
        assert all(r["rollout_tokens"] > 0 for r in steps)
        shown = sum(r["guidance_tokens"] for r in steps)
        assert (shown == 0) == (arm == "hard_only"), arm
    for r in _steps(study, "pope"):  # no regeneration: the rollouts are the step's tokens
        assert r["rollout_tokens"] == pytest.approx(r["response_length"] * 32)
    results = json.loads((study / "results.json").read_text())
    online = results["summaries"]["pope_online"]
    assert online["refresh_tokens"][0] > 0
    assert online["total_tokens"]["values"][0] == pytest.approx(
        online["rollout_tokens"][0] + online["refresh_tokens"][0], abs=1)
    assert (study / "solvable_tokens.png").stat().st_size > 0


def test_fixed_ratio_shows_half_the_solution_then_a_quarter(study):
    steps = _steps(study, "fixed_ratio")
    table = _table(study)
    seg = next(iter(table.problems.values())).segmentation
    tok = len(seg.prefix(ratio_prefix(seg, 0.5))), len(seg.prefix(ratio_prefix(seg, 0.25)))
    assert tok[0] > tok[1]
    half = QUICK_STEPS // 2  # two equal phases
    first = [r["guidance_tokens"] for r in steps[:half] if r["guidance_tokens"]]
    second = [r["guidance_tokens"] for r in steps[half:] if r["guidance_tokens"]]
    assert first and second
    assert sum(first) / len(first) > sum(second) / len(second)


def test_ghpo_hints_only_groups_whose_rollouts_all_failed(study):
    run = study / "t0" / "runs" / "ghpo-s0"
    rounds = [json.loads(x) for x in (run / "guidance" / "hints.jsonl").read_text().splitlines()]
    assert rounds, "the hard set fails unguided: some group is hinted"
    for r in rounds:
        assert r["ratio"] in (0.25, 0.5, 0.75)
        assert all(g["scores_before"] and not any(g["scores_before"]) for g in r["groups"])
    by_step: dict[int, list[float]] = {}
    for r in rounds:
        by_step.setdefault(r["step"], []).append(r["ratio"])
    assert all(ratios == sorted(ratios) and len(set(ratios)) == len(ratios)
               for ratios in by_step.values())
    steps = {r["step"]: r for r in _steps(study, "ghpo")}
    for step, ratios in by_step.items():
        assert steps[step]["hint_rounds"] == len(ratios)
        assert steps[step]["hinted_groups"] == sum(
            len(r["groups"]) for r in rounds if r["step"] == step)
    assert all(s["hinted_groups"] == 0 for n, s in steps.items() if n not in by_step)


# -- the command line ------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([POPE_TRAIN, "run", *args], capture_output=True, text=True,
                          timeout=300)


def test_pope_train_refuses_a_guidance_option_of_another_config_and_verl_names_the_hook(study,
                                                                                       tmp_path):
    export = str(study / "t0" / "build" / "export")
    res = _cli("pope", "--backend", "trl", "--model", str(ORGANISM), "--export", export,
               "--out", str(tmp_path / "a"), "--ratio-schedule", "0.4", "--dry-run")
    assert res.returncode == 2 and "--ratio-schedule: applies to config fixed_ratio" in \
        res.stdout + res.stderr
    res = _cli("fixed_ratio", "--backend", "trl", "--model", str(ORGANISM), "--export", export,
               "--out", str(tmp_path / "b"), "--ratio-schedule", "0.5,1.5", "--dry-run")
    assert res.returncode == 2 and "--ratio-schedule" in res.stdout + res.stderr
    res = _cli("pope_online", "--backend", "trl", "--model", str(ORGANISM), "--export", export,
               "--out", str(tmp_path / "c"), "--refresh-every", "5", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    plan = json.loads(res.stdout[res.stdout.index("{"):])
    assert plan["guidance"]["kind"] == "online" and plan["guidance"]["refresh_every"] == 5
    assert plan["guidance"]["problems"] == len(_hard_ids(study))
    res = _cli("pope_online", "--backend", "verl", "--model", str(ORGANISM), "--export", export,
               "--dry-run")
    assert res.returncode == 2 and "no per-step hook" in res.stdout + res.stderr
