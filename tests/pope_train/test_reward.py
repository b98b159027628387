"""The reward as verl loads it (`get_custom_reward_fn`), on export-shaped guided and unguided rows."""

from __future__ import annotations

import asyncio

import pytest

from tests.pope_train.conftest import export_row

from .test_configs import compose

ROWS = [
    export_row(0, "train", "p-1", "Compute $3 \\times 4 + 5$.", "17", None, 0, 0.0),
    export_row(1, "train", "p-1", "Compute $3 \\times 4 + 5$.", "17",
               "First, $3 \\times 4 = 12$.", 1, 0.5),
    export_row(2, "train", "p-2", "What is $\\frac{1}{2} + \\frac{1}{3}$?", "\\frac{5}{6}",
               "Use the common denominator 6.", 1, 0.4),
]
RESPONSES = {
    "correct": {"17": "12 + 5 = 17, so the answer is \\boxed{17}.",
                "\\frac{5}{6}": "3/6 + 2/6 = \\boxed{\\frac{5}{6}}"},
    "wrong": {"17": "I get \\boxed{18}.", "\\frac{5}{6}": "Final answer: 2/5"},
    "no_answer": {"17": "Let me think about 3 times 4 first", "\\frac{5}{6}": "Halves and thirds."},
}


@pytest.fixture(scope="module")
def verl_reward_fn():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = compose("pope", ["reward.custom_reward_function.name=compute_score"])
    fn = get_custom_reward_fn(cfg)
    assert fn is not None
    return fn


@pytest.mark.parametrize("kind", sorted(RESPONSES))
@pytest.mark.parametrize("row", range(len(ROWS)))
def test_reward_through_verl_loader(verl_reward_fn, kind, row):
    r = ROWS[row]
    gold = r["reward_model"]["ground_truth"]
    out = verl_reward_fn(data_source=r["data_source"], solution_str=RESPONSES[kind][gold],
                         ground_truth=gold, extra_info=r["extra_info"])
    assert out["status"] == kind
    assert out["score"] == (1.0 if kind == "correct" else 0.0)
    assert out["acc"] == out["score"]
    assert out["guided"] is r["extra_info"]["guided"]
    assert (out["pred"] == "") is (kind == "no_answer")


def test_batch_and_async_variants_agree_with_per_sample():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    rows = [(r, kind) for r in ROWS for kind in sorted(RESPONSES)]
    golds = [r["reward_model"]["ground_truth"] for r, _ in rows]
    sols = [RESPONSES[kind][g] for (_, kind), g in zip(rows, golds)]
    infos = [r["extra_info"] for r, _ in rows]
    sources = [r["data_source"] for r, _ in rows]

    single = get_custom_reward_fn(compose("pope", ["reward.custom_reward_function.name=compute_score"]))
    batch = get_custom_reward_fn(compose("pope", ["reward.custom_reward_function.name=compute_score_batch"]))
    coalesced = get_custom_reward_fn(compose("pope"))  # the configured default: async

    expected = [single(data_source=d, solution_str=s, ground_truth=g, extra_info=e)
                for d, s, g, e in zip(sources, sols, golds, infos)]
    assert [e["status"] for e in expected] == [kind for _, kind in rows]
    assert batch(data_sources=sources, solution_strs=sols, ground_truths=golds,
                 extra_infos=infos) == expected

    async def all_at_once():
        return await asyncio.gather(*[
            coalesced(data_source=d, solution_str=s, ground_truth=g, extra_info=e)
            for d, s, g, e in zip(sources, sols, golds, infos)])

    assert asyncio.run(all_at_once()) == expected


def test_async_calls_are_graded_in_one_batch(monkeypatch):
    import pope_train.reward as reward

    calls = []
    real = reward.grade_many

    def counting(preds, golds, **kw):
        calls.append(len(preds))
        return real(preds, golds, **kw)

    monkeypatch.setattr(reward, "grade_many", counting)

    async def many():
        return await asyncio.gather(*[
            reward.compute_score_async("s", f"\\boxed{{{i}}}", str(i % 3), {"guided": i % 2 == 0})
            for i in range(24)])

    out = asyncio.run(many())
    assert calls == [24]
    assert [o["score"] for o in out] == [1.0 if i % 3 == i else 0.0 for i in range(24)]
    assert [o["guided"] for o in out] == [i % 2 == 0 for i in range(24)]


def test_batch_rejects_mismatched_lengths():
    from pope_train.reward import compute_score_batch

    with pytest.raises(ValueError, match="2 responses, 1 ground truths"):
        compute_score_batch(["a", "b"], ["x", "y"], ["1"])
