"""The one place where problems, instructions and chat templates become model input.

`problem_messages(problem)` / `guided_messages(problem, prefix)` build chat messages; `render`
applies a tokenizer's chat template. pope_data's guided datasets use the same builders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pope_eval.errors import ConfigError

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# POPE's guidance: the oracle prefix is privileged context, not a target. The model is told to
# build on it and finish the solution itself (docs/design.md, "Search").
GUIDED_INSTRUCTION = (
    "The text between <partial_solution> tags is the beginning of a correct solution to this "
    "problem. Study it, then continue the solution from where it stops: build on its steps "
    "instead of starting over, reason step by step, and put your final answer within \\boxed{}."
)

GUIDED_TEMPLATE = "{problem}\n\n<partial_solution>\n{prefix}\n</partial_solution>\n\n{instruction}"
UNGUIDED_TEMPLATE = "{problem}\n\n{instruction}"


def problem_text(problem: str, instruction: str = MATH_INSTRUCTION) -> str:
    """User turn for an unguided problem."""
    if not problem or not problem.strip():
        raise ConfigError("problem_text: empty problem")
    return UNGUIDED_TEMPLATE.format(problem=problem.strip(), instruction=instruction)


def guided_text(problem: str, prefix: str, instruction: str = GUIDED_INSTRUCTION) -> str:
    """User turn for a guided problem: problem + oracle prefix (verbatim) + instruction."""
    if not problem or not problem.strip():
        raise ConfigError("guided_text: empty problem")
    if not prefix:
        # A zero-length prefix is the unguided prompt; callers ask for that explicitly.
        return problem_text(problem)
    return GUIDED_TEMPLATE.format(problem=problem.strip(), prefix=prefix, instruction=instruction)


def problem_messages(problem: str, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages for an unguided problem."""
    return _with_system(system, problem_text(problem))


def guided_messages(problem: str, prefix: str, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages for a guided problem (prefix may be '' for the unguided case)."""
    return _with_system(system, guided_text(problem, prefix))


def _with_system(system: str | None, user: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": user})
    return msgs


def render(messages: Sequence[dict[str, str]], tokenizer: Any) -> str:
    """Apply the tokenizer's chat template (with the generation prompt) to messages.

    Tokenizers without a chat template get a plain 'role: content' transcript, so base models
    still receive the instruction.
    """
    if not messages:
        raise ConfigError("render: empty message list")
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nassistant:"


def check_prompt_lengths(conversations: Sequence[Sequence[dict[str, str]]], tokenizer: Any,
                         max_tokens: int, context_length: int) -> list[tuple[int, int]]:
    """(index, prompt tokens) of the conversations whose rendered prompt plus `max_tokens` does
    not fit `context_length`. Callers quarantine those rows before generating anything."""
    over = []
    for i, messages in enumerate(conversations):
        tokens = len(tokenizer(render(messages, tokenizer), add_special_tokens=False)["input_ids"])
        if tokens + max_tokens > context_length:
            over.append((i, tokens))
    return over
