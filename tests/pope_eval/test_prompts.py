"""Prompt builders: unguided and guided user turns, chat rendering."""

import pytest

from pope_eval.errors import ConfigError
from pope_eval.prompts import (
    GUIDED_INSTRUCTION,
    MATH_INSTRUCTION,
    guided_messages,
    problem_messages,
    render,
)


def test_problem_messages_hold_problem_and_boxed_instruction():
    msgs = problem_messages("  What is 2+2?  ")
    assert msgs == [{"role": "user", "content": f"What is 2+2?\n\n{MATH_INSTRUCTION}"}]


def test_guided_messages_contain_the_prefix_verbatim_between_problem_and_instruction():
    prefix = "Step 1: $x = 3$.\n\nStep 2:  keep  spacing "
    content = guided_messages("Find x.", prefix, system="sys")[1]["content"]
    assert content.index("Find x.") < content.index(prefix) < content.index(GUIDED_INSTRUCTION)
    assert guided_messages("Find x.", prefix, system="sys")[0] == {"role": "system", "content": "sys"}


def test_empty_prefix_is_the_unguided_prompt():
    assert guided_messages("Find x.", "") == problem_messages("Find x.")


def test_empty_problem_is_an_error():
    with pytest.raises(ConfigError, match="empty problem"):
        problem_messages("   ")


class _NoTemplate:
    chat_template = None


def test_render_without_chat_template_keeps_roles_and_asks_for_the_answer():
    text = render([{"role": "user", "content": "hi"}], _NoTemplate())
    assert text == "user: hi\n\nassistant:"
    with pytest.raises(ConfigError):
        render([], _NoTemplate())
