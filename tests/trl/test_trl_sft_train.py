"""`sft_then_rl` on TRL for real: SFT steps, then GRPO steps from the fine-tuned model, then pope-eval on it.

Slow (the bundled model trains on CPU): one CLI run per module, shared by the checks below. The run
also takes `--preset paper`, so its run_config.json records what the preset set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pope_cli.eval import app as eval_app
from pope_cli.train import app as train_app
from typer.testing import CliRunner

from pope_train.backends.trl.metrics import read_metrics
from tests.trl.conftest import scripted_build

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("sft_then_rl")
    export = scripted_build(root / "build", count=4)
    out = root / "run"
    res = runner.invoke(train_app, [
        "run", "sft_then_rl", "--backend", "trl", "--export", str(export),
        "--model", "smollm2-135m", "--preset", "paper", "--sft-steps", "2", "--sft-batch-size", "2",
        "--max-steps", "2", "--prompts-per-step", "1", "--num-generations", "2",
        "--max-completion-length", "8", "--save-steps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return export, out, res.output


def test_sft_ran_its_steps_on_the_builds_traces_and_moved_the_weights(run, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    _, out, output = run
    records = read_metrics(out / "sft" / "metrics.jsonl")
    assert [r["sft_step"] for r in records] == [1, 2]
    assert all(r["loss"] > 0 for r in records)
    data = json.loads((out / "run_config.json").read_text())["sft_data"]
    assert data == {"source": "traces", "examples": 4, "problems_covered": 4,
                    "hard_training_problems": 4, "origins": {"trace": 4}}
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "sft" / "final" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "sft: 4 examples (traces) for 4 of 4 hard training problems" in output
    assert f"SFT model (GRPO's start): {out / 'sft' / 'final'}" in output


def test_grpo_started_from_the_sft_model_and_ran_its_steps(run):
    from safetensors.torch import load_file

    _, out, _ = run
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    config = json.loads((out / "run_config.json").read_text())
    assert config["grpo_config"]["max_steps"] == 2
    sft, final = (load_file(out / d / "model.safetensors") for d in ("sft/final", "final"))
    assert sft.keys() == final.keys()
    # GRPO's checkpoint is the SFT model's architecture and tokenizer, saved whole.
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (out / "final" / name).is_file()


def test_the_preset_is_recorded_in_run_config(run):
    _, out, output = run
    config = json.loads((out / "run_config.json").read_text())
    preset = config["preset"]
    assert preset["name"] == "paper"
    assert set(preset["set"]) == {"--temperature", "--learning-rate", "--lr-scheduler",
                                  "--max-grad-norm", "--beta"}
    assert set(preset["explicit"]) == {"--model", "--num-generations", "--max-completion-length"}
    grpo = config["grpo_config"]
    assert (grpo["temperature"], grpo["lr_scheduler_type"], grpo["max_grad_norm"],
            grpo["learning_rate"]) == (0.8, "cosine", 0.3, 1e-6)
    assert grpo["max_completion_length"] == 8 and grpo["num_generations"] == 2
    assert "preset paper: " in output


def test_the_final_model_evaluates_with_pope_eval(run, tmp_path):
    export, out, _ = run
    res = runner.invoke(eval_app, [
        "pass-at-k", "--model", str(out / "final"), "--engine", "transformers",
        "--data", str(export / "hard" / "train.parquet"), "--limit", "2", "--n", "2",
        "--k", "1,2", "--max-tokens", "8", "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["n"] == 2
    assert summary["model"] == str(out / "final")
