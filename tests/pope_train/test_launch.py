"""`pope-train run/configs`: data checks, the verl command, and verl's resolved config (dry run)."""

from __future__ import annotations

import sys

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from pope_eval.errors import ConfigError, DataError, MissingExtraError
from pope_train.backends.verl.launch import LaunchConfig, plan_launch, require_verl
from pope_train.data import check_data_file, check_same_schema
from pope_train.recipes import RECIPES


def test_launch_config_validation(export_dir):
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        LaunchConfig(config="nope", model="m", export_dir=str(export_dir))
    with pytest.raises(ConfigError, match="train_files"):
        LaunchConfig(config="pope", model="m")
    with pytest.raises(ConfigError, match="'--lr' is not a verl/Hydra override"):
        LaunchConfig(config="pope", model="m", export_dir=str(export_dir), overrides=("--lr",))
    with pytest.raises(ConfigError, match="gpus_per_node"):
        LaunchConfig(config="pope", model="m", export_dir=str(export_dir), gpus_per_node=0)


def test_data_checks_name_file_and_problem(export_dir, tmp_path):
    import polars as pl

    with pytest.raises(DataError, match="missing.parquet: no such file"):
        check_data_file(tmp_path / "missing.parquet")
    good = pq.read_table(export_dir / "hard" / "train.parquet")
    no_rm = tmp_path / "no_rm.parquet"
    pq.write_table(good.drop(["reward_model"]), no_rm)
    with pytest.raises(DataError, match=r"no_rm.parquet: missing verl column\(s\) \['reward_model'\]"):
        check_data_file(no_rm)
    flat = tmp_path / "flat_prompt.parquet"
    pl.read_parquet(export_dir / "hard" / "train.parquet").with_columns(
        pl.col("problem").alias("prompt")).write_parquet(flat)
    with pytest.raises(DataError, match="'prompt' must be a list of"):
        check_data_file(flat)
    other = tmp_path / "other.parquet"
    pq.write_table(good.drop(["solution"]), other)
    check_data_file(other)  # extra plain columns are optional...
    with pytest.raises(DataError, match="cannot concatenate"):  # ...but one split must agree
        check_same_schema([str(export_dir / "hard" / "train.parquet"), str(other)], "train files")


def test_missing_verl_names_the_setup(tmp_path):
    # An interpreter without site-packages stands in for a venv without the train extra.
    bare = tmp_path / "python-without-verl"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    with pytest.raises(MissingExtraError, match="setup_train_env.sh"):
        require_verl(str(bare))


@pytest.mark.parametrize("name", ["pope", "hard_only", "pope_easy_hard"])
def test_plan_uses_the_configs_export_subsets(export_dir, tiny_model_dir, tmp_path, name):
    plan = plan_launch(LaunchConfig(config=name, model=str(tiny_model_dir),
                                    export_dir=str(export_dir), work_dir=str(tmp_path),
                                    benchmarks=("aime2025",),
                                    overrides=("trainer.total_epochs=2",)))
    assert plan.train_files == tuple(str((export_dir / s / "train.parquet").resolve())
                                     for s in RECIPES[name].subsets)
    sources = [pq.read_table(p, columns=["data_source"]).column(0).unique().to_pylist()
               for p in plan.val_files]
    assert sources == [["pope/hard"], ["pope/hard_guided"], ["aime2025"]]
    aime = pq.read_table(plan.val_files[-1]).to_pylist()
    assert len(aime) == 30 and aime[0]["reward_model"]["ground_truth"] == "70"
    assert pq.read_schema(plan.val_files[-1]).equals(pq.read_schema(plan.train_files[0]))
    cmd = plan.command
    assert cmd[1:3] == ("-m", "verl.trainer.main_ppo")
    assert cmd[cmd.index("--config-name") + 1] == name
    assert f"actor_rollout_ref.model.path={tiny_model_dir}" in cmd
    assert cmd[-1] == "trainer.total_epochs=2"
    assert plan.env["VERL_USE_EXTERNAL_MODULES"] == "pope_train.advantages"


def test_cli_configs_lists_every_config():
    from pope_cli.train import app

    result = CliRunner().invoke(app, ["configs"])
    assert result.exit_code == 0, result.output
    for name in RECIPES:
        assert name in result.output


def test_cli_dry_run_prints_command_and_verls_resolved_config(export_dir, tiny_model_dir, tmp_path):
    from pope_cli.train import app

    result = CliRunner().invoke(app, [
        "run", "pass_at_k", "--export", str(export_dir), "--model", str(tiny_model_dir),
        "--work-dir", str(tmp_path), "--nnodes", "2", "--gpus-per-node", "4", "--dry-run",
        "algorithm.pass_k=4", "trainer.total_epochs=3",
    ])
    assert result.exit_code == 0, result.output
    command, _, config_yaml = result.stdout.partition("\n")
    assert "verl.trainer.main_ppo" in command and "--config-name pass_at_k" in command
    cfg = yaml.safe_load(config_yaml)
    assert cfg["algorithm"]["adv_estimator"] == "pope_passk"
    assert cfg["algorithm"]["pass_k"] == 4
    assert cfg["trainer"]["total_epochs"] == 3
    assert (cfg["trainer"]["nnodes"], cfg["trainer"]["n_gpus_per_node"]) == (2, 4)
    assert cfg["data"]["train_files"] == [str((export_dir / "hard" / "train.parquet").resolve())]
    assert cfg["actor_rollout_ref"]["model"]["path"] == str(tiny_model_dir)


def test_cli_bad_data_is_one_clear_error(tmp_path, tiny_model_dir):
    from pope_cli.train import app

    result = CliRunner().invoke(app, ["run", "pope", "--train", str(tmp_path / "x.parquet"),
                                      "--model", str(tiny_model_dir), "--dry-run"])
    assert result.exit_code == 2
    assert "x.parquet: no such file" in " ".join(result.output.split())
