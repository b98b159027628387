"""`pope_passk` through verl's `compute_advantage` against the closed form, by hand-made groups."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

N = 8
GROUPS = {"all_wrong": 0, "one_right": 1, "half_right": 4, "all_right": 8}


def closed_form(n: int, c: int, k: int) -> tuple[float, float]:
    """Weights from binomials directly: w+ = C(n-c,k)/C(n,k), w- = w+ - C(n-c-1,k-1)/C(n-1,k-1)."""
    w_pos = comb(n - c, k) / comb(n, k)
    w_neg = w_pos - (comb(n - c - 1, k - 1) / comb(n - 1, k - 1) if c < n else 0.0)
    return w_pos, w_neg


def batch(lengths_seed: int = 0):
    """One DataProto with every group of GROUPS: 0/1 reward on each rollout's last token."""
    import torch
    from verl import DataProto

    rng = np.random.default_rng(lengths_seed)
    uids, correct = [], []
    for name, c in GROUPS.items():
        flags = [True] * c + [False] * (N - c)
        rng.shuffle(flags)
        uids += [name] * N
        correct += flags
    bs, width = len(uids), 12
    lengths = rng.integers(3, width + 1, size=bs)
    mask = torch.zeros(bs, width)
    rewards = torch.zeros(bs, width)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
        rewards[i, length - 1] = 1.0 if correct[i] else 0.0
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                               non_tensors={"uid": np.array(uids, dtype=object)})
    return data, uids, correct, mask


def run_estimator(k: int, norm: bool):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.ray_trainer import compute_advantage

    import pope_train.advantages  # noqa: F401  (registers pope_passk)

    data, uids, correct, mask = batch()
    cfg = OmegaConf.create({"pass_k": k, "norm_adv_by_std_in_grpo": norm})
    out = compute_advantage(data, adv_estimator="pope_passk", norm_adv_by_std_in_grpo=norm,
                            num_repeat=N, config=cfg)
    return out.batch["advantages"], uids, correct, mask


@pytest.mark.parametrize("k", [1, 4, 8])
def test_matches_closed_form(k):
    adv, uids, correct, mask = run_estimator(k, norm=False)
    for i, (uid, ok) in enumerate(zip(uids, correct)):
        w_pos, w_neg = closed_form(N, GROUPS[uid], k)
        want = w_pos if ok else w_neg
        assert adv[i][mask[i] > 0].tolist() == pytest.approx([want] * int(mask[i].sum()), abs=1e-6)
        assert adv[i][mask[i] == 0].abs().sum().item() == 0.0
    # Groups with nothing to learn get zero advantage; weights sum to zero in every group.
    per_group = {u: [adv[i][0].item() for i in range(len(uids)) if uids[i] == u] for u in GROUPS}
    assert per_group["all_wrong"] == [0.0] * N and per_group["all_right"] == [0.0] * N
    for values in per_group.values():
        assert sum(values) == pytest.approx(0.0, abs=1e-6)


def test_one_right_by_hand():
    # n = 8, c = 1, k = 4: rho = 1 - C(7,4)/C(8,4) = 1/2; w+ = 1/2; w- = 3/7 - 1/2 = -1/14.
    adv, uids, correct, _ = run_estimator(4, norm=False)
    got = sorted(adv[i][0].item() for i in range(len(uids)) if uids[i] == "one_right")
    assert got == pytest.approx([-1 / 14] * 7 + [0.5], abs=1e-6)


@pytest.mark.parametrize("k", [1, 4, 8])
def test_std_normalisation(k):
    adv, uids, correct, _ = run_estimator(k, norm=True)
    for uid, c in GROUPS.items():
        if c in (0, N):
            continue
        w_pos, w_neg = closed_form(N, c, k)
        std = float(np.std([w_pos] * c + [w_neg] * (N - c), ddof=1))
        vals = {round(adv[i][0].item(), 5) for i in range(len(uids)) if uids[i] == uid}
        assert vals == {round(w_pos / (std + 1e-6), 5), round(w_neg / (std + 1e-6), 5)}


def test_k1_is_verls_mean_centred_grpo():
    from verl.trainer.ppo.ray_trainer import compute_advantage

    ours, _, _, _ = run_estimator(1, norm=False)
    data, *_ = batch()
    theirs = compute_advantage(data, adv_estimator="grpo", norm_adv_by_std_in_grpo=False,
                               num_repeat=N).batch["advantages"]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-6


def test_bad_k_is_a_clear_error():
    from omegaconf import OmegaConf

    from pope_eval.errors import ConfigError
    from pope_train.advantages import compute_pope_passk_advantage

    data, uids, _, mask = batch()
    args = dict(token_level_rewards=data.batch["token_level_rewards"], response_mask=mask,
                index=np.array(uids, dtype=object))
    with pytest.raises(ConfigError, match="exceeds the 8 rollouts"):
        compute_pope_passk_advantage(**args, config=OmegaConf.create({"pass_k": 9}))
    with pytest.raises(ConfigError, match="algorithm.pass_k"):
        compute_pope_passk_advantage(**args, config=OmegaConf.create({}))
