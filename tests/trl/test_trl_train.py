"""Two real GRPO steps through TRL with the bundled tiny model, and the rest of the toolkit on the result.

Slow (the model trains on CPU): one run per module, shared by the checks below.
"""

from __future__ import annotations

import json

import pytest
from pope_cli.eval import app as eval_app
from pope_cli.train import app as train_app
from typer.testing import CliRunner

from pope_train.backends.trl.backend import TrlConfig, plan_trl, train
from pope_train.backends.trl.metrics import STEP_FIELDS, read_metrics

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(one_problem_export, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trl_run") / "run"
    # 2 prompts per step = the whole mix (the problem unguided and guided) in every step.
    plan = plan_trl(TrlConfig(config="pope", model=str(tiny_model_dir),
                              export_dir=str(one_problem_export), out_dir=str(out), max_steps=2,
                              prompts_per_step=2, max_completion_length=24, save_steps=2,
                              learning_rate=1e-5, seed=0))
    seen: list[tuple[dict, int]] = []
    result = train(plan, progress=lambda record, total: seen.append((record, total)))
    return plan, result, seen


def test_two_steps_change_the_weights(trained, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    _, result, _ = trained
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(result.final_model / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    rewards = [r["reward"] for r in read_metrics(result.metrics)]
    assert any(r > 0 for r in rewards), "no correct rollout: zero advantages cannot move weights"


def test_reward_saw_guided_and_unguided_rows(trained):
    _, result, _ = trained
    # 2 steps x 2 prompts x 8 rollouts, half of the prompts guided.
    assert result.rows_graded == {"guided": 16, "unguided": 16}


def test_metrics_file_has_every_field_per_step(trained):
    _, result, seen = trained
    records = read_metrics(result.metrics)
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert set(r) == {"step", *STEP_FIELDS}
        for key in ("reward", "reward_guided", "reward_unguided", "solvable"):
            assert 0.0 <= r[key] <= 1.0
        assert r["entropy"] > 0 and 0 < r["response_length"] <= 24
    assert [rec for rec, _ in seen] == records and {t for _, t in seen} == {2}
    assert result.plot.stat().st_size > 1000
    config = json.loads((result.out_dir / "run_config.json").read_text())
    assert config["grpo_config"]["beta"] == 0.0 and config["versions"]["trl"].startswith("1.")


def test_checkpoint_is_a_model_folder_the_engines_load(trained):
    from pope_eval.engines import EngineConfig, make_engine
    from pope_eval.models import resolve_model

    _, result, _ = trained
    assert [c.name for c in result.checkpoints] == ["checkpoint-2"]
    ckpt = result.checkpoints[0]
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (ckpt / name).is_file()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(ckpt).chat_template
    # Beside the model, what a rerun resumes from (pope_train.backends.trl.resume).
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "pope_state.json"):
        assert (ckpt / name).is_file()
    assert resolve_model(str(ckpt)).path == str(ckpt.resolve())
    engine = make_engine(EngineConfig(engine="transformers", model=str(ckpt)))
    engine.close()


def test_pope_eval_pass_at_k_runs_on_the_checkpoint(trained, one_problem_export, tmp_path):
    _, result, _ = trained
    out = tmp_path / "eval"
    res = runner.invoke(eval_app, [
        "pass-at-k", "--model", str(result.checkpoints[0]), "--engine", "transformers",
        "--data", str(one_problem_export / "hard" / "train.parquet"), "--n", "2", "--k", "1,2",
        "--max-tokens", "16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary  # the evaluation finished and wrote its summary


def test_pope_train_cli_trains_with_the_trl_backend(one_problem_export, tiny_model_dir, tmp_path):
    out = tmp_path / "cli_run"
    res = runner.invoke(train_app, [
        "run", "hard_only", "--backend", "trl", "--export", str(one_problem_export),
        "--model", str(tiny_model_dir), "--max-steps", "1", "--prompts-per-step", "1",
        "--num-generations", "2", "--max-completion-length", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(read_metrics(out / "metrics.jsonl")) == 1
    assert (out / "final" / "config.json").is_file() and (out / "metrics.png").is_file()
    assert "final model" in res.output
