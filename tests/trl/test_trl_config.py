"""The TRL backend without training: config registry, validation, data checks, reward and metrics.

Fast tests (no model is loaded); the real GRPO steps are in test_trl_train.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pope_cli.train import app
from typer.testing import CliRunner

from pope_eval.errors import ConfigError, DataError
from pope_train.backends.trl.backend import (
    PAPER_SETTINGS,
    PopeReward,
    TrlConfig,
    grpo_settings,
    plan_trl,
    rollout_engine,
    train,
)
from pope_train.backends.trl.metrics import STEP_FIELDS, batch_stats, plot_metrics, step_record
from pope_train.backends.trl.resume import fingerprint
from pope_train.recipes import RECIPES
from tests.trl.conftest import make_export

runner = CliRunner()


TRL_RECIPES = [r.name for r in RECIPES.values() if r.supports("trl")]


def test_every_recipe_either_runs_on_trl_or_says_why_not():
    for r in RECIPES.values():
        assert r.supports("trl") or r.why_not("trl")
    assert {"pope", "hard_only", "easy_hard_mix", "clip_higher", "pope_easy_hard",
            "entropy_bonus", "sft_then_rl", "pope_online", "fixed_ratio", "ghpo", "pope_adaptive",
            "pope_shorter", "fixed_ratio_istar"} == set(TRL_RECIPES)
    assert RECIPES["pass_at_k"].why_not("trl").startswith("TRL has no pass@k advantage estimator")


@pytest.mark.parametrize("name", TRL_RECIPES)
def test_grpo_settings_follow_the_paper(name, tmp_path):
    cfg = TrlConfig(config=name, model="smollm2-135m", export_dir=str(tmp_path))
    s = grpo_settings(cfg, str(tmp_path), on_gpu=False)
    assert s["num_generations"] == 8 and s["beta"] == 0.0 and s["num_iterations"] == 1
    assert s["entropy_coef"] == (0.001 if name == "entropy_bonus" else 0.0)
    assert s.get("epsilon_high") == (0.28 if name == "clip_higher" else None)
    assert s["per_device_train_batch_size"] == cfg.prompts_per_step * 8
    # Checkpoints keep the optimizer, scheduler and RNG states: a rerun resumes from them.
    assert not s["save_only_model"] and not s["bf16"] and s["use_cpu"]
    assert s["learning_rate"] == PAPER_SETTINGS["learning_rate"]
    # The settings build a real GRPOConfig (TRL's own validation).
    from trl import GRPOConfig

    GRPOConfig(**s)


def test_run_options_override_the_recipe(tmp_path):
    cfg = TrlConfig(config="pope", model="m", export_dir=str(tmp_path), learning_rate=3e-5,
                    temperature=0.7, num_generations=4, max_completion_length=24, seed=5)
    s = grpo_settings(cfg, str(tmp_path), on_gpu=False)
    assert (s["learning_rate"], s["temperature"], s["num_generations"]) == (3e-5, 0.7, 4)
    assert (s["max_completion_length"], s["seed"], s["data_seed"]) == (24, 5, 5)


def test_clipping_schedule_and_kl_are_options_with_trls_and_the_papers_defaults(tmp_path):
    from trl import GRPOConfig

    base = {"config": "pope", "model": "m", "export_dir": str(tmp_path)}
    s = grpo_settings(TrlConfig(**base), str(tmp_path), on_gpu=False)
    defaults = GRPOConfig(output_dir=str(tmp_path), use_cpu=True)
    assert s["max_grad_norm"] == defaults.max_grad_norm == 1.0
    assert s["lr_scheduler_type"] == defaults.lr_scheduler_type.value == "linear"
    assert s["beta"] == 0.0 and "use_vllm" not in s
    s = grpo_settings(TrlConfig(**base, max_grad_norm=0.3, lr_scheduler="cosine", beta=0.04),
                      str(tmp_path), on_gpu=False)
    args = GRPOConfig(**s)
    assert (args.max_grad_norm, args.lr_scheduler_type.value, args.beta) == (0.3, "cosine", 0.04)


def test_an_unknown_lr_scheduler_is_named_at_plan_time(tmp_path, tiny_model_dir):
    export = make_export(tmp_path / "data", hard=1, easy=0)
    with pytest.raises(ConfigError, match="--lr-scheduler: unknown 'cosine-ish'; choose one of "
                                          "linear, cosine,"):
        plan_trl(TrlConfig(config="pope", model=str(tiny_model_dir), export_dir=str(export),
                           out_dir=str(tmp_path / "o"), lr_scheduler="cosine-ish"))


@pytest.mark.parametrize("choice, on_gpu, installed, mode", [
    ("auto", False, True, "off"), ("auto", True, False, "off"), ("auto", True, True, "colocate"),
    ("off", True, True, "off"), ("colocate", True, True, "colocate"),
    ("server", True, True, "server"),
])
def test_vllm_auto_is_colocate_on_cuda_only(choice, on_gpu, installed, mode):
    assert rollout_engine(choice, on_gpu=on_gpu, vllm_installed=installed) == mode


@pytest.mark.parametrize("choice, on_gpu, installed, message", [
    ("colocate", False, True, "--vllm colocate needs a CUDA GPU: vLLM's CPU build fails at TRL's "
                              "first weight sync ('Parameter' object has no attribute "
                              "'weight_loader'"),
    ("server", False, True, "--vllm server needs a CUDA GPU: TRL pushes the policy's weights to "
                            "the server over NCCL"),
    ("colocate", True, False, "--vllm colocate needs vllm, which is not importable"),
])
def test_vllm_where_it_cannot_run_is_one_clear_error(choice, on_gpu, installed, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        rollout_engine(choice, on_gpu=on_gpu, vllm_installed=installed)


def test_vllm_modes_reach_grpo_config(tmp_path):
    base = {"config": "pope", "model": "m", "export_dir": str(tmp_path)}
    s = grpo_settings(TrlConfig(**base), str(tmp_path), on_gpu=True, vllm_installed=True)
    assert (s["use_vllm"], s["vllm_mode"], s["bf16"]) == (True, "colocate", True)
    s = grpo_settings(TrlConfig(**base, vllm="server", vllm_server="http://10.0.0.2:8000"),
                      str(tmp_path), on_gpu=True, vllm_installed=True)
    assert (s["vllm_mode"], s["vllm_server_base_url"]) == ("server", "http://10.0.0.2:8000")
    s = grpo_settings(TrlConfig(**base, vllm="off"), str(tmp_path), on_gpu=True,
                      vllm_installed=True)
    assert "use_vllm" not in s
    with pytest.raises(ConfigError, match=re.escape(
            "--vllm-server: a server URL is for --vllm server (this run: --vllm auto)")):
        grpo_settings(TrlConfig(**base, vllm_server="http://h:8000"), str(tmp_path), on_gpu=True,
                      vllm_installed=True)


def test_vllm_colocate_on_this_cpu_is_refused_by_the_cli(tmp_path, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs --vllm colocate")
    export = make_export(tmp_path / "data", hard=1, easy=0)
    res = runner.invoke(app, ["run", "pope", "--model", str(tiny_model_dir), "--backend", "trl",
                              "--export", str(export), "--out", str(tmp_path / "o"),
                              "--vllm", "colocate", "--dry-run"])
    assert res.exit_code == 2
    assert "error: vllm: --vllm colocate needs a CUDA GPU" in " ".join(res.output.split())
    res = runner.invoke(app, ["run", "pope", "--model", str(tiny_model_dir), "--backend", "trl",
                              "--export", str(export), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 0 and "rollouts: transformers generate()" in res.output


@pytest.mark.parametrize("kwargs, field", [
    ({"config": "nope"}, "config"),
    ({"config": "pass_at_k"}, "pass@k"),
    ({"max_steps": 0}, "--max-steps"),
    ({"num_generations": 1}, "--num-generations"),
    ({"learning_rate": 0.0}, "--learning-rate"),
    ({"temperature": -1.0}, "--temperature"),
    ({"seed": -1}, "--seed"),
    ({"max_grad_norm": 0.0}, "--max-grad-norm"),
    ({"beta": -0.1}, "--beta"),
    ({"vllm": "yes"}, "--vllm: unknown 'yes'; choose one of auto, colocate, server, off"),
    ({"export_dir": None}, "train_files"),
    ({"model": " "}, "model"),
])
def test_config_errors_name_the_flag(kwargs, field):
    base = {"config": "pope", "model": "smollm2-135m", "export_dir": "x"}
    with pytest.raises(ConfigError, match=field):
        TrlConfig(**{**base, **kwargs})


def test_plan_checks_the_export_and_the_out_folder(tmp_path, tiny_model_dir):
    export = make_export(tmp_path / "data", hard=2, easy=0)
    with pytest.raises(DataError, match="easy/train.parquet"):
        plan_trl(TrlConfig(config="easy_hard_mix", model=str(tiny_model_dir),
                           export_dir=str(export), out_dir=str(tmp_path / "o1")))
    used = tmp_path / "used"
    (used / "final").mkdir(parents=True)  # a run of seed 1 that left results
    (used / "run_config.json").write_text(json.dumps({"config": fingerprint(TrlConfig(
        config="pope", model=str(tiny_model_dir), export_dir=str(export), seed=1))}))
    with pytest.raises(ConfigError, match="another config.*Changed: seed: 1 -> 0$"):
        plan_trl(TrlConfig(config="pope", model=str(tiny_model_dir), export_dir=str(export),
                           out_dir=str(used)))
    # The same config, --out aside, is the same run: planned to resume (no checkpoint: step 0).
    folder = plan_trl(TrlConfig(config="pope", model=str(tiny_model_dir), export_dir=str(export),
                                out_dir=str(used), seed=1)).folder
    assert folder is not None and folder.checkpoint is None and not folder.finished
    with pytest.raises(ConfigError, match="config.json"):
        plan_trl(TrlConfig(config="pope", model=str(tmp_path), export_dir=str(export),
                           out_dir=str(tmp_path / "o2")))


@contextlib.contextmanager
def locked_by_another_process(out: Path) -> Iterator[int]:
    """Hold the run lock on `out` in a second process (as a running `pope-train run` does);
    yields its pid."""
    code = ("import sys\nfrom pope_eval.runinfo import lock_run_dir\n"
            "with lock_run_dir(sys.argv[1], 'pope-train run'):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_run_into_the_same_out_fails_at_once_naming_the_holder(tmp_path, tiny_model_dir):
    export = make_export(tmp_path / "data", hard=1, easy=0)
    out = tmp_path / "run"
    cfg = TrlConfig(config="pope", model=str(tiny_model_dir), export_dir=str(export),
                    out_dir=str(out))
    plan = plan_trl(cfg)  # planned before the other run took the folder
    with locked_by_another_process(out) as pid:
        with pytest.raises(ConfigError, match=f"{out} is in use by process {pid} "):
            train(plan)
        assert not (out / "run_config.json").exists() and not (out / "metrics.jsonl").exists()
        with pytest.raises(ConfigError, match=f"in use by process {pid} "):
            plan_trl(cfg)
        res = runner.invoke(app, ["run", "pope", "--model", str(tiny_model_dir), "--backend", "trl",
                                  "--export", str(export), "--out", str(out), "--dry-run"])
        assert res.exit_code == 2 and f"process {pid}" in res.output
    # The holder ended: the folder takes a run again.
    assert plan_trl(cfg).config.out_dir == str(out)


def test_plan_reads_the_config_subsets_and_tells_hard_from_easy(tmp_path, tiny_model_dir):
    export = make_export(tmp_path / "data", hard=2, easy=2)
    plan = plan_trl(TrlConfig(config="pope_easy_hard", model=str(tiny_model_dir),
                              export_dir=str(export), out_dir=str(tmp_path / "o")))
    assert [Path(f).parent.name for f in plan.train_files] == ["mix", "easy"]
    assert plan.hard_ids == {"synthetic-s0-d1-00000", "synthetic-s0-d1-00001"}
    plan = plan_trl(TrlConfig(config="easy_hard_mix", model=str(tiny_model_dir),
                              export_dir=str(export), out_dir=str(tmp_path / "o")))
    assert len(plan.hard_ids) == 2 and not any("-s1-" in i for i in plan.hard_ids)


def test_trl_reads_the_export_through_its_own_loading_path(one_problem_export):
    import datasets
    from trl.data_utils import is_conversational

    ds = datasets.load_dataset("parquet", data_files=str(one_problem_export / "mix/train.parquet"),
                               split="train")
    row = ds[0]
    assert is_conversational(row)
    assert {"prompt", "reward_model", "extra_info", "solution"} <= set(ds.column_names)


def test_reward_grades_with_pope_and_logs_guided_unguided_and_solvable():
    reward = PopeReward(frozenset({"a", "b"}))
    logged: dict[str, list[float]] = {}
    completions = [[{"role": "assistant", "content": t}] for t in
                   ["The answer is \\boxed{12}.", "It is 7.", "\\boxed{5}", "no idea"]]
    infos = [{"problem_id": "a", "guided": False}, {"problem_id": "a", "guided": False},
             {"problem_id": "b", "guided": False}, {"problem_id": "b", "guided": True}]
    scores = reward(prompts=[[]] * 4, completions=completions,
                    reward_model=[{"ground_truth": g} for g in ["12", "12", "6", "6"]],
                    extra_info=infos, data_source=["pope/synthetic"] * 4,
                    log_metric=lambda k, v: logged.setdefault(k, []).append(v),
                    trainer_state=None)
    assert scores == [1.0, 0.0, 0.0, 0.0]
    # one value per row (per problem for solvability): TRL's mean over processes is over rows
    assert logged["pope/reward_unguided"] == [1.0, 0.0, 0.0]
    assert logged["pope/reward_guided"] == [0.0]
    assert logged["pope/solvable"] == [1.0, 0.0]  # a has a correct rollout, b none
    assert reward.rows_graded == {"guided": 1, "unguided": 3}


def test_batch_stats_leave_out_what_a_step_did_not_have():
    stats = batch_stats([1.0, 0.0], [{"guided": True, "problem_id": "x"}] * 2, frozenset({"x"}))
    assert stats == {"pope/reward_guided": 0.5, "pope/unguided_hard_problems": 0.0}


def test_step_records_and_plot(tmp_path):
    logs = {"reward": 0.25, "pope/reward_guided": 0.5, "entropy": 1.5,
            "completions/mean_length": 20.0, "pope/solvable": float("nan")}
    record = step_record(3, logs)
    assert record["step"] == 3 and record["reward_guided"] == 0.5 and record["solvable"] is None
    assert set(record) == {"step", *STEP_FIELDS}
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps({**record, "step": s}) for s in (1, 2)) + "\n")
    png = plot_metrics(path, tmp_path / "m.png")
    assert png.stat().st_size > 1000


def test_pope_train_and_the_trl_path_import_without_verl():
    code = ("import sys, pope_train, pope_train.backends.trl.backend, pope_train.backends.trl.metrics, pope_cli.train; "
            "assert 'verl' not in sys.modules, 'verl imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_refuses_options_of_the_other_backend(tmp_path):
    res = runner.invoke(app, ["run", "pope", "--model", "smollm2-135m", "--backend", "trl",
                              "--export", str(tmp_path), "trainer.total_epochs=3"])
    assert res.exit_code == 2 and "verl overrides" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "smollm2-135m", "--backend", "trl",
                              "--export", str(tmp_path), "--nnodes", "2"])
    assert res.exit_code == 2 and "--nnodes" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "smollm2-135m",
                              "--export", str(tmp_path), "--max-steps", "3"])
    assert res.exit_code == 2 and "--max-steps" in res.output and "trl" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "m", "--backend", "jax"])
    assert res.exit_code == 2 and "--backend" in res.output


def test_cli_validates_before_loading(tmp_path):
    res = runner.invoke(app, ["run", "pass_at_k", "--model", "smollm2-135m", "--backend", "trl",
                              "--export", str(tmp_path)])
    assert res.exit_code == 2 and "--backend verl" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "smollm2-135m", "--backend", "trl",
                              "--export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "missing" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "smollm2-135m", "--backend", "trl",
                              "--export", str(tmp_path), "--max-steps", "0"])
    assert res.exit_code == 2 and "--max-steps: must be >= 1" in res.output


def test_cli_dry_run_prints_the_grpo_config(one_problem_export, tiny_model_dir, tmp_path):
    res = runner.invoke(app, ["run", "clip_higher", "--model", str(tiny_model_dir), "--backend",
                              "trl", "--export", str(one_problem_export.parent.parent / "x"),
                              "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 2  # no export there
    export = make_export(tmp_path / "data", hard=2, easy=0)
    res = runner.invoke(app, ["run", "clip_higher", "--model", str(tiny_model_dir), "--backend",
                              "trl", "--export", str(export), "--out", str(tmp_path / "o"),
                              "--dry-run", "--max-steps", "7"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout[res.stdout.index("{"):])
    assert plan["grpo_config"]["epsilon_high"] == 0.28 and plan["grpo_config"]["max_steps"] == 7
    assert not (tmp_path / "o").exists()


def test_cli_lists_backends_per_config():
    res = runner.invoke(app, ["configs"])
    assert res.exit_code == 0
    line = next(ln for ln in res.stdout.splitlines() if "pass_at_k" in ln)
    assert "no" in line


def test_fewer_training_prompts_than_a_step_takes_is_refused_before_training(tmp_path):
    # TRL's sampler makes no batch from 3 prompts at 4 a step: the run would end after 0 steps.
    export = make_export(tmp_path / "export", hard=3, easy=0)
    res = runner.invoke(app, ["run", "hard_only", "--backend", "trl", "--export", str(export),
                              "--model", "smollm2-135m", "--prompts-per-step", "4",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code != 0
    assert "3 prompt(s)" in res.output and "--prompts-per-step 4" in res.output
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    plan = plan_trl(TrlConfig(config="hard_only", model="smollm2-135m",
                              export_dir=str(export), out_dir=str(tmp_path / "ok"),
                              prompts_per_step=3))
    assert len(plan.hard_ids) == 3
