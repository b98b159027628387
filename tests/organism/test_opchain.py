"""The second organism task family (`--source opchain`): fixed-width lines, rare operations at
random positions, prefixes that leave rare operations to the completion, the wordings and the
revisit knob of its demonstrations, and its options refused before a build writes anything.
"""

from __future__ import annotations

import re

import pytest
from pope_cli.data import app as data_app
from typer.testing import CliRunner

from pope_data.opchain import (
    DOUBLE,
    HALVE,
    HIGH,
    LENGTH,
    LOW,
    PAD,
    REVISIT,
    WIDTH,
    WORDINGS,
    demonstrations,
    draw_chain,
    generate_opchain,
    guided_response,
)
from pope_data.segments import segment
from pope_eval.errors import ConfigError
from pope_eval.grading import grade_many

runner = CliRunner()
OP = re.compile(r" [+\-*/] \d")


@pytest.mark.parametrize("rare", [0, 1, 4, 8, LENGTH])
def test_every_line_has_the_same_width_and_rare_is_the_count_of_rare_operations(rare):
    for p in generate_opchain(12, seed=2, difficulty=rare):
        first = p.problem.splitlines()[1]
        lines = [first, *p.solution.splitlines()[:-1]]
        assert len(lines) == LENGTH + 1
        widths = {len(re.sub(OP.pattern, "x", ln)) for ln in lines}  # an operation = one token
        assert widths == {WIDTH}
        assert all(ln.startswith(PAD) for ln in lines)  # the problem line is padded as the rest
        assert first.count(DOUBLE) + first.count(HALVE) == rare
        values = [int(re.match(r"_*(\d+)", ln).group(1)) for ln in lines]
        assert all(LOW <= v <= HIGH for v in values)
        assert p.answer == str(values[-1]) and p.difficulty == rare
    assert generate_opchain(3, seed=2, difficulty=rare) == generate_opchain(3, seed=2,
                                                                            difficulty=rare)


def test_rare_operations_sit_at_random_positions_so_prefixes_leave_them_to_the_completion():
    import random

    positions = [tuple(draw_chain(random.Random(i), 4).rare_positions) for i in range(200)]
    assert len(set(positions)) > 100
    assert {p[-1] for p in positions} >= {6, 8, 10, 12}  # the last rare step varies
    # after half the lines are shown, most hard problems still leave rare operations to the
    # completion (the line that applies one shows it done)
    left = []
    for p in generate_opchain(40, seed=0, difficulty=6):
        seg = segment(p.solution, "steps")
        assert len(seg) == LENGTH + 1
        last_shown = seg.prefix(LENGTH // 2).splitlines()[-1]
        left.append(last_shown.count(DOUBLE) + last_shown.count(HALVE))
    assert sum(1 for x in left if x) >= 30 and len(set(left)) >= 3


def test_solutions_grade_correct_and_ids_follow_the_seed():
    problems = generate_opchain(8, seed=0, difficulty=6, easy_difficulty=1)
    assert [p.difficulty for p in problems] == [6.0, 1.0] * 4
    grades = grade_many([p.solution for p in problems], [p.answer for p in problems])
    assert all(g.correct for g in grades)
    other = generate_opchain(8, seed=1, difficulty=6, easy_difficulty=1)
    assert not {p.id for p in problems} & {p.id for p in other}


def test_demonstrations_use_every_wording_and_revisit_only_when_allowed():
    demos = demonstrations(600, seed=0, rare_weights=(0.6, 0.3, 0.1), guided_fraction=0.5,
                           restate=True)
    guided = [d for d in demos if d.shown]
    assert {d.wording for d in guided} == set(WORDINGS)
    assert {d.difficulty for d in demos} == {0, 1, 2}
    for d in guided:
        user = d.prompt[-1]["content"]
        answer = d.completion[0]["content"]
        given = [ln for ln in user.splitlines() if ln.startswith("__")]  # the problem has one pad
        assert len(given) == d.shown
        if d.wording == "no-revisit":
            assert answer.splitlines()[0] not in given
        else:  # revisits the last REVISIT given lines, then goes on
            k = min(REVISIT, d.shown)
            assert answer.splitlines()[:k] == given[-k:]
    twin = demonstrations(600, seed=0, rare_weights=(0.6, 0.3, 0.1), guided_fraction=0.5,
                          restate=False)
    for d in (d for d in twin if d.shown):
        given = [ln for ln in d.prompt[-1]["content"].splitlines() if ln.startswith("__")]
        assert d.completion[0]["content"].splitlines()[0] not in given
    # the twin differs only in what guided demonstrations answer
    assert [d.prompt for d in twin] == [d.prompt for d in demos]


def test_guided_response_and_demonstrations_refuse_bad_arguments():
    p = generate_opchain(1, seed=0)[0]
    with pytest.raises(ConfigError, match="outside 1..12"):
        guided_response(p.solution, 0, revisit=2)
    with pytest.raises(ConfigError, match="rare_weights"):
        demonstrations(2, seed=0, rare_weights=(), guided_fraction=0.3, restate=True)


@pytest.mark.parametrize(("options", "message"), [
    (["difficulty=13"], "difficulty: must be an integer in 0..12"),
    (["easy_difficulty=40"], "easy_difficulty: must be an integer in 0..12"),
    (["difficulty=six"], "difficulty: must be an integer"),
    (["rare=3"], "KEY one of difficulty, easy_difficulty"),
])
def test_pope_data_build_refuses_bad_options_before_writing(tmp_path, options, message):
    args = [a for o in options for a in ("--source-option", o)]
    res = runner.invoke(data_app, ["build", "--source", "opchain", *args, "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    out = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(out) == 1 and out[0].startswith("error:") and message in out[0], res.output
    assert not (tmp_path / "o").exists()
