"""The paper's trainer, Pipeline-RL, reads a published POPE set as it is and splits it as POPE defines.

`load_pope` restates the logic of `pipelinerl/domains/math/load_datasets.py` for the POPE sets:
rows are split by their `level`, the task is `prompt[0].content` and the answer is
`"\\boxed{" + reward_model.ground_truth + "}"` (a string concatenation: ground_truth must be a
str). It reads the `all` config of a dry-run Hub folder with `datasets`, as the trainer reads
the Hub.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest

from pope_data.card import repo_path
from pope_data.export import EASY, GUIDED, UNGUIDED

# Pipeline-RL's dataset names for the POPE sets, and which rows each takes by `level`.
SELECT = {
    "pope_mix": lambda level: True,
    "pope_hard_with_guide": lambda level: "easy" not in level,
    "pope_hard_no_guide": lambda level: "easy" not in level and "with-guidance" not in level,
}


def load_pope(name: str, rows: datasets.Dataset) -> list[dict[str, Any]]:
    """Samples as Pipeline-RL builds them: dataset name, task, answer, id."""
    samples = []
    for item in rows:
        if not SELECT[name](item["level"]):
            continue
        samples.append({
            "dataset": "pope_mix_" + item["level"].replace("-", "_") if name == "pope_mix"
            else name,
            "task": item["prompt"][0]["content"],
            "answer": "\\boxed{" + item["reward_model"]["ground_truth"] + "}",
            "id": len(samples),
        })
    return samples


@pytest.fixture(scope="module")
def published_all(published, tmp_path_factory) -> datasets.DatasetDict:
    return datasets.load_dataset(str(published), "all",
                                 cache_dir=str(tmp_path_factory.mktemp("ds-cache")))


def _export(pope_build, config: str, split: str) -> list[dict[str, Any]]:
    return pq.read_table(pope_build / "export" / config / f"{split}.parquet").to_pylist()


def _keys(rows: list[dict[str, Any]]) -> Counter:
    """A row as (task, answer): what the trainer keeps of it."""
    return Counter((r["prompt"][0]["content"], "\\boxed{" + r["answer"] + "}") for r in rows)


def _sample_keys(samples: list[dict[str, Any]]) -> Counter:
    return Counter((s["task"], s["answer"]) for s in samples)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_the_loaders_split_the_all_config_exactly_as_pope_defines(pope_build, published_all,
                                                                  split):
    rows = published_all[split]
    hard, guided, mix, easy = (_export(pope_build, c, split)
                               for c in ("hard", "guided", "mix", "easy"))
    assert hard and guided and easy, "the build must have every kind of row in this split"
    with_guide = load_pope("pope_hard_with_guide", rows)
    no_guide = load_pope("pope_hard_no_guide", rows)
    everything = load_pope("pope_mix", rows)
    # hard with guide = the 1:1 mix = the unguided hard rows and their guided twins.
    assert _sample_keys(with_guide) == _keys(mix) == _keys(hard) + _keys(guided)
    # hard without guide = the hard set; all = the mix and the easy rows.
    assert _sample_keys(no_guide) == _keys(hard)
    assert _sample_keys(everything) == _keys(mix) + _keys(easy)
    names = Counter(s["dataset"] for s in everything)
    assert names == {"pope_mix_" + level.replace("-", "_"): n for level, n in
                     ((UNGUIDED, len(hard)), (GUIDED, len(guided)), (EASY, len(easy)))}


def test_every_task_is_the_user_turn_and_every_answer_a_string(published_all):
    for split, rows in published_all.items():
        for item in rows:
            # prompt[0] is the user turn (no system message first) holding problem + guidance.
            assert item["prompt"] == [{"role": "user", "content": item["problem"]}], split
            assert isinstance(item["reward_model"]["ground_truth"], str)
            assert item["reward_model"]["ground_truth"] == item["answer"]
            assert ("<partial_solution>" in item["problem"]) == (item["level"] == GUIDED)
            assert item["extra_info"]["guided"] == (item["level"] == GUIDED)


def test_the_split_configs_carry_level_beside_extra_info(published):
    for config, levels in (("hard", {UNGUIDED}), ("guided", {GUIDED}),
                           ("mix", {UNGUIDED, GUIDED})):
        table = pq.read_table(published / repo_path(config, "train"))
        assert set(table.column("level").to_pylist()) == levels, config
        assert {"problem_id", "guided", "prefix_fraction"} <= {
            f.name for f in table.schema.field("extra_info").type}
