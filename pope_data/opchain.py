"""The second organism task family: fixed-length chains of common and rare operations, one per line.

`generate_opchain(count, seed=0, difficulty=6)` gives problems with `difficulty` rare operations at
random positions; `demonstrations(...)` gives the seeded pretraining conversations of its organism.

Every problem has the same number of operations (`LENGTH`), so every line of every problem, of
every solution and of the pretraining data has the same width: what makes a problem hard is not a
line longer than any seen, but how many of its operations are rare ones (` * 2`, and ` / 2` with
the remainder dropped), which the organism saw seldom in pretraining and so
applies less reliably than the common ` + d` / ` - d`:

    Run the operations:
    _472 + 3 * 2 - 8 + 5 ...
    __475 * 2 - 8 + 5 ...
    ___950 - 8 + 5 ...

A prefix of i lines leaves the rare operations at positions > i to the completion, so the skill the
unguided problem needs is practised inside guided completions too; with rare operations at random
positions the pass rate rises by a step at each rare operation shown, and i* differs per problem.

Guided demonstrations are worded with several of pope's guidance templates (`pope`, `no-revisit`,
`continue`). With `restate`, an answer to `pope` or `continue` guidance first revisits the last
`REVISIT` shown lines (the first is copied, the next recomputed from it), as reasoning models go
back over given steps; an answer to `no-revisit` starts at the first line not shown, as told.
`restate=False` (the twin organism) never revisits under any wording.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pope_data.records import Problem
from pope_data.segments import segment
from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_eval.prompts import GUIDANCE, guided_messages, problem_messages
from pope_eval.seeds import stable_int

SOURCE = "opchain"
LENGTH = 12  # operations per problem, everywhere
WIDTH = LENGTH + 4  # tokens per line: at least one pad, three digits, the operations left
LOW, HIGH = 100, 999
OPERAND = (2, 9)
PAD = "_"
HEADER = "Run the operations:"
ANSWER_LINE = "The answer is {answer}."
DOUBLE, HALVE = " * 2", " / 2"
COMMON = tuple(f" {sign} {x}" for sign in "+-" for x in range(OPERAND[0], OPERAND[1] + 1))
RARE = (DOUBLE, HALVE)
PHRASES = (HEADER, ANSWER_LINE.split("{")[0], *COMMON, *RARE)
WORDINGS = ("pope", "no-revisit", "continue")  # guidance templates of the demonstrations
REVISIT = 2  # shown lines an answer revisits (with restate)


@dataclass(frozen=True)
class Op:
    """One operation: a common signed operand (e.g. -3) or a rare one ('*2', '/2')."""

    kind: str  # "add", "double", "halve"
    x: int = 0

    def apply(self, v: int) -> int:
        if self.kind == "double":
            return 2 * v
        if self.kind == "halve":
            return v // 2
        return v + self.x

    @property
    def token(self) -> str:
        if self.kind == "double":
            return DOUBLE
        if self.kind == "halve":
            return HALVE
        return f" {'+' if self.x > 0 else '-'} {abs(self.x)}"

    @property
    def rare(self) -> bool:
        return self.kind != "add"


@dataclass(frozen=True)
class Chain:
    start: int
    ops: tuple[Op, ...]

    def values(self) -> list[int]:
        out, v = [], self.start
        for op in self.ops:
            v = op.apply(v)
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    @property
    def rare_positions(self) -> list[int]:
        """1-based lines whose operation is rare (the line that applies it)."""
        return [k + 1 for k, op in enumerate(self.ops) if op.rare]


def line(value: int, ops: Sequence[Op]) -> str:
    """A value and the operations left, right-aligned to WIDTH tokens with PAD. Every line, the
    problem's included, starts with at least one PAD: a line is read from the one above it, and
    the problem line looks like every other (without its pad, the organism never learned to
    compute the first solution line from it: bench/RESULTS.md, part 1b)."""
    return PAD * (WIDTH - 3 - len(ops)) + str(value) + "".join(op.token for op in ops)


def problem_text(c: Chain) -> str:
    return f"{HEADER}\n{line(c.start, c.ops)}"


def solution_lines(c: Chain) -> list[str]:
    lines = [line(v, c.ops[k + 1:]) for k, v in enumerate(c.values())]
    return [*lines, ANSWER_LINE.format(answer=c.answer)]


def solution_text(c: Chain) -> str:
    return "\n".join(solution_lines(c))


def check_difficulty(difficulty: int, name: str = "difficulty") -> None:
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) \
            or not 0 <= difficulty <= LENGTH:
        raise ConfigError(f"{name}: must be an integer in 0..{LENGTH} (rare operations of the "
                          f"{LENGTH}), got {difficulty!r}")


def draw_chain(rng: random.Random, rare: int) -> Chain:
    """A seeded chain of LENGTH operations, `rare` of them rare at uniformly drawn positions:
    ` * 2` or ` / 2`, drawn among those that keep the value in LOW..HIGH; a common operand's sign is random unless the value would
    leave LOW..HIGH."""
    check_difficulty(rare)
    where = set(rng.sample(range(LENGTH), rare))
    v = rng.randint(LOW, HIGH)
    start, ops = v, []
    for k in range(LENGTH):
        if k in where:
            kinds = [k for k, ok in (("double", 2 * v <= HIGH), ("halve", v // 2 >= LOW)) if ok]
            op = Op(rng.choice(kinds))
        else:
            x = rng.randint(*OPERAND)
            sign = rng.choice((1, -1))
            if not LOW <= v + sign * x <= HIGH:
                sign = -sign
            op = Op("add", sign * x)
        ops.append(op)
        v = op.apply(v)
    return Chain(start, tuple(ops))


def _rng(namespace: str, seed: int, difficulty: int, index: int) -> random.Random:
    return random.Random(stable_int(f"opchain:{namespace}:{seed}:{difficulty}:{index}"))


@dataclass(frozen=True)
class OpchainOptions:
    """The opchain source's options (`pope-data build --source opchain --source-option
    difficulty=6 --source-option easy_difficulty=1`)."""

    difficulty: int = option(6, f"Rare operations per problem (0..{LENGTH}, at random "
                                "positions); the hard problems' difficulty.")
    easy_difficulty: int = option(-1, "If >= 0, every other problem has this many rare "
                                      "operations instead (the easy set); -1: none.")

    def __post_init__(self) -> None:
        check_difficulty(self.difficulty)
        if self.easy_difficulty != -1:
            check_difficulty(self.easy_difficulty, "easy_difficulty")


def generate_opchain(count: int, *, seed: int = 0,
                     difficulty: int = OpchainOptions.difficulty,
                     easy_difficulty: int = OpchainOptions.easy_difficulty) -> list[Problem]:
    """`count` problems with `difficulty` rare operations (with `easy_difficulty` >= 0, the
    odd-numbered ones have that many); ids are stable for (seed, difficulty, index)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"opchain count: must be an integer >= 1, got {count!r}")
    OpchainOptions(difficulty=difficulty, easy_difficulty=easy_difficulty)
    problems = []
    for i in range(count):
        d = easy_difficulty if easy_difficulty >= 0 and i % 2 else difficulty
        c = draw_chain(_rng("problems", seed, d, i), d)
        problems.append(Problem(
            id=f"{SOURCE}-s{seed}-r{d}-{i:05d}", problem=problem_text(c),
            solution=solution_text(c), answer=str(c.answer), source=SOURCE,
            difficulty=float(d), domain="chain"))
    return problems


def guided_response(solution: str, shown: int, *, revisit: int) -> str:
    """What follows guidance of `shown` solution lines: the last `revisit` shown lines again
    (fewer if fewer were shown) and the lines after them."""
    seg = segment(solution, "steps")
    if not 0 < shown < len(seg):
        raise ConfigError(f"guided_response: shown = {shown} outside 1..{len(seg) - 1}")
    return solution[len(seg.prefix(max(0, shown - revisit))):]


@dataclass(frozen=True)
class Demonstration:
    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    difficulty: int  # rare operations
    shown: int  # solution lines given as guidance (0: unguided)
    wording: str = ""  # the guidance template ('' unguided)


def demonstrations(count: int, *, seed: int, rare_weights: Sequence[float],
                   guided_fraction: float, restate: bool) -> list[Demonstration]:
    """`count` seeded conversations; the number of rare operations r is drawn with weights
    `rare_weights[r]`; a share `guided_fraction` shows 1..LENGTH-1 solution lines through one of
    WORDINGS (drawn uniformly), answered per `restate` (module docstring). Their problems come
    from another seed space than `generate_opchain`'s."""
    if count < 1:
        raise ConfigError(f"demonstrations: count must be >= 1, got {count}")
    if not rare_weights or len(rare_weights) > LENGTH + 1 or min(rare_weights) < 0 \
            or sum(rare_weights) <= 0:
        raise ConfigError(f"demonstrations: rare_weights needs 1..{LENGTH + 1} weights >= 0 with "
                          f"a positive sum, got {list(rare_weights)}")
    if not 0 <= guided_fraction <= 1:
        raise ConfigError(f"demonstrations: guided_fraction must be in [0, 1], got "
                          f"{guided_fraction}")
    out = []
    for i in range(count):
        rng = _rng("demonstrations", seed, 0, i)
        r = rng.choices(range(len(rare_weights)), weights=rare_weights)[0]
        c = draw_chain(rng, r)
        solution = solution_text(c)
        shown = rng.randint(1, LENGTH - 1) if rng.random() < guided_fraction else 0
        wording = ""
        if shown:
            wording = rng.choice(WORDINGS)
            prefix = segment(solution, "steps").prefix(shown)
            prompt = guided_messages(problem_text(c), prefix, guidance=GUIDANCE[wording])
            revisit = REVISIT if restate and wording != "no-revisit" else 0
            answer = guided_response(solution, shown, revisit=revisit)
        else:
            prompt, answer = problem_messages(problem_text(c)), solution
        out.append(Demonstration(prompt=prompt,
                                 completion=[{"role": "assistant", "content": answer}],
                                 difficulty=r, shown=shown, wording=wording))
    return out
