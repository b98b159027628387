"""A seeded generator of multi-step problems with worked solutions (one step per line) and exact answers.

`generate_synthetic(count, seed=0, difficulty=2)` is the offline default source: small models fail
many problems unguided and solve them once shown most of the steps, so the prefix search has work.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from pope_data.records import Problem
from pope_eval.errors import ConfigError

SOURCE = "synthetic"


def _rng(seed: int, index: int, difficulty: int) -> random.Random:
    digest = hashlib.sha256(f"synthetic:{seed}:{difficulty}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _conclude(steps: list[str], claim: str, answer: int) -> list[str]:
    """Close a solution: a step restating the problem's own words with the answer, then the line
    stating the answer (the last step, which is never guidance).

    Shown a partial solution, the tiny demo model mostly ignores it and starts over from the
    problem (0 of 16 samples continued the 4-5 steps before the answer line of the older shapes).
    While rewriting the problem's words it copies what followed them in its context (measured: 4 of
    12 samples stated the right answer after this step, 1 in words the grader reads), so a prefix
    holding it is one the model can finish; "the answer is" in it lets the grader read such a
    copy. Shorter prefixes leave it arithmetic it cannot do; without this step the search fell
    back on 15 of 16 problems.
    """
    n = len(steps)
    return [*steps, f"Step {n + 1}: So {claim}, that is, the answer is {answer}.",
            f"Step {n + 2}: Therefore the final answer is {answer}."]


def _arithmetic_chain(rng: random.Random, difficulty: int) -> tuple[str, list[str], int]:
    """(((a*b) + c) - d) ... : one operation per step."""
    hi = 10 ** (1 + difficulty // 2) if difficulty > 1 else 20
    value = rng.randint(3, hi)
    b = rng.randint(3, 12 + 3 * difficulty)
    expr = f"{value} \\times {b}"
    steps = [f"Step 1: First multiply: {value} \\times {b} = {value * b}."]
    value *= b
    for i in range(2, 3 + difficulty):
        op = rng.choice("+-*") if i > 2 else rng.choice("+-")
        x = rng.randint(2, 9) if op == "*" else rng.randint(5, hi)
        new = value + x if op == "+" else value - x if op == "-" else value * x
        sym = {"+": "+", "-": "-", "*": "\\times"}[op]
        word = {"+": "add", "-": "subtract", "*": "multiply by"}[op]
        expr = f"({expr}) {sym} {x}"
        steps.append(f"Step {i}: Then {word} {x}: {value} {sym} {x} = {new}.")
        value = new
    return f"Compute ${expr}$.", _conclude(steps, f"${expr} = {value}$", value), value


def _linear_equation(rng: random.Random, difficulty: int) -> tuple[str, list[str], int]:
    """a(x + p) - q = r: expand, isolate, divide."""
    x = rng.randint(-20 * difficulty, 20 * difficulty)
    a = rng.randint(2, 6 + difficulty)
    p = rng.randint(1, 15 * difficulty)
    q = rng.randint(1, 30 * difficulty)
    r = a * (x + p) - q
    steps = [
        f"Step 1: Add {q} to both sides: {a}(x + {p}) = {r} + {q} = {r + q}.",
        f"Step 2: Divide both sides by {a}: x + {p} = {(r + q) // a}.",
        f"Step 3: Subtract {p} from both sides: x = {(r + q) // a} - {p} = {x}.",
        f"Step 4: Check: {a}({x} + {p}) - {q} = {a * (x + p)} - {q} = {r}, as required.",
    ]
    equation = f"${a}(x + {p}) - {q} = {r}$"
    return (f"Solve for $x$: {equation}.",
            _conclude(steps, f"the solution of {equation} is $x = {x}$", x), x)


def _modular_sum(rng: random.Random, difficulty: int) -> tuple[str, list[str], int]:
    """Remainder of a sum of products, reduced term by term."""
    m = rng.randint(7, 13 + 4 * difficulty)
    terms = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(1 + difficulty)]
    expr = " + ".join(f"{a} \\cdot {b}" for a, b in terms)
    steps, total = [], 0
    for i, (a, b) in enumerate(terms, start=1):
        steps.append(f"Step {i}: {a} \\cdot {b} = {a * b}, and {a * b} \\bmod {m} = {a * b % m}.")
        total += a * b % m
    steps.append(f"Step {len(steps) + 1}: Sum of the remainders: {total}.")
    steps.append(f"Step {len(steps) + 1}: {total} \\bmod {m} = {total % m}.")
    ans = total % m
    return (f"Find the remainder when ${expr}$ is divided by ${m}$.",
            _conclude(steps, f"the remainder when ${expr}$ is divided by ${m}$ is {ans}", ans), ans)


def _counting(rng: random.Random, difficulty: int) -> tuple[str, list[str], int]:
    """Inclusion-exclusion: integers up to N divisible by a or b."""
    a, b = rng.sample([2, 3, 5, 7, 11, 13], 2)
    n = rng.randint(50, 100 * difficulty + 100)
    na, nb, nab = n // a, n // b, n // (a * b)
    ans = na + nb - nab
    steps = [
        f"Step 1: Multiples of {a} up to {n}: \\lfloor {n}/{a} \\rfloor = {na}.",
        f"Step 2: Multiples of {b} up to {n}: \\lfloor {n}/{b} \\rfloor = {nb}.",
        f"Step 3: Multiples of both, i.e. of {a * b}: \\lfloor {n}/{a * b} \\rfloor = {nab}.",
        f"Step 4: By inclusion-exclusion: {na} + {nb} - {nab} = {ans}.",
    ]
    claim = f"{ans} integers from 1 to {n} inclusive are divisible by {a} or by {b}"
    return (f"How many integers from 1 to {n} inclusive are divisible by {a} or by {b}?",
            _conclude(steps, claim, ans), ans)


FAMILIES: dict[str, Callable[[random.Random, int], tuple[str, list[str], int]]] = {
    "arithmetic": _arithmetic_chain,
    "linear": _linear_equation,
    "modular": _modular_sum,
    "counting": _counting,
}


def generate_synthetic(count: int, *, seed: int = 0, difficulty: int = 2,
                       families: tuple[str, ...] | None = None) -> list[Problem]:
    """`count` problems cycling through the families; ids are stable for (seed, difficulty, index)."""
    if count < 1:
        raise ConfigError(f"synthetic count: must be >= 1, got {count}")
    if not 1 <= difficulty <= 5:
        raise ConfigError(f"synthetic difficulty: must be in 1..5, got {difficulty}")
    names = families or tuple(FAMILIES)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"synthetic families: unknown {unknown}; choose from {sorted(FAMILIES)}")
    problems = []
    for i in range(count):
        family = names[i % len(names)]
        problem, steps, answer = FAMILIES[family](_rng(seed, i, difficulty), difficulty)
        problems.append(Problem(
            id=f"synthetic-s{seed}-d{difficulty}-{i:05d}",
            problem=problem,
            solution="\n".join(steps),
            answer=str(answer),
            source=SOURCE,
            difficulty=float(difficulty),
            domain=family,
        ))
    return problems
