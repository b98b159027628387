"""verl's side of `sft_then_rl`: _sft.yaml on verl's SFT trainer config, its dataset on pope's SFT data, the two commands.

Runs in the train venv (verl); nothing trains: verl composes and checks the configs and builds
its SFT dataset with the bundled model's tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pope_eval.errors import ConfigError
from pope_train.backends.verl.launch import CONFIG_DIR, SFT_CONFIG, LaunchConfig, plan_launch
from pope_train.sft import sft_data, write_sft_data
from tests.trl.conftest import scripted_build


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return scripted_build(tmp_path_factory.mktemp("sft_build"), count=4)


def compose_sft(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name=SFT_CONFIG, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def test_sft_config_composes_on_verls_sft_trainer_and_builds_its_dataclasses(tiny_model_dir):
    from verl.utils.config import omega_conf_to_dataclass

    cfg = compose_sft([f"model.path={tiny_model_dir}", "data.train_files=[/d.parquet]",
                       "trainer.total_training_steps=5"])
    assert cfg.data.messages_key == "messages" and cfg.data.truncation == "error"
    assert cfg.data.max_length == 10240  # _pope.yaml's max_prompt_length + max_response_length
    assert list(cfg.checkpoint.save_contents) == ["hf_model"]
    assert cfg.trainer.resume_mode == "disable" and list(cfg.trainer.logger) == ["console"]
    assert cfg.optim.lr == 1e-5 and cfg.trainer.total_training_steps == 5
    # The typed configs verl's SFT trainer builds from it.
    checkpoint = omega_conf_to_dataclass(cfg.checkpoint)
    assert checkpoint.save_contents == ["hf_model"]
    optim = omega_conf_to_dataclass(cfg.optim)
    assert optim.lr == 1e-5
    model = omega_conf_to_dataclass(cfg.model)
    assert model.path == str(tiny_model_dir)


def test_verls_sft_dataset_reads_pope_sft_data_with_loss_on_the_solution(build, tiny_model_dir,
                                                                        tmp_path):
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    data = sft_data(build, "traces")
    path = write_sft_data(data, tmp_path / "sft.parquet")
    cfg = compose_sft([f"model.path={tiny_model_dir}", f"data.train_files=[{path}]"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = MultiTurnSFTDataset(parquet_files=[str(path)], tokenizer=tokenizer, config=cfg.data)
    assert len(dataset) == len(data.examples) == 4
    item = dataset[0]
    ids, mask = item["input_ids"].tolist(), item["loss_mask"].tolist()
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    answer = data.examples[0]["completion"][0]["content"]
    assert answer in trained  # the solution is trained on...
    assert data.examples[0]["prompt"][0]["content"] not in trained  # ...the problem is not


def test_plan_runs_sft_first_and_grpo_from_its_final_model(build, tiny_model_dir, tmp_path):
    plan = plan_launch(LaunchConfig(config="sft_then_rl", model=str(tiny_model_dir),
                                    export_dir=str(build), work_dir=str(tmp_path), sft_steps=7,
                                    sft_batch_size=2, sft_learning_rate=2e-5,
                                    overrides=("sft.data.micro_batch_size_per_gpu=1",
                                               "trainer.total_epochs=2")))
    sft, grpo = plan.commands()
    assert sft[1:3] == ("-m", "verl.trainer.sft_trainer_ray") and grpo[2] == "verl.trainer.main_ppo"
    assert sft[sft.index("--config-name") + 1] == SFT_CONFIG
    model = tmp_path.resolve() / "sft" / "global_step_7" / "huggingface"
    assert plan.sft_model == str(model)
    assert f"actor_rollout_ref.model.path={model}" in grpo
    assert f"model.path={tiny_model_dir}" in sft
    assert {"trainer.total_training_steps=7", "data.train_batch_size=2", "optim.lr=2e-05",
            "data.micro_batch_size_per_gpu=1"} <= set(sft)
    # sft.KEY=VALUE goes to SFT only, the rest to GRPO only.
    assert "trainer.total_epochs=2" in grpo and "trainer.total_epochs=2" not in sft
    assert not any(a.startswith("sft.") for a in sft + grpo)
    assert plan.sft_data.line() == "4 examples (traces) for 4 of 4 hard training problems"


def test_sft_overrides_and_batch_size_are_checked(build, tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="'sft.optim.lr=1' is for the SFT stage, and config "
                                          "pope has none"):
        LaunchConfig(config="pope", model="m", export_dir=str(build),
                     overrides=("sft.optim.lr=1",))
    with pytest.raises(ConfigError, match="sft_batch_size: verl's SFT trainer drops incomplete "
                                          "batches, and the 4 SFT examples"):
        plan_launch(LaunchConfig(config="sft_then_rl", model=str(tiny_model_dir),
                                 export_dir=str(build), work_dir=str(tmp_path)))


def test_cli_dry_run_prints_both_commands_and_both_resolved_configs(build, tiny_model_dir,
                                                                    tmp_path):
    from pope_cli.train import app

    result = CliRunner().invoke(app, [
        "run", "sft_then_rl", "--export", str(build), "--model", str(tiny_model_dir),
        "--work-dir", str(tmp_path), "--sft-steps", "3", "--sft-batch-size", "4",
        "--sft-data", "solutions", "--dry-run"])
    assert result.exit_code == 0, result.output
    commands, _, docs = result.stdout.partition("\n")
    assert commands.index("verl.trainer.sft_trainer_ray") < commands.index("verl.trainer.main_ppo")
    sft, grpo = yaml.safe_load_all(docs)
    assert sft["trainer"]["total_training_steps"] == 3 and sft["data"]["train_batch_size"] == 4
    assert sft["model"]["path"] == str(tiny_model_dir)
    assert grpo["actor_rollout_ref"]["model"]["path"] == str(
        tmp_path.resolve() / "sft" / "global_step_3" / "huggingface")
    assert grpo["data"]["train_files"] == [str((build / "hard" / "train.parquet").resolve())]
    assert grpo["trainer"]["experiment_name"] == "sft_then_rl"
    assert "sft: 4 examples (solutions) for 4 of 4 hard training problems" in " ".join(
        result.output.split())
