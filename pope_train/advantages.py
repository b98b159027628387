"""The pass@k advantage estimator, registered with verl as `pope_passk` on import.

Select it with `algorithm.adv_estimator=pope_passk algorithm.pass_k=K`; verl's driver and Ray
workers import this module through `VERL_USE_EXTERNAL_MODULES` (set by pope's configs).

Objective: for a prompt with n rollouts of which c are correct, the unbiased pass@k estimate is
rho(n, c, k) = 1 - C(n-c, k) / C(n, k), the mean over all k-subsets of "some member is correct".
Each rollout gets the mean of that indicator over the k-subsets that contain it, minus rho:

    correct rollout:    w+ = 1 - rho(n, c, k)
    incorrect rollout:  w- = rho(n-1, c, k-1) - rho(n, c, k)    (0 - rho when k = 1)

(an incorrect rollout's subsets succeed when one of its k-1 partners, drawn from the other n-1
rollouts, is correct). The weights sum to zero over the group, give the exact gradient of rho,
and reduce to mean-centred GRPO (Dr. GRPO) for k = 1. With `norm_adv_by_std_in_grpo` they are
divided by the group's standard deviation of the per-rollout values, as GRPO does.

How it differs from verl's built-in `grpo_passk` (arXiv 2503.19595): that one gives a non-zero
advantage only to the single best rollout of a group (r_max - r_second_max), i.e. the k = n
max-reward objective with no k to choose and no signal for incorrect rollouts. `pope_passk`
optimises pass@k for any k <= n, and also pushes incorrect rollouts down by how much they lower
the group's pass@k, which is what the paper's pass@k-objective baseline trains on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from pope_eval.errors import ConfigError, require
from pope_eval.passk import pass_at_k

log = logging.getLogger(__name__)

NAME = "pope_passk"


def passk_weights(n: int, c: int, k: int) -> tuple[float, float]:
    """(weight of a correct rollout, weight of an incorrect rollout) for a group of n with c
    correct, before any std normalisation. A weight whose rollout kind is absent is still
    defined (it is never used)."""
    if k > n:
        raise ConfigError(
            f"algorithm.pass_k = {k} exceeds the {n} rollouts of a group "
            "(actor_rollout_ref.rollout.n); pass@k needs k <= n"
        )
    rho = pass_at_k(n, c, k)
    w_pos = 1.0 - rho
    if k == 1 or n == 1:
        w_neg = -rho
    else:
        w_neg = pass_at_k(n - 1, min(c, n - 1), k - 1) - rho
    return w_pos, w_neg


def _pass_k(config: Any) -> int:
    k = config.get("pass_k") if config is not None else None
    if k is None:
        raise ConfigError(
            f"adv_estimator={NAME} needs algorithm.pass_k (the k of pass@k), e.g. algorithm.pass_k=8"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"algorithm.pass_k must be an integer >= 1, got {k!r}")
    return k


def compute_pope_passk_advantage(
    token_level_rewards: Any,
    response_mask: Any,
    index: np.ndarray,
    epsilon: float = 1e-6,
    config: Any = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """verl advantage-estimator signature: (advantages, returns), both (batch, response_len).

    A rollout counts as correct when its summed reward is > 0.5 (pope's reward is 0/1)."""
    torch = require("torch", "train")
    k = _pass_k(config)
    norm = bool(config.get("norm_adv_by_std_in_grpo", True)) if config is not None else True
    scores = token_level_rewards.sum(dim=-1)
    correct = (scores > 0.5).tolist()
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, uid in enumerate(index):
        groups[uid].append(i)
    adv = torch.zeros_like(scores)
    with torch.no_grad():
        for members in groups.values():
            n = len(members)
            c = sum(1 for i in members if correct[i])
            if n == 1:
                continue  # a single rollout has no group to compare with: advantage 0
            w_pos, w_neg = passk_weights(n, c, k)
            if norm:
                # std of the per-rollout values (w + rho) equals the std of the weights
                values = torch.tensor([w_pos if correct[i] else w_neg for i in members],
                                      dtype=scores.dtype)
                scale = float(torch.std(values)) + epsilon
            else:
                scale = 1.0
            for i in members:
                adv[i] = (w_pos if correct[i] else w_neg) / scale
    adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


def register() -> None:
    """Register `pope_passk` with verl's registry (idempotent)."""
    core_algos = require("verl.trainer.ppo.core_algos", "train")
    if core_algos.ADV_ESTIMATOR_REGISTRY.get(NAME) is not compute_pope_passk_advantage:
        core_algos.register_adv_est(NAME)(compute_pope_passk_advantage)
        log.debug("registered advantage estimator %s", NAME)


register()
