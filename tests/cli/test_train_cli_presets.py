"""`pope-train run --preset`: the paper's train values fill the options not given, per backend, and are recorded.

Dry runs of the TRL backend (no model is loaded); the recorded run_config.json of a real run is
checked in tests/trl/test_trl_sft_train.py.
"""

from __future__ import annotations

import json

import pytest
from pope_cli.train import app
from typer.testing import CliRunner

from pope_eval.presets import PRESETS
from tests.trl.conftest import make_export

runner = CliRunner()


@pytest.fixture
def export(tmp_path):
    return make_export(tmp_path / "data", hard=1, easy=0)


def dry_run(args: list[str]) -> tuple[str, dict]:
    res = runner.invoke(app, ["run", "pope", "--backend", "trl", "--dry-run", *args])
    assert res.exit_code == 0, res.output
    return res.output, json.loads(res.stdout[res.stdout.index("{"):])


def preset_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("preset "))


def test_the_paper_preset_fills_every_train_value_on_trl(export, tmp_path):
    output, plan = dry_run(["--export", str(export), "--out", str(tmp_path / "o"),
                            "--preset", "paper"])
    paper = PRESETS["paper"].values_for("train")
    grpo = plan["grpo_config"]
    assert plan["config"]["model"] == paper["--model"].value == "Qwen/Qwen3-4B-Instruct-2507"
    assert plan["model_path"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert (grpo["num_generations"], grpo["max_completion_length"], grpo["temperature"]) == (
        8, 16384, 0.8)
    assert (grpo["learning_rate"], grpo["lr_scheduler_type"], grpo["max_grad_norm"],
            grpo["beta"]) == (1e-6, "cosine", 0.3, 0.0)
    assert plan["preset"]["name"] == "paper"
    assert set(plan["preset"]["set"]) == set(paper)
    assert plan["preset"]["explicit"] == [] and plan["preset"]["not_applied"] == []
    line = preset_line(output)
    assert "--lr-scheduler cosine" in line and "--max-grad-norm 0.3" in line
    assert "yours" not in line and "no such option here" not in line


def test_explicit_options_win_over_the_preset(export, tiny_model_dir, tmp_path):
    output, plan = dry_run(["--export", str(export), "--out", str(tmp_path / "o"),
                            "--preset", "paper", "--model", str(tiny_model_dir),
                            "--temperature", "0.5", "--lr-scheduler", "constant",
                            "--max-completion-length", "32"])
    grpo = plan["grpo_config"]
    assert plan["model_path"] == str(tiny_model_dir)
    assert (grpo["temperature"], grpo["lr_scheduler_type"], grpo["max_completion_length"]) == (
        0.5, "constant", 32)
    assert grpo["max_grad_norm"] == 0.3  # still the preset's
    assert plan["preset"]["explicit"] == ["--lr-scheduler", "--max-completion-length", "--model",
                                          "--temperature"]
    assert "--temperature" not in plan["preset"]["set"]
    assert "; yours: --lr-scheduler, --max-completion-length, --model, --temperature" in (
        preset_line(output))


def test_without_a_preset_nothing_is_recorded(export, tiny_model_dir, tmp_path):
    output, plan = dry_run(["--export", str(export), "--out", str(tmp_path / "o"),
                            "--model", str(tiny_model_dir)])
    assert plan["preset"] is None and not any(ln.startswith("preset ") for ln in output.splitlines())
    assert plan["grpo_config"]["lr_scheduler_type"] == "linear"


def test_on_verl_the_preset_sets_the_model_and_names_what_verl_has_no_option_for(export, tmp_path):
    # In the main venv verl is missing: the run stops at that check, after the preset applied.
    res = runner.invoke(app, ["run", "pope", "--export", str(export), "--preset", "paper",
                              "--work-dir", str(tmp_path / "w"), "--dry-run"])
    line = preset_line(res.output)
    assert line.startswith("preset paper: --model Qwen/Qwen3-4B-Instruct-2507; no such option "
                           "here: --beta, --learning-rate, --lr-scheduler, "
                           "--max-completion-length, --max-grad-norm, --num-generations, "
                           "--temperature")


def test_a_model_is_needed_from_the_command_line_or_a_preset(export, tmp_path):
    res = runner.invoke(app, ["run", "pope", "--backend", "trl", "--export", str(export),
                              "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 2
    assert "error: --model: give a Hub id, a local model folder or 'smollm2-135m'" in " ".join(
        res.output.split())


def test_an_unknown_preset_names_the_choices(export, tmp_path):
    res = runner.invoke(app, ["run", "pope", "--backend", "trl", "--export", str(export),
                              "--model", "m", "--preset", "nosuch", "--dry-run"])
    assert res.exit_code == 2
    assert "--preset: unknown preset 'nosuch'; choose one of paper, qwen3-instruct" in " ".join(
        res.output.split())
