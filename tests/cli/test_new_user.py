"""What a new user hits first: typos, bad folders, dead servers, broken answers, reports, help.

Each test runs the command (or the library call behind it) and checks the exact message or
behaviour: one line naming the option/file/row, exit code 2, nothing written before the checks.
"""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
import typer
from pope_cli.common import handle_errors
from pope_cli.data import app as data_app
from pope_cli.eval import app as eval_app
from typer.testing import CliRunner

from pope_data.build import run_build
from pope_data.config import BuildConfig
from pope_data.synthetic import generate_synthetic
from pope_eval.engines import EngineConfig, Sampling
from pope_eval.errors import EngineError, GradingError
from pope_eval.evaluate import PassAtKConfig, run_pass_at_k
from tests.pope_data.fake_engine import ScriptedEngine

runner = CliRunner()


def text(res) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def _problems_file(tmp_path, count=6):
    problems = generate_synthetic(count, seed=5)
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    return problems, path


def _engine(problems):
    need = {p.problem: 1 + j % 3 for j, p in enumerate(problems)}
    return ScriptedEngine({p.problem: p.answer for p in problems}, need)


def _config(tmp_path, path, **kw):
    base = dict(out=str(tmp_path / "out"), source="generic", path=str(path), limit=None, k=2,
                n=2, wave_size=1, sampling=Sampling(max_tokens=16, temperature=0.8, top_p=0.95),
                engine=EngineConfig(engine="transformers"), decontaminate=False)
    base.update(kw)
    return BuildConfig(**base)


# -- options are checked before anything is written -------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--wave-size", "0"], "--wave-size: must be >= 1, got 0"),
    (["--top-p", "2"], "--top-p: must be in (0, 1], got 2.0"),
    (["--segmenter", "paragraph"], "--segmenter: unknown 'paragraph'"),
    (["--source", "omnimath"], "--source: unknown 'omnimath'"),
    (["--engine", "tgi"], "--engine: unknown engine 'tgi'"),
    (["--retention", "some"], "--retention: unknown 'some'"),
    (["--source", "generic", "--path", "typo.jsonl"], "typo.jsonl: no such file"),
    (["--k", "4", "--n", "0"], "--n: must be an integer >= 1, got 0"),
])
def test_bad_build_options_write_nothing_and_offer_no_resume(tmp_path, args, message):
    out = tmp_path / "o"
    res = runner.invoke(data_app, ["build", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in text(res)
    assert "resume" not in text(res).lower()
    assert not out.exists()


def test_a_run_that_generated_nothing_can_be_reconfigured(tmp_path):
    problems, path = _problems_file(tmp_path)
    dead = ScriptedEngine(_engine(problems).answers, _engine(problems).need, fail_after=0)
    with pytest.raises(EngineError):
        run_build(_config(tmp_path, path), engine=dead)
    assert (tmp_path / "out" / "run_config.json").exists()
    # Nothing was generated: the corrected command (another n) is accepted, not refused.
    s = run_build(_config(tmp_path, path, n=3), engine=_engine(problems))
    config = json.loads((tmp_path / "out" / "run_config.json").read_text())["config"]
    assert config["n"] == 3 and s.hard == 6


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_output_folder_that_cannot_be_a_folder_is_one_line(tmp_path, where):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "sub"
    expected = "is a file, not a folder" if where == "file" else "which is a file"
    for app, cmd in ((data_app, "build"), (eval_app, "pass-at-k")):
        res = runner.invoke(app, [cmd, "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert f"--out {out}" in text(res) and expected in text(res)
        assert "Traceback" not in res.output


def test_full_disk_during_export_is_one_line_and_loses_nothing(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    problems, path = _problems_file(tmp_path)
    real_write = pq.write_table

    def full(table, where, *a, **kw):
        if Path(where).parent.parent.name == "export":
            raise OSError(28, "No space left on device", str(where))
        return real_write(table, where, *a, **kw)

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError):
        run_build(_config(tmp_path, path), engine=_engine(problems))
    import sqlite3

    probes = sqlite3.connect(tmp_path / "out" / "journal.sqlite").execute(
        "SELECT COUNT(*) FROM probes").fetchone()[0]
    assert probes > 0  # every probe of the search is kept
    monkeypatch.setattr(pq, "write_table", real_write)
    again = _engine(problems)
    s = run_build(_config(tmp_path, path), engine=again)
    assert again.calls == 0 and s.hard == 6  # the rerun only exports

    # The CLI turns the OS error into one line naming the file.
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        with handle_errors(lambda: "Re-run the same command to resume."):
            raise OSError(28, "No space left on device", "/data/out/export/mix/train.parquet")

    res = runner.invoke(app, [])
    assert res.exit_code == 2
    assert text(res) == ("error: No space left on device: /data/out/export/mix/train.parquet "
                         "Re-run the same command to resume.")


def test_decontamination_that_cannot_run_says_not_checked(tmp_path):
    problems, path = _problems_file(tmp_path)
    cfg = _config(tmp_path, path, decontaminate=True,
                  decontam_against=("aime2025", str(tmp_path / "missing.jsonl")))
    run_build(cfg, engine=_engine(problems))
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"not checked against {tmp_path / 'missing.jsonl'}" in report
    decontam = json.loads((tmp_path / "out" / "decontamination.json").read_text())
    assert decontam["checked"] == {"aime2025": 30}  # the bundled set works offline


def test_broken_gold_answers_are_quarantined_not_hard(tmp_path):
    problems, path = _problems_file(tmp_path, 4)
    with path.open("a") as fh:
        fh.write(json.dumps({"id": "broken", "problem": "What is one half?",
                             "answer": "\\frac{1}{", "solution": "a\nb\nc"}) + "\n")
    s = run_build(_config(tmp_path, path), engine=_engine(problems))
    assert s.problems == 4 and s.quarantined == 1
    q = json.loads((tmp_path / "out" / "quarantine.jsonl").read_text())
    assert "broken: answer '\\\\frac{1}{' cannot be parsed by math-verify" in q["reason"]


def test_pass_at_k_report_explains_truncated_samples(tmp_path, data_dir):
    from pope_eval.engines import Engine, GenerationResult, Sample

    class Truncating(Engine):
        def _generate(self, requests, progress):
            return [GenerationResult(r, tuple(Sample("Let me think about", 4, "length")
                                              for _ in range(r.n))) for r in requests]

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "a", "problem": "2+2?", "answer": "4"}) + "\n")
    run_pass_at_k(PassAtKConfig(data=str(f), out=str(tmp_path / "r"), n=2,
                                sampling=Sampling(max_tokens=4)), engine=Truncating())
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| length | 2 |" in report
    assert "stopped at max_tokens = 4 before giving an answer" in report


def test_help_never_cuts_option_names():
    res = runner.invoke(data_app, ["build", "--help"], env={"COLUMNS": "80"})
    for option in ("--validation-fraction", "--no-decontaminate", "--decontam-against",
                   "--request-timeout", "--segment-tokens"):
        assert option in res.output


# -- grading workers ------------------------------------------------------------------------
def test_grading_works_from_a_script_on_standard_input(tmp_path):
    script = ("from pope_eval.grading import grade_many\n"
              "print([g.status for g in grade_many(['\\\\boxed{4}', 'Answer: 5'], ['4', '4'])])\n")
    t = time.monotonic()
    res = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "['correct', 'wrong']"
    assert time.monotonic() - t < 60


def test_a_worker_that_cannot_start_is_an_error_not_a_timeout(monkeypatch):
    from pope_eval.grading import Grader

    monkeypatch.setattr(sys, "executable", "/bin/false")
    with Grader(workers=1, timeout=1.0) as g, pytest.raises(GradingError,
                                                           match="could not start.*exit code 1"):
        g.grade_many(["\\boxed{1}"], ["1"])


# -- servers that accept and never answer ------------------------------------------------------
def test_hung_endpoint_fails_within_request_timeout(tmp_path):
    held = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)  # accepted, never answered

    threading.Thread(target=accept, daemon=True).start()
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "a", "problem": "2+2?", "answer": "4"}) + "\n")
    t = time.monotonic()
    res = runner.invoke(eval_app, [
        "pass-at-k", "--data", str(f), "--engine", "openai",
        "--endpoint", f"http://127.0.0.1:{port}/v1", "--request-timeout", "1",
        "--max-retries", "0", "--n", "1", "--out", str(tmp_path / "r")])
    srv.close()
    assert res.exit_code == 2, res.output
    assert f"127.0.0.1:{port}" in text(res) and "1 attempts" in text(res)
    assert time.monotonic() - t < 60


def test_unreachable_hub_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    res = runner.invoke(eval_app, ["pass-at-k", "--model", "nobody/no-such-model-7",
                                   "--engine", "transformers", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "--model nobody/no-such-model-7: the Hugging Face Hub (" in text(res)
    assert ("cannot be reached (HF_HUB_OFFLINE is set) and its cache holds no copy of this "
            "model; use a local model folder (--model PATH) or the bundled smollm2-135m"
            ) in text(res)
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()


# -- the real model through the CLI, each engine the README offers ------------------------------
def _eval_file(tmp_path: Path) -> Path:
    f = tmp_path / "eval.jsonl"
    rows = [{"id": "small-1", "problem": "What is 2 + 3?", "answer": "5"},
            {"id": "huge", "problem": "Add these numbers: " + "7 + " * 200_000 + "1.",
             "answer": "1400001"},
            {"id": "small-2", "problem": "What is 10 - 4?", "answer": "6"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["transformers", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_pass_at_k_cli_end_to_end_with_each_engine(tmp_path, tiny_model_dir, engine):
    out = tmp_path / "run"
    args = ["pass-at-k", "--data", str(_eval_file(tmp_path)), "--model", "smollm2-135m",
            "--engine", engine, "--n", "4", "--k", "1,2,4", "--max-tokens", "48", "--seed", "7",
            "--out", str(out)]
    res = runner.invoke(eval_app, args)
    assert res.exit_code == 0, res.output
    # The 1 MB problem is quarantined by name before generation; the others run.
    assert "1 rows quarantined" in text(res)
    q = json.loads((out / "quarantine.jsonl").read_text())
    assert q["reason"].startswith("huge: prompt is") and "exceeds the model's context" in q["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["engine"]["engine"] == engine
    assert set(pl.read_parquet(out / "samples.parquet")["id"]) == {"small-1", "small-2"}
    assert "pass@k: 2/2 problems" in res.output  # plain progress lines when not a terminal
    again = runner.invoke(eval_app, args)  # resumes: nothing generated, same numbers
    assert again.exit_code == 0 and json.loads((out / "summary.json").read_text())[
        "pass_at_k"] == summary["pass_at_k"]


@pytest.mark.slow
def test_named_benchmark_works_offline(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "aime"
    res = runner.invoke(eval_app, ["pass-at-k", "--data", "aime2025", "--model", "smollm2-135m",
                                   "--engine", "transformers", "--n", "2", "--limit", "2",
                                   "--max-tokens", "32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["data_source"] == "bundled:aime2025"


@pytest.mark.slow
def test_tokens_segmenter_cuts_with_the_model_tokenizer(tmp_path, tiny_model_dir):
    problems, path = _problems_file(tmp_path, 4)
    s = run_build(_config(tmp_path, path, segmenter="tokens", segment_tokens=8,
                          engine=EngineConfig(engine="transformers", model="smollm2-135m")),
                  engine=_engine(problems))
    prefixes = pl.read_parquet(tmp_path / "out" / "prefixes.parquet")
    solutions = {p.id: p.solution for p in problems}
    assert s.guided == 4
    for r in prefixes.iter_rows(named=True):
        assert solutions[r["problem_id"]].startswith(r["prefix_text"])
        # Cut every 8 tokens: more segments than the solution has lines.
        assert r["num_segments"] > solutions[r["problem_id"]].count("\n") + 1


def test_error_text_keeps_its_brackets_and_starts_on_the_first_line(tmp_path, capsys):
    res = runner.invoke(data_app, ["build", "--out", str(tmp_path / "o"),
                                   "--source", "syn[blue]thetic"])
    assert res.exit_code == 2
    assert res.output.startswith("error: --source: unknown 'syn[blue]thetic'")
    from pope_eval.errors import require

    with pytest.raises(typer.Exit), handle_errors():
        require("a_module_that_is_not_installed", "train")
    assert "pip install 'pope[train]'" in " ".join(capsys.readouterr().err.split())
