"""OpenRLHF's PromptDataset reads an export with the flags the dataset card gives, with a real tokenizer.

`prompt_and_label` restates what OpenRLHF's `preprocess_data` does with a row: `data[input_key]`
(a str becomes one user message) through `tokenizer.apply_chat_template(chat, tokenize=False,
add_generation_prompt=True)` with `--apply_chat_template`, else the raw text; the label is
`data[label_key]`, the source `data.get("datasource", "default")`. The flags come from the card.
"""

from __future__ import annotations

import re
from typing import Any

import datasets
import pytest

from pope_data.card import render_card
from pope_eval.prompts import render


def prompt_and_label(data: dict[str, Any], tokenizer: Any, *, input_key: str, label_key: str,
                     apply_chat_template: bool) -> tuple[str, Any, str]:
    """(prompt, label, datasource) of one row as OpenRLHF's PromptDataset builds them."""
    chat = data[input_key]
    if apply_chat_template:
        if isinstance(chat, str):
            chat = [{"role": "user", "content": chat}]
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    else:
        prompt = chat
    return prompt, data[label_key], data.get("datasource", "default")


def card_flag_sets(card: str) -> list[dict[str, Any]]:
    """The OpenRLHF command lines of the card, as keyword arguments of `prompt_and_label`."""
    sets = []
    for line in card.splitlines():
        if not line.startswith("--prompt_data "):
            continue
        flags = dict(re.findall(r"--(input_key|label_key) (\S+)", line))
        unknown = set(re.findall(r"--(\w+)", line)) - {"prompt_data", "input_key", "label_key",
                                                     "apply_chat_template"}
        assert not unknown, f"card line {line!r}: flags this test does not follow: {unknown}"
        sets.append({**flags, "apply_chat_template": "--apply_chat_template" in line})
    return sets


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def mix_rows(pope_build, tmp_path_factory) -> datasets.Dataset:
    """The card's --prompt_data file, loaded as OpenRLHF loads a local parquet file."""
    return datasets.load_dataset("parquet",
                                 data_files=str(pope_build / "export" / "mix" / "train.parquet"),
                                 split="train",
                                 cache_dir=str(tmp_path_factory.mktemp("ds-cache")))


def test_the_card_gives_exactly_the_two_flag_sets_followed_here(pope_build):
    card = render_card(pope_build, repo_id="org/pope-compat")
    assert card_flag_sets(card) == [
        {"input_key": "messages", "label_key": "answer", "apply_chat_template": True},
        {"input_key": "problem", "label_key": "answer", "apply_chat_template": False}]
    assert "**OpenRLHF** (documented, not run)" in card


def test_chat_template_flags_give_the_prompt_the_search_sent_the_model(pope_build, mix_rows,
                                                                       tokenizer):
    flags = card_flag_sets(render_card(pope_build))[0]
    assert len(mix_rows) > 0
    for row in mix_rows:
        prompt, label, source = prompt_and_label(row, tokenizer, **flags)
        # The same text pope's engines render from the row's messages (render applies the
        # tokenizer's template), holding the whole user turn and, for guided rows, the prefix.
        assert prompt == render(row["prompt"], tokenizer)
        assert row["problem"] in prompt and prompt.rstrip().endswith("assistant")
        assert ("<partial_solution>" in prompt) == row["extra_info"]["guided"]
        assert isinstance(label, str) and label == row["reward_model"]["ground_truth"]
        # Rows name their source in `data_source`, which OpenRLHF does not read.
        assert source == "default"


def test_plain_flags_give_the_user_turn_as_text(pope_build, mix_rows, tokenizer):
    flags = card_flag_sets(render_card(pope_build))[1]
    for row in mix_rows:
        prompt, label, _ = prompt_and_label(row, tokenizer, **flags)
        assert isinstance(prompt, str) and prompt == row["prompt"][0]["content"]
        assert prompt.endswith("put your final answer within \\boxed{}.")
        assert label == row["answer"]
