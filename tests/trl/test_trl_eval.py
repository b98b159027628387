"""Evaluation during TRL training: options, the measured sets, the aggregation, and real evaluations.

The aggregation and planning tests load no model; those that generate with the bundled tiny model
are `slow` (one GRPO run of three steps, and two evaluations of the same weights).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pope_cli.train import app
from typer.testing import CliRunner

from pope_data.synthetic import generate_synthetic
from pope_eval.engines import Sampling
from pope_eval.errors import ConfigError
from pope_train.backends.trl.backend import TrlConfig, plan_trl, train
from pope_train.backends.trl.eval import EvalPlan, aggregate, eval_seed, evaluate_policy
from pope_train.backends.trl.metrics import EVAL_FIELDS, STEP_FIELDS, plot_metrics, read_metrics
from tests.trl.conftest import ECHO, make_export

runner = CliRunner()


@pytest.fixture(scope="module")
def eval_export(tmp_path_factory) -> Path:
    """Training: ECHO and one synthetic hard problem (unguided and guided rows); held-out: two other
    synthetic problems, written by the same export code as the export's hard/validation split."""
    root = tmp_path_factory.mktemp("eval_export")
    export = make_export(root / "train", easy=1,
                         problems=[ECHO, *generate_synthetic(1, seed=0, difficulty=1)])
    heldout = make_export(root / "heldout", easy=0,
                          problems=generate_synthetic(2, seed=5, difficulty=1))
    shutil.copy(heldout / "hard" / "train.parquet", export / "hard" / "validation.parquet")
    return export


def _config(export: Path, model: Path, out: Path, **kwargs) -> TrlConfig:
    return TrlConfig(config="pope", model=str(model), export_dir=str(export), out_dir=str(out),
                     **kwargs)


def test_aggregate_scripted_counts():
    # (samples, correct) per problem: the hard set's solvable fraction and held-out pass@k.
    out = aggregate([(4, 0), (4, 1), (4, 4)], [(4, 0), (4, 2)], (1, 2, 4))
    assert out["eval_solvable"] == pytest.approx(2 / 3)
    # pass@1 = c/n; pass@2 of 2 correct in 4 = 1 - C(2,2)/C(4,2) = 5/6; pass@4 = [c > 0].
    assert out["eval_pass_at_k"] == pytest.approx({"1": 0.25, "2": 5 / 12, "4": 0.5})
    assert (out["eval_solvable_problems"], out["eval_pass_at_k_problems"]) == (3, 2)
    empty = aggregate([], [(2, 1)], (1, 2))
    assert empty["eval_solvable"] is None and empty["eval_pass_at_k"] == {"1": 0.5, "2": 1.0}
    assert aggregate([(8, 0)], [], (1,))["eval_pass_at_k"] is None


def test_evaluations_fall_every_n_steps_and_at_the_last():
    plan = EvalPlan(every=2, samples=4, sampling=Sampling(), ks=(1,), hard=(), heldout=(),
                    heldout_source=None, batch_size=1)
    assert [s for s in range(1, 6) if plan.due(s, max_steps=5)] == [2, 4, 5]


def test_eval_seeds_depend_on_the_problem_only():
    # Common random numbers: every evaluation round draws a problem's samples with one seed.
    assert eval_seed("p-1") == eval_seed("p-1")
    assert eval_seed("p-1") != eval_seed("p-2")


@pytest.mark.parametrize("kwargs, field", [
    ({"eval_every": -1}, "--eval-every"),
    ({"eval_every": 1, "eval_samples": 0}, "--eval-samples"),
    ({"eval_every": 1, "eval_problems": 0}, "--eval-problems"),
    ({"eval_every": 1, "eval_max_tokens": 0}, "--eval-max-tokens"),
    ({"eval_every": 1, "eval_batch_size": 0}, "--eval-batch-size"),
    ({"eval_every": 1, "eval_temperature": 0.0}, "--eval-temperature"),
    ({"eval_samples": 4}, "--eval-samples: evaluation is off"),
    ({"eval_data": "aime2025"}, "--eval-data: evaluation is off"),
])
def test_eval_option_errors_name_the_option(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TrlConfig(config="pope", model="smollm2-135m", export_dir="x", **kwargs)


def test_plan_measures_unguided_hard_rows_and_the_held_out_split(eval_export, tiny_model_dir,
                                                                 tmp_path):
    assert plan_trl(_config(eval_export, tiny_model_dir, tmp_path / "off")).evaluation is None
    plan = plan_trl(_config(eval_export, tiny_model_dir, tmp_path / "o", eval_every=2,
                            eval_samples=6, temperature=0.8, max_completion_length=24))
    ev = plan.evaluation
    # The hard problems' unguided rows: the guided ones and the easy problem are not measured.
    assert {p.id for p in ev.hard} == {ECHO.id, "synthetic-s0-d1-00000"}
    assert all("<partial_solution>" not in p.messages[-1]["content"] for p in ev.hard)
    assert {p.id for p in ev.heldout} == {"synthetic-s5-d1-00000", "synthetic-s5-d1-00001"}
    assert ev.heldout_source == str(eval_export / "hard" / "validation.parquet")
    # Sampling defaults to the rollouts'; pass@k at powers of two up to the samples, and them.
    assert (ev.sampling.temperature, ev.sampling.max_tokens, ev.sampling.seed) == (0.8, 24, 0)
    assert ev.ks == (1, 2, 4, 6)
    assert json.loads(json.dumps(plan.describe()))["evaluation"]["heldout_problems"] == 2

    capped = plan_trl(_config(eval_export, tiny_model_dir, tmp_path / "o", eval_every=1,
                              eval_problems=3, eval_data="aime2025", eval_temperature=0.6,
                              eval_max_tokens=16)).evaluation
    assert capped.heldout_source == "bundled:aime2025" and len(capped.heldout) == 3
    assert len(capped.hard) == 2 and (capped.sampling.temperature, capped.sampling.max_tokens) \
        == (0.6, 16)
    # The same fixed subset whatever the seed.
    again = plan_trl(_config(eval_export, tiny_model_dir, tmp_path / "o", eval_every=1, seed=3,
                             eval_problems=3, eval_data="aime2025")).evaluation
    assert [p.id for p in again.heldout] == [p.id for p in capped.heldout]


def test_plan_leaves_out_answers_math_verify_cannot_read(eval_export, tiny_model_dir, tmp_path):
    data = tmp_path / "heldout.jsonl"
    data.write_text(json.dumps({"id": "ok", "problem": "What is 1 + 1?", "answer": "2"}) + "\n"
                    + json.dumps({"id": "bad", "problem": "What is x?", "answer": "\\frac{1"}) + "\n")
    plan = plan_trl(_config(eval_export, tiny_model_dir, tmp_path / "o", eval_every=1,
                            eval_data=str(data))).evaluation
    assert [p.id for p in plan.heldout] == ["ok"] and plan.heldout_source == str(data)
    assert plan.heldout[0].messages[-1]["content"].startswith("What is 1 + 1?")


def test_plan_refuses_an_evaluation_with_nothing_to_measure(eval_export, tiny_model_dir, tmp_path):
    # Guided rows only, and no export: no unguided hard row, no held-out split.
    with pytest.raises(ConfigError, match="--eval-every: nothing to evaluate"):
        plan_trl(TrlConfig(config="pope", model=str(tiny_model_dir), out_dir=str(tmp_path / "o"),
                           train_files=(str(eval_export / "guided" / "train.parquet"),),
                           eval_every=1))
    # An export without a held-out split still measures its hard set.
    plan = plan_trl(_config(make_export(tmp_path / "x", easy=0), tiny_model_dir, tmp_path / "o",
                            eval_every=1)).evaluation
    assert len(plan.hard) == 1 and plan.heldout == () and plan.heldout_source is None


def test_cli_takes_the_eval_options(eval_export, tiny_model_dir, tmp_path):
    base = ["run", "pope", "--backend", "trl", "--model", str(tiny_model_dir), "--export",
            str(eval_export), "--out", str(tmp_path / "o"), "--dry-run"]
    res = runner.invoke(app, [*base, "--eval-every", "5", "--eval-samples", "8"])
    assert res.exit_code == 0, res.output
    assert '"samples": 8' in res.output and '"ks": [' in res.output
    res = runner.invoke(app, [*base, "--eval-samples", "8"])
    assert res.exit_code == 2 and "--eval-samples: evaluation is off" in res.output


def test_plot_draws_evaluation_records(tmp_path):
    step = {"step": 1, **dict.fromkeys(STEP_FIELDS, 0.5)}
    evals = [{"eval_step": s, "eval_solvable": v, "eval_samples": 4,
              "eval_pass_at_k": {"1": v / 2, "4": v}} for s, v in ((0, 0.0), (1, 0.5))]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (evals[0], step, evals[1])))
    assert plot_metrics(path, tmp_path / "m.png").stat().st_size > 1000


def _tiny_model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
            AutoTokenizer.from_pretrained(path))


def _without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "eval_time"}


@pytest.mark.slow
def test_evaluating_the_same_weights_twice_gives_the_same_numbers(eval_export, tiny_model_dir,
                                                                  tmp_path):
    import torch

    plan = plan_trl(_config(eval_export, tiny_model_dir, tmp_path / "o", eval_every=1,
                            eval_samples=4, eval_max_tokens=12)).evaluation
    model, tokenizer = _tiny_model(str(tiny_model_dir))
    model.train()
    rng = torch.get_rng_state()
    first = evaluate_policy(plan, model, tokenizer, step=3)
    second = evaluate_policy(plan, model, tokenizer, step=3)
    assert set(first) == set(EVAL_FIELDS) and first["eval_step"] == 3
    assert _without_time(first) == _without_time(second)
    assert first["eval_solvable_problems"] == 2 and first["eval_pass_at_k_problems"] == 2
    assert 0 < first["eval_tokens"] <= 4 * 4 * 12 and first["eval_time"] > 0
    # The training loop finds the model as it left it: train mode, no gradient, its RNG untouched.
    assert model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.slow
def test_training_writes_evaluations_at_step_0_every_n_and_the_last(eval_export, tiny_model_dir,
                                                                    tmp_path):
    out = tmp_path / "run"
    plan = plan_trl(_config(eval_export, tiny_model_dir, out, max_steps=3, prompts_per_step=1,
                            num_generations=2, max_completion_length=8, save_steps=3,
                            eval_every=2, eval_samples=4, eval_max_tokens=8, eval_problems=1))
    result = train(plan)
    records = read_metrics(result.metrics)
    steps = [r for r in records if "step" in r]
    evals = [r for r in records if "eval_step" in r]
    assert len(steps) + len(evals) == len(records)
    assert [r["step"] for r in steps] == [1, 2, 3] and all(set(r) == {"step", *STEP_FIELDS}
                                                            for r in steps)
    assert [r["eval_step"] for r in evals] == [0, 2, 3]
    for r in evals:
        assert set(r) == set(EVAL_FIELDS)
        assert 0 <= r["eval_solvable"] <= 1 and set(r["eval_pass_at_k"]) == {"1", "2", "4"}
    # Step 0 measured the base model: a fresh copy of it gives the same numbers (same seeds).
    model, tokenizer = _tiny_model(plan.model_path)
    assert _without_time(evaluate_policy(plan.evaluation, model, tokenizer, step=0)) \
        == _without_time(evals[0])
    assert json.loads((out / "run_config.json").read_text())["evaluation"]["every"] == 2
    assert result.plot.stat().st_size > 1000
