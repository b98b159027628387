"""pope_train/config/*.yaml composed by Hydra on verl's own config tree and checked by verl."""

from __future__ import annotations

import pytest

from pope_train.backends.verl.launch import CONFIG_DIR
from pope_train.recipes import RECIPES

# Per config: the values that make it the paper's run (everything else comes from _pope.yaml).
EXPECTED = {
    "pope": {},
    "hard_only": {},
    "entropy_bonus": {"actor_rollout_ref.actor.entropy_coeff": 0.001},
    "clip_higher": {"actor_rollout_ref.actor.clip_ratio_high": 0.28},
    "pass_at_k": {"algorithm.adv_estimator": "pope_passk", "algorithm.pass_k": 8},
    "easy_hard_mix": {},
    "pope_easy_hard": {},
    "sft_then_rl": {},  # its SFT stage's _sft.yaml: test_sft_config.py
}
COMMON = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.actor.entropy_coeff": 0,
    "actor_rollout_ref.actor.clip_ratio_high": 0.2,
    "actor_rollout_ref.rollout.n": 8,
    "reward.custom_reward_function.path": "pkg://pope_train.reward",
    "reward.custom_reward_function.name": "compute_score_async",
    "ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES": "pope_train.advantages",
}


def compose(name: str, overrides: list[str] | None = None):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = hydra_compose(config_name=name, overrides=[
            "actor_rollout_ref.model.path=/models/tiny", "trainer.n_gpus_per_node=1",
            *(overrides or []),
        ])
    OmegaConf.resolve(cfg)
    return cfg


def test_every_verl_recipe_has_its_yaml_and_every_yaml_a_recipe():
    yamls = {p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("_")}
    assert yamls == {r.name for r in RECIPES.values() if r.supports("verl")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_composes_on_verl_and_passes_its_validation(name):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = compose(name)
    want = {**COMMON, **EXPECTED[name]}
    got = {key: OmegaConf.select(cfg, key) for key in want}
    assert got == want
    # verl's own defaults are underneath (keys we never set), and validation samples n > 1.
    assert cfg.actor_rollout_ref.rollout.val_kwargs.n > 1
    assert cfg.actor_rollout_ref.rollout.val_kwargs.do_sample is True
    assert cfg.data.prompt_key == "prompt" and cfg.data.reward_fn_key == "data_source"
    assert cfg.trainer.experiment_name == name
    # No KL anywhere: verl builds no reference policy and (GRPO) no critic.
    assert need_reference_policy(cfg) is False
    assert need_critic(cfg) is False
    validate_config(config=cfg, use_reference_policy=False, use_critic=False)


def test_command_line_overrides_reach_the_config():
    cfg = compose("pass_at_k", ["algorithm.pass_k=4", "actor_rollout_ref.rollout.n=16"])
    assert cfg.algorithm.pass_k == 4 and cfg.actor_rollout_ref.rollout.n == 16
