"""The organism's task family: the difficulty knob, segmentable solutions, graded answers, seeds.

Prefixes of a solution must leave a smaller problem of the same family, and the restate knob must
change only what guided demonstrations answer.
"""

import re

import pytest

from pope_data.organism import (
    HEADER,
    HIGH,
    LOW,
    MAX_DIFFICULTY,
    PAD,
    Sum,
    demonstrations,
    draw_sum,
    generate_organism,
    guided_response,
    solution_text,
)
from pope_data.segments import segment
from pope_eval.errors import ConfigError
from pope_eval.grading import extract_answer, grade_many
from pope_eval.prompts import guided_messages, problem_messages


def _sum_of(problem: str) -> Sum:
    numbers = re.fullmatch(rf"{HEADER}\n{PAD}*(\d+)((?: [+-] \d+)+)", problem)
    assert numbers, problem
    operands = tuple(int(sign + x) for sign, x in re.findall(r"([+-]) (\d+)", numbers.group(2)))
    return Sum(int(numbers.group(1)), operands)


@pytest.mark.parametrize("difficulty", [1, 2, 5, 8, 12, MAX_DIFFICULTY])
def test_difficulty_is_the_number_of_operations_and_of_solution_steps(difficulty):
    for p in generate_organism(20, seed=3, difficulty=difficulty):
        s = _sum_of(p.problem)
        assert len(s.operands) == difficulty
        assert p.difficulty == difficulty and p.source == "organism"
        seg = segment(p.solution, "steps")
        assert len(seg) == difficulty + 1  # one line per operation, then the answer line
        assert seg.segments()[-1] == f"The answer is {p.answer}."


def test_answers_are_exact_and_every_value_stays_three_digits():
    for d in (1, 4, 9):
        for p in generate_organism(30, seed=1, difficulty=d):
            s = _sum_of(p.problem)
            expression = p.problem.splitlines()[1].strip(PAD)
            assert eval(expression) == int(p.answer)  # noqa: S307 (our own generated sums)
            assert all(LOW <= v <= HIGH for v in [s.start, *s.values()])
            assert all(2 <= abs(x) <= 9 for x in s.operands)


def test_after_i_lines_the_rest_is_the_solution_of_the_reduced_problem():
    for p in generate_organism(10, seed=2, difficulty=7):
        s = _sum_of(p.problem)
        seg = segment(p.solution, "steps")
        for i in range(1, 7):
            reduced = Sum(s.values()[i - 1], s.operands[i:])
            assert p.solution[len(seg.prefix(i)):] == solution_text(reduced)
            assert seg.prefix(i).splitlines()[-1].strip(PAD).startswith(f"{reduced.start}")


def test_pope_grading_reads_the_answer_line_and_only_the_right_answer_is_correct():
    problems = generate_organism(6, seed=5, difficulty=4)
    texts = [p.solution for p in problems]
    assert [extract_answer(t) for t in texts] == [p.answer for p in problems]
    golds = [p.answer for p in problems]
    wrong = [str(int(g) + 1) for g in golds]
    grades = grade_many(texts + texts, golds + wrong)
    assert [g.status for g in grades] == ["correct"] * 6 + ["wrong"] * 6
    # A solution cut before its answer line states no answer.
    cut = [segment(t, "steps").prefix(4) for t in texts]
    assert {g.status for g in grade_many(cut, golds)} == {"no_answer"}


def test_seeded_reproducibility_and_stable_ids():
    a = generate_organism(40, seed=0, difficulty=6)
    assert a == generate_organism(40, seed=0, difficulty=6)
    assert generate_organism(40, seed=1, difficulty=6) != a
    assert len({p.id for p in a}) == 40
    assert a[0].id == "organism-s0-d6-00000"
    # The first problems do not depend on how many were asked for.
    assert generate_organism(5, seed=0, difficulty=6) == a[:5]
    assert demonstrations(30, seed=4, difficulties=(1, 3), guided_fraction=0.5,
                          restate=True) == demonstrations(30, seed=4, difficulties=(1, 3),
                                                          guided_fraction=0.5, restate=True)


def test_bad_arguments_are_refused():
    for bad in (0, MAX_DIFFICULTY + 1, 2.0, True):
        with pytest.raises(ConfigError):
            generate_organism(2, difficulty=bad)
    with pytest.raises(ConfigError):
        generate_organism(0)
    with pytest.raises(ConfigError):
        demonstrations(5, seed=0, difficulties=(), guided_fraction=0.3, restate=True)
    with pytest.raises(ConfigError):
        demonstrations(5, seed=0, difficulties=(2,), guided_fraction=1.5, restate=True)
    with pytest.raises(ConfigError):
        guided_response(generate_organism(1, difficulty=3)[0].solution, 4, restate=True)


def test_restate_knob_changes_only_the_answers_to_guided_prompts():
    kwargs = dict(seed=9, difficulties=(2, 4, 6), guided_fraction=0.5)
    restating = demonstrations(200, restate=True, **kwargs)
    continuing = demonstrations(200, restate=False, **kwargs)
    guided = 0
    for r, c in zip(restating, continuing):
        assert r.prompt == c.prompt and r.difficulty == c.difficulty and r.shown == c.shown
        problem = r.prompt[0]["content"].split("\n\n")[0]
        full = solution_text(_sum_of(problem))
        if not r.shown:
            assert r.prompt == problem_messages(problem)
            assert r.completion == c.completion == [{"role": "assistant", "content": full}]
            continue
        guided += 1
        prefix = segment(full, "steps").prefix(r.shown)
        assert r.prompt == guided_messages(problem, prefix)
        last = prefix.splitlines()[-1]
        # Restating: the last shown line again, then the rest; otherwise only the rest.
        assert r.completion[0]["content"] == f"{last}\n{full[len(prefix):]}"
        assert c.completion[0]["content"] == full[len(prefix):]
        assert not any(line in c.completion[0]["content"].splitlines()
                       for line in prefix.splitlines())
    assert 70 <= guided <= 130  # about half of 200


def test_demonstrations_cover_the_asked_difficulties_only():
    demos = demonstrations(300, seed=0, difficulties=(1, 2, 3), guided_fraction=0.3,
                           restate=True)
    assert {d.difficulty for d in demos} == {1, 2, 3}
    assert all(d.shown == 0 for d in demos if d.difficulty == 1)  # nothing to show
    assert all(0 <= d.shown < d.difficulty for d in demos)


def test_draw_sum_keeps_the_knob_and_range_for_many_seeds():
    import random

    for seed in range(200):
        s = draw_sum(random.Random(seed), 10)
        assert len(s.operands) == 10 and LOW <= s.answer <= HIGH


def test_the_organism_source_through_pope_data_build_checks_its_options_first(tmp_path):
    from pope_cli.data import app
    from typer.testing import CliRunner

    runner = CliRunner()
    for option, named in (("difficulty=40", "--source-option difficulty: must be an integer in 1..16"),
                          ("depth=3", "expected KEY=VALUE with KEY one of difficulty, "
                                      "easy_difficulty"),
                          ("easy_difficulty=two", "--source-option easy_difficulty: must be an integer, "
                                                  "got 'two'")):
        out = tmp_path / option.split("=")[0]
        res = runner.invoke(app, ["build", "--source", "organism", "--source-option", option,
                                  "--model", "tests/data/organism", "--out", str(out)])
        assert res.exit_code != 0
        assert named in " ".join(res.output.split()), res.output
        assert not (out / "journal.sqlite").exists()


def test_the_organism_source_makes_hard_and_easy_problems_of_one_family():
    from pope_data.sources import get_source

    spec = get_source("organism")
    options = spec.parse_source_options(["difficulty=9", "easy_difficulty=2"])
    problems = spec.generate(6, seed=4, **options)
    assert [p.difficulty for p in problems] == [9, 2, 9, 2, 9, 2]
    assert len({p.id for p in problems}) == 6 and spec.default_limit == 32
    assert [p.id for p in spec.generate(6, seed=4, **options)] == [p.id for p in problems]
    assert spec.can_overlap_eval_sets is False and spec.license == "apache-2.0"
