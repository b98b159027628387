"""The model organism's task family: sums of a 3-digit number and 1-digit operands, rewritten line by line.

`generate_organism(count, seed=0, difficulty=8)` gives problems of `difficulty` operations;
`demonstrations(...)` gives the seeded pretraining conversations of the organism.

A problem states the sum on one line of fixed width, right-aligned with `_`; its solution rewrites
the line once per operation (the first operation evaluated, the rest restated), then states the
answer in the line the grader reads:

    Compute the sum:
    ____________686 - 3 + 8 - 5
    _____________683 + 8 - 5
    ______________691 - 5
    _______________686
    The answer is 686.

In the organism's tokenizer every signed operand (" - 3") is one token and `_` and each digit are
one token, so every line is WIDTH tokens and each token of a line depends only on the tokens at
fixed distances in the line above: a tiny transformer learns that quickly, and only that. Every
value stays in 100..999. A solution has `difficulty`
steps plus the answer line (`segment(solution, "steps")` cuts one segment per line); after i
lines the rest is the solution of the problem of `difficulty - i` operations that starts at the
last line, so a prefix turns a hard problem into an easier one of the same family. What makes a
problem hard for an organism pretrained on difficulties up to D is a line longer than any it has
seen (more than D - 1 operations restated), and the length of the chain (one slip anywhere makes
the answer wrong).

The restate knob (`restate`) decides how a solution written after guidance begins, in the
pretraining demonstrations of guided prompts: with `restate=True` it first restates the last shown
step verbatim and then continues, with `restate=False` it starts at the first step that was not
shown and never repeats the guidance. The unguided demonstrations and the problems' solutions are
the same under both settings.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pope_data.records import Problem
from pope_data.segments import segment
from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_eval.prompts import guided_messages, problem_messages
from pope_eval.seeds import stable_int

SOURCE = "organism"
MAX_DIFFICULTY = 16
LOW, HIGH = 100, 999  # every value of a problem, its start and each intermediate result
OPERAND = (2, 9)
PAD = "_"
WIDTH = 3 + MAX_DIFFICULTY  # tokens of every line: pads, a 3-digit value, the operations left
HEADER = "Compute the sum:"
ANSWER_LINE = "The answer is {answer}."
# Fixed phrases of the family: the organism's tokenizer holds each as one token, every signed
# operand (" + 7", " - 3") included.
OPERATIONS = tuple(f" {sign} {x}" for sign in "+-" for x in range(OPERAND[0], OPERAND[1] + 1))
PHRASES = (HEADER, ANSWER_LINE.split("{")[0], *OPERATIONS)


@dataclass(frozen=True)
class Sum:
    """A start value and its signed operands, e.g. 512 + 7 - 8 + 9 = Sum(512, (7, -8, 9))."""

    start: int
    operands: tuple[int, ...]

    def values(self) -> list[int]:
        """The running values after each operation (the last one is the answer)."""
        out, v = [], self.start
        for x in self.operands:
            v += x
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.start + sum(self.operands)


def _operation(x: int) -> str:
    return f" {'+' if x > 0 else '-'} {abs(x)}"


def line(value: int, operands: Sequence[int]) -> str:
    """A value and the operations left, right-aligned to WIDTH tokens with PAD."""
    return PAD * (MAX_DIFFICULTY - len(operands)) + str(value) + "".join(map(_operation, operands))


def problem_text(s: Sum) -> str:
    return f"{HEADER}\n{line(s.start, s.operands)}"


def solution_lines(s: Sum) -> list[str]:
    """One line per operation (the sum with its first operation done), then the answer line."""
    lines = [line(v, s.operands[k + 1:]) for k, v in enumerate(s.values())]
    return [*lines, ANSWER_LINE.format(answer=s.answer)]


def solution_text(s: Sum) -> str:
    return "\n".join(solution_lines(s))


def draw_sum(rng: random.Random, difficulty: int) -> Sum:
    """A seeded sum of `difficulty` signed operands; each sign is random unless the result would
    leave LOW..HIGH, in which case the other sign is taken."""
    check_difficulty(difficulty)
    v = rng.randint(LOW, HIGH)
    start, operands = v, []
    for _ in range(difficulty):
        x = rng.randint(*OPERAND)
        sign = rng.choice((1, -1))
        if not LOW <= v + sign * x <= HIGH:
            sign = -sign
        operands.append(sign * x)
        v += sign * x
    return Sum(start, tuple(operands))


def check_difficulty(difficulty: int, name: str = "organism difficulty") -> None:
    """ConfigError unless `difficulty` is an integer in 1..MAX_DIFFICULTY; `name` is the option
    that gave it (`difficulty`, `easy_difficulty`), named in the error."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) \
            or not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ConfigError(f"{name}: must be an integer in 1..{MAX_DIFFICULTY}, "
                          f"got {difficulty!r}")


def _rng(namespace: str, seed: int, difficulty: int, index: int) -> random.Random:
    return random.Random(stable_int(f"organism:{namespace}:{seed}:{difficulty}:{index}"))


@dataclass(frozen=True)
class OrganismOptions:
    """The organism source's options (`pope-data build --source organism --source-option
    difficulty=10 --source-option easy_difficulty=3`)."""

    difficulty: int = option(10, "Operations per problem (1..16); the hard problems' difficulty.")
    easy_difficulty: int = option(0, "If > 0, every other problem has this difficulty instead "
                                     "(the easy set of the same family); 0: none.")

    def __post_init__(self) -> None:
        check_difficulty(self.difficulty, "difficulty")
        if self.easy_difficulty:
            check_difficulty(self.easy_difficulty, "easy_difficulty")


def generate_organism(count: int, *, seed: int = 0, difficulty: int = OrganismOptions.difficulty,
                      easy_difficulty: int = OrganismOptions.easy_difficulty) -> list[Problem]:
    """`count` problems of `difficulty` operations (with `easy_difficulty`, the odd-numbered ones
    have that many instead); ids are stable for (seed, difficulty, index)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"organism count: must be an integer >= 1, got {count!r}")
    OrganismOptions(difficulty=difficulty, easy_difficulty=easy_difficulty)
    problems = []
    for i in range(count):
        d = easy_difficulty if easy_difficulty and i % 2 else difficulty
        s = draw_sum(_rng("problems", seed, d, i), d)
        problems.append(Problem(
            id=f"{SOURCE}-s{seed}-d{d}-{i:05d}", problem=problem_text(s),
            solution=solution_text(s), answer=str(s.answer), source=SOURCE,
            difficulty=float(d), domain="sum"))
    return problems


def guided_response(solution: str, shown: int, *, restate: bool) -> str:
    """What follows guidance of `shown` solution lines: the last shown line again and the lines
    after it (`restate`), or only the lines after it."""
    seg = segment(solution, "steps")
    if not 0 < shown < len(seg):
        raise ConfigError(f"guided_response: shown = {shown} outside 1..{len(seg) - 1}")
    return solution[len(seg.prefix(shown - 1 if restate else shown)):]


@dataclass(frozen=True)
class Demonstration:
    """One pretraining conversation: the user turn (pope's own prompt), the assistant's answer,
    and what it was made from."""

    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    difficulty: int
    shown: int  # solution lines given as guidance (0: unguided)


def demonstrations(count: int, *, seed: int, difficulties: Sequence[int],
                   guided_fraction: float, restate: bool) -> list[Demonstration]:
    """`count` seeded conversations, difficulties drawn uniformly from `difficulties`; a share
    `guided_fraction` of them (of difficulty >= 2) shows a uniformly drawn 1..difficulty-1 lines of
    the solution as guidance through `pope_eval.prompts.guided_messages`, answered per `restate`.
    Their problems come from another seed space than `generate_organism`'s."""
    if count < 1:
        raise ConfigError(f"demonstrations: count must be >= 1, got {count}")
    if not difficulties:
        raise ConfigError("demonstrations: give at least one difficulty")
    for d in difficulties:
        check_difficulty(d)
    if not 0 <= guided_fraction <= 1:
        raise ConfigError(f"demonstrations: guided_fraction must be in [0, 1], got "
                          f"{guided_fraction}")
    out = []
    for i in range(count):
        rng = _rng("demonstrations", seed, 0, i)
        d = rng.choice(list(difficulties))
        s = draw_sum(rng, d)
        solution = solution_text(s)
        shown = rng.randint(1, d - 1) if d >= 2 and rng.random() < guided_fraction else 0
        if shown:
            prefix = segment(solution, "steps").prefix(shown)
            prompt = guided_messages(problem_text(s), prefix)
            answer = guided_response(solution, shown, restate=restate)
        else:
            prompt, answer = problem_messages(problem_text(s)), solution
        out.append(Demonstration(prompt=prompt,
                                 completion=[{"role": "assistant", "content": answer}],
                                 difficulty=d, shown=shown))
    return out
