"""`pope-data build / merge / publish` as a new user types them: limits, shards, quarantine, locks,
presets, guidance templates.

The CLI runs with a scripted engine (no model is loaded or inspected), so each test checks the
exact lines the user reads and the files the command leaves in a few seconds.
"""

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from pope_cli.data import app as data_app
from typer.testing import CliRunner

from pope_data.config import BuildConfig
from pope_data.export import CONFIGS, SPLITS
from pope_data.shards import in_shard
from pope_data.sources import load_problems
from pope_data.synthetic import generate_synthetic
from tests.pope_data.fake_engine import ScriptedEngine

runner = CliRunner()
FAST = ["--engine", "transformers", "--k", "2", "--n", "2", "--wave-size", "1",
        "--max-tokens", "16", "--temperature", "0.8", "--no-decontaminate"]
REPO = Path(__file__).resolve().parents[2]


def text(res) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def _problems_file(tmp_path: Path, count: int = 8, name: str = "problems.jsonl"):
    problems = generate_synthetic(count, seed=5)
    path = tmp_path / name
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    return problems, path


class Scripted:
    """The engine every `pope-data build` of a test gets: scripted answers for `problems`."""

    def __init__(self) -> None:
        self.engine: ScriptedEngine | None = None

    def use(self, problems, fail_after: int | None = None) -> ScriptedEngine:
        need = {p.problem: 1 + j % 3 for j, p in enumerate(problems)}
        self.engine = ScriptedEngine({p.problem: p.answer for p in problems}, need,
                                     fail_after=fail_after)
        return self.engine


@pytest.fixture
def scripted(monkeypatch) -> Scripted:
    state = Scripted()
    monkeypatch.setattr("pope_data.build.LazyEngine", lambda config: state.engine)
    monkeypatch.setattr("pope_eval.models.inspect_model", lambda engine: (None, None))
    return state


@pytest.fixture
def typed(monkeypatch):
    """Invoke `pope-data ARGS` with sys.argv as a shell would set it (the recorded command)."""
    def invoke(*args: str):
        monkeypatch.setattr(sys, "argv", ["/venv/bin/pope-data", *args])
        return runner.invoke(data_app, list(args))
    return invoke


def _build(typed, out: Path, *args: str):
    return typed("build", "--out", str(out), *FAST, *args)


# -- --limit ---------------------------------------------------------------------------------
def test_a_real_source_takes_every_row_unless_limit_is_given(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path, 20)
    scripted.use(problems)
    res = _build(typed, tmp_path / "all", "--source", "generic", "--path", str(path))
    assert res.exit_code == 0, res.output
    assert ("rows: 20 read, 0 quarantined, 0 left out by --shard, "
            "0 left out by --limit; 20 kept") in text(res)
    assert pl.read_parquet(tmp_path / "all" / "problems.parquet").height == 20
    assert BuildConfig(source="generic", path=str(path)).limit is None

    scripted.use(problems)
    res = _build(typed, tmp_path / "five", "--source", "generic", "--path", str(path),
                 "--limit", "5")
    assert res.exit_code == 0, res.output
    assert "15 left out by --limit; 5 kept" in text(res)
    summary = json.loads((tmp_path / "five" / "summary.json").read_text())
    rows = summary["plan"]["rows"]
    assert (rows["read"], rows["over_limit"], rows["kept"]) == (20, 15, 5)


def test_the_synthetic_demo_keeps_its_own_default_of_16_problems(tmp_path, scripted, typed):
    scripted.use(load_problems("synthetic"))
    res = _build(typed, tmp_path / "demo")
    assert res.exit_code == 0, res.output
    assert "rows: 16 read" in text(res) and "; 16 kept" in text(res)
    # The default lives with the source, not in BuildConfig.
    assert BuildConfig().limit is None
    assert len(load_problems("synthetic")) == 16 and len(load_problems("synthetic", limit=3)) == 3


# -- --shard ---------------------------------------------------------------------------------
def test_shard_comes_first_then_the_limit_within_it(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path, 12)
    mine = [p.id for p in problems if in_shard(p.id, (0, 2))]
    assert len(mine) > 2
    scripted.use(problems)
    res = _build(typed, tmp_path / "s0", "--source", "generic", "--path", str(path),
                 "--shard", "0/2", "--limit", "2")
    assert res.exit_code == 0, res.output
    ids = pl.read_parquet(tmp_path / "s0" / "problems.parquet")["id"].to_list()
    assert ids == mine[:2]
    assert (f"{12 - len(mine)} left out by --shard, {len(mine) - 2} left out by --limit; 2 kept"
            in text(res))


def test_an_empty_shard_is_a_valid_build_that_merge_accepts(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path, 1)
    full = 0 if in_shard(problems[0].id, (0, 2)) else 1
    outs = []
    for i in range(2):
        scripted.use(problems)
        out = tmp_path / f"shard{i}"
        res = _build(typed, out, "--source", "generic", "--path", str(path), "--shard", f"{i}/2")
        assert res.exit_code == 0, res.output
        outs.append(out)
    empty = outs[1 - full]
    assert "1 left out by --shard" in (empty / "report.md").read_text()
    for config in CONFIGS:
        for split in SPLITS:
            assert pl.read_parquet(empty / "export" / config / f"{split}.parquet").height == 0
    assert json.loads((empty / "summary.json").read_text())["problems"] == 0

    res = typed("merge", *map(str, outs), "--out", str(tmp_path / "merged"))
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert summary["problems"] == summary["hard"] == 1
    assert summary["plan"]["rows"] == {**summary["plan"]["rows"], "read": 1, "other_shards": 0,
                                       "kept": 1}


def test_a_shard_of_unusable_rows_is_still_an_error_naming_the_counts(tmp_path, scripted, typed):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "", "answer": "1"}) + "\n")
    res = _build(typed, tmp_path / "o", "--source", "generic", "--path", str(path),
                 "--shard", "0/2")
    assert res.exit_code == 2
    assert ("no usable problems from " + str(path) + ": 1 read, 1 quarantined "
            "(quarantine.jsonl), 0 left out by --shard, 0 left out by --limit; 0 kept "
            "(first: row 1: empty problem); every row and reason in "
            + str(tmp_path / "o" / "quarantine.jsonl")) in text(res)
    # The quarantine the error names is there, and nothing else: no lock, config or journal.
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["quarantine.jsonl"]
    assert json.loads((tmp_path / "o" / "quarantine.jsonl").read_text())["row"] == 1


# -- quarantine -------------------------------------------------------------------------------
def test_every_quarantine_line_has_its_row_number_and_raw_row(tmp_path, scripted, typed,
                                                             monkeypatch):
    problems, path = _problems_file(tmp_path, 3)
    long_solution = "Step 1: " + "x" * 500
    with path.open("a") as fh:
        fh.write("{not json at all\n")  # row 4
        fh.write(json.dumps({"id": "gold", "problem": "What is one half?", "answer": "\\frac{1}{",
                             "solution": long_solution}) + "\n")  # row 5
        fh.write(json.dumps({"id": "long", "problem": "A very long problem.", "answer": "2",
                             "solution": "a\nb"}) + "\n")  # row 6
        fh.write(json.dumps({"problem": "no answer"}) + "\n")  # row 7

    def too_long(conversations, tokenizer, max_tokens, context):
        return [(i, 999) for i, c in enumerate(conversations)
                if "A very long problem" in c[-1]["content"]]

    monkeypatch.setattr("pope_eval.prompts.check_prompt_lengths", too_long)
    monkeypatch.setattr("pope_eval.models.inspect_model", lambda engine: (object(), 100))
    scripted.use(problems)
    res = _build(typed, tmp_path / "o", "--source", "generic", "--path", str(path))
    assert res.exit_code == 0, res.output
    q = [json.loads(x) for x in (tmp_path / "o" / "quarantine.jsonl").read_text().splitlines()]
    assert [e["row"] for e in q] == [4, 7, 5, 6]
    by_row = {e["row"]: e for e in q}
    assert by_row[4]["raw"] == "{not json at all" and "invalid JSON" in by_row[4]["reason"]
    assert by_row[5]["reason"].startswith("gold: answer")
    assert by_row[5]["raw"]["problem"] == "What is one half?"
    assert by_row[5]["raw"]["solution"] == long_solution[:200] + "... (508 characters)"
    assert by_row[6]["reason"].startswith("long: prompt is 999 tokens")
    assert by_row[6]["raw"]["id"] == "long"
    assert "7 read, 4 quarantined" in text(res) and "3 kept" in text(res)


# -- merge ------------------------------------------------------------------------------------
def _shards(tmp_path, scripted, typed, problems, path, *extra_per_shard):
    outs = []
    for i, extra in enumerate(extra_per_shard):
        scripted.use(problems)
        out = tmp_path / f"shard{i}"
        res = _build(typed, out, "--source", "generic", "--path", str(path),
                     "--shard", f"{i}/{len(extra_per_shard)}", *extra)
        assert res.exit_code == 0, res.output
        outs.append(out)
    return outs


def test_merge_names_the_options_that_differ(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path)
    outs = _shards(tmp_path, scripted, typed, problems, path, ["--n", "2"], ["--n", "3"])
    res = typed("merge", *map(str, outs), "--out", str(tmp_path / "m"))
    assert res.exit_code == 2
    assert (f"shards were built with different configurations: {outs[1]} differs from "
            f"{outs[0]} in n: 2 -> 3") in text(res)
    assert not (tmp_path / "m").exists()


def test_merge_into_a_file_is_one_line(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path)
    outs = _shards(tmp_path, scripted, typed, problems, path, [], [])
    blocker = tmp_path / "afile"
    blocker.write_text("")
    res = typed("merge", *map(str, outs), "--out", str(blocker))
    assert res.exit_code == 2
    assert text(res) == f"error: --out {blocker}: is a file, not a folder"


def test_merge_refuses_a_build_folder_as_out(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path)
    outs = _shards(tmp_path, scripted, typed, problems, path, [], [])
    res = typed("merge", *map(str, outs), "--out", str(outs[0]))
    assert res.exit_code == 2 and "is one of the shard folders" in text(res)


def test_merged_folder_reports_like_a_build_and_its_card_shows_counts_and_commands(
        tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path)
    outs = _shards(tmp_path, scripted, typed, problems, path, [], [])
    merged = tmp_path / "merged"
    res = typed("merge", *map(str, outs), "--out", str(merged))
    assert res.exit_code == 0, res.output
    parts = [json.loads((o / "summary.json").read_text()) for o in outs]
    summary = json.loads((merged / "summary.json").read_text())
    for key in ("problems", "hard", "easy", "guided", "fallback"):
        assert summary[key] == sum(p[key] for p in parts)
    assert summary["problems"] == 8
    assert summary["tokens"]["prefix"] == sum(p["tokens"]["prefix"] for p in parts) > 0
    report = (merged / "report.md").read_text()
    commands = [f"pope-data build --out {o} {' '.join(FAST)} --source generic --path {path} "
                f"--shard {i}/2" for i, o in enumerate(outs)]
    merge_command = f"pope-data merge {outs[0]} {outs[1]} --out {merged}"
    assert "\n".join([*commands, merge_command]) in report
    assert f"- hard set: {summary['hard']} hard" in report

    staged = tmp_path / "staged"
    res = typed("publish", str(merged), "--repo", "org/pope", "--dry-run", str(staged))
    assert res.exit_code == 0, res.output
    card = (staged / "README.md").read_text()
    assert f"- problems loaded: 8 ({summary['quarantined']} rows quarantined)" in card
    assert f"- hard: {summary['hard']}, easy: {summary['easy']}" in card
    assert f"hard-set curation {summary['tokens']['curate']}" in card
    assert "\n".join([*commands, merge_command]) in card


# -- the run-folder lock ----------------------------------------------------------------------
HOLD = ("import sys, time\n"
        "from pope_eval.runinfo import lock_run_dir\n"
        "lock = lock_run_dir(sys.argv[1], 'pope-data build').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of a folder; yields (folder, its pid)."""
    folder = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield folder, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_second_build_into_a_locked_folder_fails_at_once_naming_the_holder(holder, scripted,
                                                                            typed):
    folder, pid = holder
    scripted.use(load_problems("synthetic"))
    started = time.monotonic()
    res = _build(typed, folder)
    assert res.exit_code == 2
    assert f"error: {folder} is in use by process {pid} on" in text(res)
    assert "wait for it to end or use another --out folder" in text(res)
    assert time.monotonic() - started < 5  # refused before the inputs are checked
    assert scripted.engine.calls == 0 and not (folder / "run_config.json").exists()


def test_merge_into_a_locked_folder_fails_naming_the_holder(tmp_path, holder, scripted, typed):
    folder, pid = holder
    problems, path = _problems_file(tmp_path)
    outs = _shards(tmp_path, scripted, typed, problems, path, [], [])
    res = typed("merge", *map(str, outs), "--out", str(folder))
    assert res.exit_code == 2 and f"is in use by process {pid}" in text(res)
    assert not (folder / "export").exists()


# -- resume and publish ------------------------------------------------------------------------
def test_a_resumed_build_says_how_many_probes_it_replayed(tmp_path, scripted, typed):
    from pope_data.journal import Journal

    problems, path = _problems_file(tmp_path)
    args = ("--source", "generic", "--path", str(path), "--batch-samples", "4")
    scripted.use(problems, fail_after=3)
    res = _build(typed, tmp_path / "o", *args)
    assert res.exit_code == 2 and "Re-run the same command to resume" in text(res)
    with sqlite3.connect(tmp_path / "o" / "journal.sqlite") as db:
        journaled = db.execute("SELECT COUNT(*) FROM probes").fetchone()[0]
    assert journaled > 0 and Journal.has_probes(tmp_path / "o" / "journal.sqlite")
    resumed = scripted.use(problems)
    res = _build(typed, tmp_path / "o", *args)
    assert res.exit_code == 0, res.output
    assert (f"resume: {journaled} probes replayed from the journal (not generated again)"
            in text(res))
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["replayed"] == journaled
    with sqlite3.connect(tmp_path / "o" / "journal.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM probes").fetchone()[0] == \
            journaled + resumed.requests
    # A first run replays nothing and says nothing about it.
    scripted.use(problems)
    res = _build(typed, tmp_path / "fresh", *args)
    assert res.exit_code == 0 and "replayed" not in text(res)


def test_a_failed_publish_leaves_no_dry_run_folder(tmp_path, typed):
    not_a_build = tmp_path / "nothing"
    not_a_build.mkdir()
    staged = tmp_path / "staged"
    res = typed("publish", str(not_a_build), "--repo", "org/pope", "--dry-run", str(staged))
    assert res.exit_code == 2 and "no export/ folder" in text(res)
    assert not staged.exists()


# -- --preset, --guidance, --max-prefix-fraction -----------------------------------------------
def test_preset_paper_fills_the_options_not_given_before_any_check_runs(tmp_path, scripted,
                                                                         typed):
    missing = tmp_path / "missing.jsonl"
    res = typed("build", "--preset", "paper", "--model", "smollm2-135m", "--source", "generic",
                "--path", str(missing), "--out", str(tmp_path / "o"))
    # The missing file stops the build at its first check, after the preset was applied.
    assert res.exit_code == 2 and f"{missing}: no such file" in text(res)
    line = next(ln for ln in res.output.splitlines() if ln.startswith("preset paper:"))
    assert line == ("preset paper: --k 128, --max-tokens 32768, --n 8, --temperature 0.8, "
                    "--top-p 1.0; yours: --model")
    assert not (tmp_path / "o").exists()


def test_a_build_records_its_preset_and_explicit_flags_win(tmp_path, scripted, typed):
    problems, path = _problems_file(tmp_path)
    out = tmp_path / "o"
    args = ("build", "--preset", "paper", "--model", "smollm2-135m", "--engine", "transformers",
            "--source", "generic", "--path", str(path), "--k", "2", "--n", "2", "--wave-size",
            "1", "--max-tokens", "16", "--no-decontaminate", "--out", str(out))
    scripted.use(problems)
    res = typed(*args)
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run_config.json").read_text())
    config, sampling = run["config"], run["config"]["sampling"]
    assert (config["k"], config["n"], sampling["max_tokens"]) == (2, 2, 16)
    assert (sampling["temperature"], sampling["top_p"]) == (0.8, 1.0)
    assert config["engine"]["model"] == "smollm2-135m" and "preset" not in config
    assert run["preset"]["name"] == "paper"
    assert {flag: v["value"] for flag, v in run["preset"]["set"].items()} == {
        "--temperature": 0.8, "--top-p": 1.0}
    assert run["preset"]["explicit"] == ["--k", "--max-tokens", "--model", "--n"]
    # The same command resumes: what the preset set is recorded, never compared.
    again = scripted.use(problems)
    res = typed(*args)
    assert res.exit_code == 0, res.output
    assert again.calls == 0


def test_guidance_and_the_prefix_cap_reach_the_rows_and_the_report(tmp_path, scripted, typed):
    from pope_eval.prompts import GUIDANCE

    problems, path = _problems_file(tmp_path)
    engine = scripted.use(problems)
    out = tmp_path / "o"
    res = _build(typed, out, "--source", "generic", "--path", str(path),
                 "--guidance", "no-revisit", "--max-prefix-fraction", "0.5")
    assert res.exit_code == 0, res.output
    instruction = GUIDANCE["no-revisit"].instruction
    assert any(instruction in p for p in engine.prompts)
    guided = pl.read_parquet(out / "export" / "guided" / "train.parquet")
    assert guided.height and all(instruction in t for t in guided["problem"])
    prov = guided["provenance"].struct.unnest()
    assert set(prov["guidance"]) == {"no-revisit"} and set(prov["max_prefix_fraction"]) == {0.5}
    assert max(guided["extra_info"].struct.field("prefix_fraction")) <= 0.5
    assert ("guidance `no-revisit`, prefixes up to 0.5 of the solution"
            in (out / "report.md").read_text())
    from pope_data.card import render_card

    card = render_card(out)
    assert "only prefixes covering at most 0.5 of the solution's characters probed" in card
    assert instruction in card


def test_an_unknown_guidance_is_one_line_and_writes_nothing(tmp_path, typed):
    res = typed("build", "--guidance", "nosuch", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert ("--guidance: 'nosuch' is neither a template name (pope, no-revisit, continue) nor a "
            "file") in text(res)
    assert not (tmp_path / "o").exists()
    res = typed("build", "--max-prefix-fraction", "0", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--max-prefix-fraction: must be in (0, 1], got 0.0" in text(res)
