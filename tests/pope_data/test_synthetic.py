"""The synthetic generator: exact answers, step-by-step solutions, stable ids."""

import re

import pytest

from pope_data.segments import segment
from pope_data.synthetic import FAMILIES, generate_synthetic
from pope_eval.errors import ConfigError


@pytest.mark.parametrize("difficulty", [1, 2, 3, 5])
def test_every_family_states_its_answer_last_and_has_enough_steps(difficulty):
    problems = generate_synthetic(4 * len(FAMILIES), seed=7, difficulty=difficulty)
    assert {p.domain for p in problems} == set(FAMILIES)
    for p in problems:
        seg = segment(p.solution, "steps")
        assert len(seg) >= 5
        assert seg.segments()[-1].strip().endswith(f"final answer is {p.answer}.")
        assert re.fullmatch(r"-?\d+", p.answer)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_step_before_the_answer_restates_the_problem_with_its_answer(family):
    # The longest guidance (all steps but the last) must hold the problem's own words next to the
    # answer: the demo model copies them when it starts over (see `_conclude`).
    for p in generate_synthetic(6, seed=1, families=(family,)):
        before_last = segment(p.solution, "steps").segments()[-2].strip()
        math = re.findall(r"\$([^$]+)\$", p.problem)
        assert before_last.startswith("Step ") and ": So " in before_last
        assert all(m in before_last for m in math)
        assert re.search(rf"(?<![\d-]){re.escape(p.answer)}(?!\d)", before_last)
        assert before_last.endswith(f", that is, the answer is {p.answer}.")
        if family == "arithmetic":
            assert f"{math[0]} = {p.answer}$" in before_last


def test_arithmetic_answers_are_exact():
    for p in generate_synthetic(12, seed=3, difficulty=3, families=("arithmetic",)):
        expr = re.search(r"\$(.*)\$", p.problem).group(1).replace("\\times", "*")
        assert eval(expr) == int(p.answer)  # noqa: S307 (our own generated arithmetic)


def test_linear_answers_solve_the_equation():
    for p in generate_synthetic(8, seed=4, families=("linear",)):
        m = re.search(r"\$(\d+)\(x \+ (\d+)\) - (\d+) = (-?\d+)\$", p.problem)
        a, shift, sub, rhs = (int(g) for g in m.groups())
        assert a * (int(p.answer) + shift) - sub == rhs


def test_ids_are_stable_and_bad_arguments_refused():
    a = generate_synthetic(3, seed=0)
    assert [p.id for p in a] == [p.id for p in generate_synthetic(3, seed=0)]
    assert len({p.id for p in generate_synthetic(50)}) == 50
    with pytest.raises(ConfigError):
        generate_synthetic(0)
    with pytest.raises(ConfigError):
        generate_synthetic(2, difficulty=9)
    with pytest.raises(ConfigError):
        generate_synthetic(2, families=("geometry",))
