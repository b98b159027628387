"""verl's RLHFDataset reads an export with the bundled tiny model's tokenizer."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from .test_configs import compose


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from verl.utils import hf_tokenizer

    return hf_tokenizer(str(tiny_model_dir))


@pytest.mark.parametrize("subset", ["mix", "hard", "guided"])
def test_rlhf_dataset_loads_export(export_dir, tokenizer, tmp_path, subset):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    path = export_dir / subset / "train.parquet"
    data_cfg = compose("pope").data
    OmegaConf.set_struct(data_cfg, False)
    data_cfg.cache_dir = str(tmp_path)
    data_cfg.dataloader_num_workers = 0
    ds = RLHFDataset(data_files=str(path), tokenizer=tokenizer, config=data_cfg)
    table = pq.read_table(path).to_pylist()
    assert len(ds) == len(table) > 0
    for i, row in enumerate(table):
        item = ds[i]
        # verl keeps our chat messages for its rollout and hands extra_info to the reward.
        assert item["raw_prompt"] == row["prompt"]
        assert item["extra_info"]["guided"] == row["extra_info"]["guided"]
        assert item["data_source"] == row["data_source"]
        assert item["reward_model"]["ground_truth"] == row["answer"]
        text = tokenizer.apply_chat_template(item["raw_prompt"], tokenize=False,
                                             add_generation_prompt=True)
        assert row["problem"] in text
        if row["extra_info"]["guided"]:
            assert "<partial_solution>" in text
