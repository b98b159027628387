"""What a new user hit in the third round: NaN options, an all-quarantined run, an offline Hub,
compare's plot path, noise, --source-option, make_organism.py, output in plain logs.

Each test runs the command as typed (typer's CliRunner, or a subprocess where the process
itself is what is checked) and checks the line the user reads and what is left on disk.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pope_cli.data import app as data_app
from pope_cli.eval import app as eval_app
from pope_cli.train import app as train_app
from typer.testing import CliRunner

from pope_data.synthetic import generate_synthetic
from pope_eval.engines import Sampling
from pope_eval.errors import ConfigError
from tests.conftest import free_port
from tests.pope_data.fake_engine import ScriptedEngine

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def text(res) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def lines(res) -> list[str]:
    return [line for line in res.output.splitlines() if line.strip()]


# -- NaN and infinities ------------------------------------------------------------------------
@pytest.mark.parametrize("app,args,flag", [
    (data_app, ["build", "--temperature", "nan"], "--temperature"),
    (data_app, ["build", "--top-p", "nan"], "--top-p"),
    (data_app, ["build", "--difficulty-min", "nan"], "--difficulty-min"),
    (data_app, ["build", "--grading-timeout", "inf"], "--grading-timeout"),
    (data_app, ["build", "--max-prefix-fraction", "-inf"], "--max-prefix-fraction"),
    (eval_app, ["pass-at-k", "--temperature", "inf"], "--temperature"),
    (eval_app, ["pass-at-k", "--min-p", "nan"], "--min-p"),
    (eval_app, ["pass-at-k", "--engine", "openai", "--endpoint", "http://127.0.0.1:9/v1",
                "--request-timeout", "nan"], "--request-timeout"),
])
def test_nan_and_infinite_floats_are_refused_before_anything_is_written(tmp_path, app, args,
                                                                        flag):
    out = tmp_path / "o"
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert len(lines(res)) == 1 and lines(res)[0].startswith(f"error: {flag}: must be "), res.output
    assert "finite number" in text(res) or "must be in" in text(res)
    assert not out.exists()  # no folder, no lock


def test_a_train_float_option_refuses_nan(tmp_path):
    from tests.trl.conftest import make_export

    export = make_export(tmp_path / "data", hard=1, easy=0)
    res = runner.invoke(train_app, ["run", "pope", "--backend", "trl", "--dry-run", "--export",
                                    str(export), "--model", "smollm2-135m", "--out",
                                    str(tmp_path / "o"), "--learning-rate", "nan"])
    assert res.exit_code == 2, res.output
    assert lines(res) == ["error: --learning-rate: must be a finite number, got nan"]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_sampling_refuses_a_temperature_that_is_not_finite(value):
    with pytest.raises(ConfigError, match="--temperature: must be a finite number >= 0"):
        Sampling(temperature=value)


# -- a run whose every row is quarantined ------------------------------------------------------
def test_pass_at_k_with_every_prompt_too_long_gives_the_reason_and_writes_the_quarantine(
        tmp_path, tiny_model_dir):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"id": "long-1", "problem": "Add: " + "7 + " * 3000 + "1.",
                                "answer": "21001"}) + "\n")
    out = tmp_path / "run"
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(data), "--model", "smollm2-135m",
                                   "--engine", "transformers", "--max-tokens", "4096", "--n", "1",
                                   "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert re.search(r"no usable problems \(1 rows quarantined; first: row 1: long-1: prompt is "
                     r"\d+ tokens; with --max-tokens 4096 it exceeds the model's context of "
                     r"\d+ tokens\); every row and reason in " + re.escape(str(out)), text(res))
    [entry] = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert entry["row"] == 1 and entry["raw"]["id"] == "long-1"
    assert entry["raw"]["problem"].endswith("characters)")  # long texts are cut, as the build does
    assert sorted(p.name for p in out.iterdir()) == ["quarantine.jsonl"]  # no config, no lock


# -- an unreachable Hub ------------------------------------------------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    """The Hub endpoint is a closed port on this machine: every request is refused at once."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def _one_fast_line(app, args) -> str:
    started = time.monotonic()
    res = runner.invoke(app, args)
    took = time.monotonic() - started
    assert res.exit_code == 2, res.output
    assert len(lines(res)) == 1 or (lines(res)[0].startswith("preset ") and len(lines(res)) == 2), \
        res.output
    assert took < 10, f"{took:.1f} s"
    return lines(res)[-1]


def test_an_unknown_hub_model_offline_is_one_line_in_seconds(tmp_path, no_hub):
    line = _one_fast_line(eval_app, ["pass-at-k", "--model", "some/hub-id", "--engine",
                                     "transformers", "--out", str(tmp_path / "r")])
    assert line.startswith("error: --model some/hub-id: the Hugging Face Hub (http://127.0.0.1:")
    assert "cannot be reached (Connection refused)" in line
    assert line.endswith("use a local model folder (--model PATH) or the bundled smollm2-135m")
    assert not (tmp_path / "r").exists()


def test_a_hub_data_set_offline_is_one_line_in_seconds(tmp_path, no_hub, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder named like the id
    line = _one_fast_line(eval_app, ["pass-at-k", "--data", "hub:foo/bar", "--out",
                                     str(tmp_path / "r")])
    assert line.startswith("error: cannot load foo/bar (split 'train'): the Hugging Face Hub "
                           "(http://127.0.0.1:")
    assert "cannot be reached (Connection refused) and the datasets cache holds no copy" in line
    assert line.endswith("use a bundled name (aime2025, hmmt_feb_2025) or --data PATH")


def test_the_paper_preset_without_the_model_is_one_line_in_seconds(tmp_path, no_hub):
    line = _one_fast_line(data_app, ["build", "--preset", "paper", "--limit", "2", "--out",
                                     str(tmp_path / "b")])
    assert line.startswith("error: --model Qwen/Qwen3-4B-Instruct-2507: the Hugging Face Hub")
    assert not (tmp_path / "b").exists()
    from tests.trl.conftest import make_export

    export = make_export(tmp_path / "data", hard=1, easy=0)
    args = ["run", "pope", "--backend", "trl", "--preset", "paper", "--export", str(export),
            "--out", str(tmp_path / "t")]
    # A dry run needs no model (it shows the plan offline too) and imports the trainer's
    # libraries, so that the run below is timed on the Hub check alone.
    assert runner.invoke(train_app, [*args, "--dry-run"]).exit_code == 0
    line = _one_fast_line(train_app, args)
    assert line.startswith("error: --model Qwen/Qwen3-4B-Instruct-2507: the Hugging Face Hub")


# -- pope-eval compare --plot ------------------------------------------------------------------
def _summary(path: Path, values: dict[int, float]) -> Path:
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({
        "model": path.name,
        "pass_at_k": {str(k): {"estimate": v, "ci_low": v - 0.1, "ci_high": v + 0.1}
                      for k, v in values.items()}}))
    return path


@pytest.fixture
def two_runs(tmp_path):
    return [str(_summary(tmp_path / "a", {1: 0.2, 4: 0.5})),
            str(_summary(tmp_path / "b", {1: 0.3, 4: 0.45}))]


def test_compare_refuses_a_plot_that_is_not_png_before_comparing(tmp_path, two_runs):
    res = runner.invoke(eval_app, ["compare", *two_runs, "--plot", str(tmp_path / "c.txt")])
    assert res.exit_code == 2, res.output
    assert lines(res) == [f"error: --plot {tmp_path / 'c.txt'}: the plot is written as PNG; give "
                          "a file name ending in .png (or a folder, which gets compare.png)"]
    assert not (tmp_path / "c.txt").exists()


@pytest.mark.parametrize("given,written", [("noext", "noext.png"), ("plots/", "plots/compare.png"),
                                           ("folder", "folder/compare.png"),
                                           ("deep/new/x.PNG", "deep/new/x.PNG")])
def test_compare_reports_the_file_it_wrote(tmp_path, two_runs, given, written):
    (tmp_path / "folder").mkdir()
    res = runner.invoke(eval_app, ["compare", *two_runs, "--plot", str(tmp_path) + "/" + given])
    assert res.exit_code == 0, res.output
    assert lines(res)[-1] == f"wrote {tmp_path / written}"
    assert (tmp_path / written).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_a_plot_under_a_file(tmp_path, two_runs):
    (tmp_path / "f").write_text("")
    res = runner.invoke(eval_app, ["compare", *two_runs, "--plot", str(tmp_path / "f" / "x.png")])
    assert res.exit_code == 2
    assert lines(res) == [f"error: --plot {tmp_path / 'f' / 'x.png'}: {tmp_path / 'f'} is a "
                          "file, not a folder"]


# -- --source-option ---------------------------------------------------------------------------
@pytest.mark.parametrize("options,message", [
    (["difficulty=10", "difficulty=12"],
     "--source-option difficulty: given twice (difficulty=10 and 'difficulty=12'); give each "
     "key once"),
    (["easy_difficulty=20"], "--source-option easy_difficulty: must be an integer in 1..16, "
                             "got 20"),
    (["difficulty=0"], "--source-option difficulty: must be an integer in 1..16, got 0"),
    (["difficulty=ten"], "--source-option difficulty: must be an integer, got 'ten'"),
])
def test_source_options_name_the_key_and_the_type_in_english(tmp_path, options, message):
    args = [a for o in options for a in ("--source-option", o)]
    res = runner.invoke(data_app, ["build", "--source", "organism", *args, "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert lines(res) == [f"error: {message}"]
    assert not (tmp_path / "o").exists()


# -- scripts/make_organism.py ------------------------------------------------------------------
def _script_module(name: str = "make_organism"):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", ["make_organism", "make_opchain_organism"])
def test_both_organism_scripts_offer_every_pretraining_field_with_its_default(script):
    from dataclasses import fields

    from pope_train.organism_model import OrganismConfig

    parser = _script_module(script).parser()
    undocumented = [a.option_strings[0] for a in parser._actions if not a.help]
    assert undocumented == []
    # The opchain family pretrains on every rare count, so its difficulties are not an option.
    own = {"restate"} | ({"difficulties"} if script == "make_opchain_organism" else set())
    offered = {a.dest: a.default for a in parser._actions}
    base = OrganismConfig()
    for f in fields(OrganismConfig):
        if f.name not in own:
            assert offered[f.name] == getattr(base, f.name), f.name


def test_make_organism_explains_every_option_and_names_bad_values():
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "make_organism.py"), "--out",
                          "x", "--difficulties", "1,two"], capture_output=True, text=True)
    assert res.returncode == 2
    assert ("argument --difficulties: expected a comma list of integers, got '1,two'"
            in res.stderr)
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "make_organism.py"), "--out",
                          "x", "--learning-rate", "nan"], capture_output=True, text=True)
    assert "argument --learning-rate: expected a finite number, got 'nan'" in res.stderr


def test_make_organism_ctrl_c_is_one_line_and_exit_130(tmp_path):
    out = tmp_path / "organism"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "make_organism.py"), "--out", str(out),
         "--examples", "64", "--max-steps", "100000", "--hidden-size", "32", "--heads", "2",
         "--intermediate-size", "64", "--pack-length", "128", "--threads", "1", "--skip-check"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    # Interrupt once it trains: its log line says how many steps it is about to take.
    started = time.monotonic()
    seen = ""
    while "100000 steps" not in seen:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, seen
        seen += line
        assert time.monotonic() - started < 300, seen
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: pretraining did not finish; no model was saved in {out}")


# -- output read in a log, not a terminal ------------------------------------------------------
def test_train_configs_keeps_every_cell_whole_in_a_log():
    from pope_train.recipes import RECIPES

    res = runner.invoke(train_app, ["configs"])  # CliRunner's stdout is not a terminal
    assert res.exit_code == 0, res.output
    for recipe in RECIPES.values():
        row = next(line for line in res.output.splitlines() if f" {recipe.name} " in line)
        assert recipe.summary in row, res.output


def test_build_summary_title_is_one_line_in_a_log(tmp_path, monkeypatch):
    problems = generate_synthetic(4, seed=5)
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    engine = ScriptedEngine({p.problem: p.answer for p in problems},
                            {p.problem: 1 + j % 3 for j, p in enumerate(problems)})
    monkeypatch.setattr("pope_data.build.LazyEngine", lambda config: engine)
    monkeypatch.setattr("pope_eval.models.inspect_model", lambda engine: (None, None))
    res = runner.invoke(data_app, ["build", "--source", "generic", "--path", str(path),
                                   "--engine", "transformers", "--k", "2", "--n", "2",
                                   "--wave-size", "1", "--max-tokens", "16", "--no-decontaminate",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert re.search(r"^\s*4 problems · \d+ hard · \d+ guided \(\d+ fallback\) · [\d,]+ tokens"
                     r"\s*$", res.output, re.MULTILINE), res.output


# -- logs with and without -v -------------------------------------------------------------------
def test_trl_vllm_version_warning_is_hidden_without_verbose():
    code = ("from pope_cli.common import setup_logging; setup_logging({v}); "
            "import trl.import_utils as u; u.is_vllm_available()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    quiet = subprocess.run([sys.executable, "-W", "default", "-c", code.format(v=False)],
                           capture_output=True, text=True, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "TRL currently supports vLLM" not in quiet.stderr
    verbose = subprocess.run([sys.executable, "-W", "default", "-c", code.format(v=True)],
                             capture_output=True, text=True, env=env)
    import warnings

    from trl.import_utils import is_vllm_available

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        is_vllm_available()
    if any("TRL currently supports vLLM" in str(w.message) for w in caught):  # for this vLLM
        assert "TRL currently supports vLLM" in verbose.stderr, verbose.stderr


@pytest.mark.slow
def test_verbose_shows_pope_info_and_no_library_debug(tmp_path, tiny_model_dir):
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"id": "p1", "problem": "What is 2 + 3?", "answer": "5"}) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    res = subprocess.run(
        [str(Path(sys.executable).parent / "pope-eval"), "pass-at-k", "--data", str(data),
         "--model", "smollm2-135m", "--engine", "transformers", "--n", "1", "--max-tokens", "4",
         "--out", str(tmp_path / "r"), "-v"],
        capture_output=True, text=True, env=env, timeout=600)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output
    assert "1 problems, 0 already finished" in output  # pope's own INFO
    assert "DEBUG" not in output and "findfont" not in output and "matplotlib" not in output
    assert len(output.splitlines()) < 60, output
