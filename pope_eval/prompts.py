"""The one place where problems, instructions and chat templates become model input.

`problem_messages(problem)` / `guided_messages(problem, prefix, guidance=...)` build chat
messages (guidance templates: `GUIDANCE`, `load_guidance`); `render` applies a chat template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError
from pope_eval.registry import Registry

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


@dataclass(frozen=True)
class Guidance:
    """How a guided prompt is worded: a template over {problem}, {prefix} and {instruction}.

    Its `sha256` (of template and instruction) goes into provenance, fingerprints and the card,
    so rows built with different wordings are never mistaken for one another.
    """

    name: str
    template: str
    instruction: str = ""
    description: str = ""
    origin: str = field(default="", compare=False)  # the file it was read from, for messages

    def __post_init__(self) -> None:
        where = self.origin or self.name
        for slot in ("{problem}", "{prefix}"):
            if slot not in self.template:
                raise ConfigError(f"--guidance {where}: the template has no {slot} slot")
        try:
            self.template.format(problem="", prefix="", instruction="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"--guidance {where}: the template has an unknown slot or "
                              f"stray brace ({exc}); use {{problem}}, {{prefix}}, {{instruction}} "
                              "and double other braces") from None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.template}\0{self.instruction}".encode()).hexdigest()

    def text(self, problem: str, prefix: str) -> str:
        return self.template.format(problem=problem, prefix=prefix, instruction=self.instruction)

    def record(self) -> dict[str, str]:
        """What run configs, provenance and cards keep of it."""
        return {"name": self.name, "sha256": self.sha256, "template": self.template,
                "instruction": self.instruction}


GUIDANCE: Registry[Guidance] = Registry("guidance template", option="--guidance")
GUIDANCE.add("pope", Guidance(
    "pope", GUIDED_TEMPLATE, GUIDED_INSTRUCTION,
    "POPE's guidance: the prefix as privileged context, built on rather than restarted."))
# The paper's ablation of overlap: the model may not revisit what the prefix already did.
GUIDANCE.add("no-revisit", Guidance(
    "no-revisit", GUIDED_TEMPLATE,
    "The text between <partial_solution> tags is the beginning of a correct solution to this "
    "problem. Continue the solution from where it stops without repeating, restating or "
    "re-checking any of its steps, reason step by step from there, and put your final answer "
    "within \\boxed{}.",
    "Overlap ablation: continue without revisiting or restating the given steps."))
GUIDANCE.add("continue", Guidance(
    "continue", "{problem}\n\n{instruction}\n\n{prefix}",
    "Continue the solution from where it stops, and put your final answer within \\boxed{}.",
    "Plain continuation: the partial solution follows the instruction, untagged."))
DEFAULT_GUIDANCE = "pope"


def load_guidance(spec: str | Guidance | None) -> Guidance:
    """A registered template by name, or a file: .json / .yaml with `template` (and optionally
    `instruction`, `description`), or any other text file holding the template itself. A file
    template is named by its file name, so the same file typed as another path is the same
    template (its sha256 tells two files of one name apart)."""
    if isinstance(spec, Guidance):
        return spec
    if spec is None or spec == "":
        return GUIDANCE[DEFAULT_GUIDANCE]
    if spec in GUIDANCE:
        return GUIDANCE[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--guidance: {spec!r} is neither a template name "
                          f"({', '.join(GUIDANCE)}) nor a file")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--guidance {path}: cannot read it ({exc})") from None
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(raw)  # JSON is YAML
        except yaml.YAMLError as exc:
            raise ConfigError(f"--guidance {path}: not valid {path.suffix[1:]}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("template"), str):
            raise ConfigError(f"--guidance {path}: expected a mapping with a 'template' text")
        unknown = set(data) - {"template", "instruction", "description", "name"}
        if unknown:
            raise ConfigError(f"--guidance {path}: unknown field(s) {', '.join(sorted(unknown))}")
        return Guidance(name=path.name, template=data["template"],
                        instruction=str(data.get("instruction", "")),
                        description=str(data.get("description", "")), origin=str(path))
    return Guidance(name=path.name, template=raw.strip("\n"), origin=str(path))


def problem_text(problem: str, instruction: str = MATH_INSTRUCTION) -> str:
    """User turn for an unguided problem."""
    if not problem or not problem.strip():
        raise ConfigError("problem_text: empty problem")
    return UNGUIDED_TEMPLATE.format(problem=problem.strip(), instruction=instruction)


def guided_text(problem: str, prefix: str, guidance: Guidance | str | None = None) -> str:
    """User turn for a guided problem: problem + oracle prefix (verbatim) + instruction, worded
    by `guidance` (default: POPE's)."""
    if not problem or not problem.strip():
        raise ConfigError("guided_text: empty problem")
    if not prefix:
        # A zero-length prefix is the unguided prompt; callers ask for that explicitly.
        return problem_text(problem)
    return load_guidance(guidance).text(problem.strip(), prefix)


def problem_messages(problem: str, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages for an unguided problem."""
    return _with_system(system, problem_text(problem))


def guided_messages(problem: str, prefix: str, system: str | None = None,
                    guidance: Guidance | str | None = None) -> list[dict[str, str]]:
    """Chat messages for a guided problem (prefix may be '' for the unguided case)."""
    return _with_system(system, guided_text(problem, prefix, guidance))


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
