"""Guidance templates as data: built-ins by name, files by path, each with a stable hash."""

import json

import pytest

from pope_eval.errors import ConfigError
from pope_eval.prompts import (
    GUIDANCE,
    GUIDED_INSTRUCTION,
    Guidance,
    guided_messages,
    guided_text,
    load_guidance,
    problem_messages,
)

PREFIX = "Step 1: 3 * 4 = 12."


def test_the_built_ins_word_the_same_prefix_differently():
    texts = {name: guided_text("Find x.", PREFIX, name) for name in GUIDANCE}
    assert set(texts) >= {"pope", "no-revisit", "continue"}
    assert len(set(texts.values())) == len(texts)
    for text in texts.values():
        assert "Find x." in text and PREFIX in text
    assert guided_text("Find x.", PREFIX) == texts["pope"]  # the default is POPE's
    assert GUIDED_INSTRUCTION in texts["pope"]
    assert "without repeating" in texts["no-revisit"]
    # The plain continuation ends with the prefix: the model writes on from its last step.
    assert texts["continue"].endswith(PREFIX)


def test_hashes_are_stable_and_distinct():
    hashes = {GUIDANCE[n].sha256 for n in GUIDANCE}
    assert len(hashes) == len(GUIDANCE)
    again = Guidance("x", GUIDANCE["pope"].template, GUIDANCE["pope"].instruction)
    assert again.sha256 == GUIDANCE["pope"].sha256  # the wording decides, not the name


def test_templates_load_from_files(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("{problem}\nHint: {prefix}\nGo on.\n", encoding="utf-8")
    assert load_guidance(str(txt)).text("P", "Q") == "P\nHint: Q\nGo on."
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"template": "{problem} | {prefix} | {instruction}",
                              "instruction": "finish it"}), encoding="utf-8")
    assert guided_messages("P", "Q", guidance=str(js))[-1]["content"] == "P | Q | finish it"
    assert guided_messages("P", "", guidance=str(js)) == problem_messages("P")


@pytest.mark.parametrize("content,match", [
    ("{problem} only", r"no \{prefix\} slot"),
    ("{problem} {prefix} {answer}", "unknown slot"),
])
def test_bad_templates_name_the_file_and_the_slot(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as err:
        load_guidance(str(path))
    assert str(path) in str(err.value)


def test_unknown_names_and_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="neither a template name"):
        load_guidance("nosuch")
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruction: only\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'template' text"):
        load_guidance(str(bad))
    with pytest.raises(ValueError, match="already registered"):
        GUIDANCE.add("pope", GUIDANCE["pope"])
