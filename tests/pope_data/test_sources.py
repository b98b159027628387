"""Sources on real rows of tests/data, Hub-shaped DAPO rows, and malformed files."""

import json

import polars as pl
import pytest

from pope_data.sources import DAPO_PREFIX, DAPO_SUFFIX, load_problems, strip_dapo_wrapper
from pope_eval.datafiles import Quarantine
from pope_eval.errors import ConfigError, DataError


def test_omni_math_rows_with_filters(data_dir):
    rows = [json.loads(x) for x in (data_dir / "omni_math_sample.jsonl").read_text().splitlines()]
    problems = load_problems("omni-math", path=str(data_dir / "omni_math_sample.jsonl"))
    assert len(problems) == len(rows)
    first = problems[0]
    assert (first.id, first.problem, first.solution, first.answer) == (
        rows[0]["id"], rows[0]["problem"].strip(), rows[0]["solution"], rows[0]["answer"])
    hard = load_problems("omni-math", path=str(data_dir / "omni_math_sample.jsonl"),
                         difficulty=(7, None), domain="geometry")
    assert hard and all(p.difficulty >= 7 and "geometry" in p.domain.lower() for p in hard)


def test_math500_through_the_generic_source(data_dir):
    problems = load_problems("generic", path=str(data_dir / "math500.jsonl"), limit=10)
    assert len(problems) == 10 and all(p.solution and "\\boxed" in p.solution for p in problems)
    assert problems[0].id == "math500-precalculus-807"


def test_local_dapo_sample_has_no_solutions(data_dir):
    problems = load_problems("dapo", path=str(data_dir / "dapo_sample.jsonl"))
    assert len(problems) == 150
    assert all(p.solution is None and p.answer.lstrip("-").isdigit() for p in problems)
    assert all(p.id.startswith("dapo-") for p in problems)


def _hub_dapo_row(problem, answer, index):
    return {"data_source": "math_dapo",
            "prompt": [{"role": "user", "content": DAPO_PREFIX + problem + DAPO_SUFFIX}],
            "ability": "MATH", "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": index}}


def test_dapo_hub_shape_is_stripped_and_deduplicated(tmp_path):
    rows = [_hub_dapo_row("Find $x$ if $2x = 6$.", "3", "a"),
            _hub_dapo_row("Find $x$ if $2x = 6$.", "3", "b"),  # the Hub repeats problems
            _hub_dapo_row("Find  $x$ if $2x = 6$. ", "3", "c"),  # whitespace variant
            _hub_dapo_row("Compute $1+1$.", "2", "d")]
    path = tmp_path / "dapo.parquet"
    pl.DataFrame(rows).write_parquet(path)
    problems = load_problems("dapo", path=str(path))
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("dapo-a", "Find $x$ if $2x = 6$.", "3"), ("dapo-d", "Compute $1+1$.", "2")]
    assert strip_dapo_wrapper("plain problem") == "plain problem"


def test_malformed_rows_are_quarantined_with_row_numbers(tmp_path):
    lines = [
        json.dumps({"problem": "ok", "answer": "1", "solution": "s"}),
        json.dumps({"problem": "", "answer": "1"}),
        "{broken",
        json.dumps({"problem": "no answer"}),
        json.dumps({"problem": "p", "answer": "2", "solution": 5}),
        json.dumps({"problem": "p", "answer": "2", "difficulty": "hard"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"problem": "int answer", "answer": 7}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    q = Quarantine()
    problems = load_problems("generic", path=str(path), quarantine=q)
    assert [p.problem for p in problems] == ["ok", "int answer"] and problems[1].answer == "7"
    got = {e["row"]: e["reason"] for e in q.entries}
    assert set(got) == {2, 3, 4, 5, 6, 7}
    assert "empty" in got[2] and "invalid JSON" in got[3] and "answer" in got[4]
    assert "solution" in got[5] and "difficulty" in got[6] and "not an object" in got[7]
    written = [json.loads(x) for x in q.write(tmp_path / "q.jsonl").read_text().splitlines()]
    assert all(e["source"] == str(path) for e in written)


def test_column_mapping_and_unknown_source(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"question": "What?", "final": "4", "uid": "u1"}) + "\n")
    (p,) = load_problems("generic", path=str(path), columns="problem=question,answer=final,id=uid")
    assert (p.problem, p.answer, p.id) == ("What?", "4", "u1")
    with pytest.raises(ConfigError, match="unknown 'nope'"):
        load_problems("nope")


def test_synthetic_source_is_seeded():
    a = load_problems("synthetic", limit=8, seed=1)
    b = load_problems("synthetic", limit=8, seed=1)
    assert a == b and len(a) == 8 and a != load_problems("synthetic", limit=8, seed=2)


def test_unknown_column_field_is_refused_up_front(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"question": "What?", "answer": "4"}) + "\n")
    with pytest.raises(DataError) as err:
        load_problems("generic", path=str(path), columns="problme=question")
    assert str(err.value) == ("--columns: unknown field(s) 'problme'; valid fields: id, problem, "
                              "answer, solution, difficulty, domain")


def test_first_row_is_judged_like_the_others(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"problem": "no answer"}, {"problem": "ok", "answer": "1"},
        {"problem": "list", "answer": ["1"]}, {"problem": "flag", "answer": True}]))
    q = Quarantine()
    assert [p.problem for p in load_problems("generic", path=str(path), quarantine=q)] == ["ok"]
    assert {e["row"]: e["reason"] for e in q.entries} == {
        1: "missing answer", 3: "answer is list, not text", 4: "answer is bool, not text"}


def test_a_column_missing_from_every_row_is_an_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"question": "What?", "final": "4"}) + "\n")
    with pytest.raises(DataError) as err:
        load_problems("generic", path=str(path))
    assert str(err.value) == (
        f"{path}: missing column(s) 'problem', 'answer' in every row (columns found: final, "
        "question); map yours with --columns, e.g. 'problem=question,answer=final'")
    # DAPO's mapped columns are named as mapped.
    with pytest.raises(DataError, match=r"missing column\(s\) 'prompt', "
                                        r"'reward_model.ground_truth' in every row"):
        load_problems("dapo", path=str(path))


def test_a_source_name_is_registered_once():
    from pope_data.sources import SOURCES, SourceSpec, source_names

    with pytest.raises(ValueError, match="'generic' is already registered"):
        SOURCES.add("generic", SourceSpec())
    assert source_names() == ["synthetic", "organism", "opchain", "omni-math", "dapo", "dapo-processed",
                              "generic"]


def test_a_generator_source_is_one_spec(tmp_path, monkeypatch):
    """A new generator needs only its SourceSpec: its default count, licence, solution
    authorship, card wording and the skipped decontamination all come from the spec."""
    from pope_data.build import run_build
    from pope_data.card import source_info
    from pope_data.config import BuildConfig
    from pope_data.records import Problem
    from pope_data.sources import SOURCES, SourceSpec
    from pope_eval.engines import EngineConfig, Sampling
    from pope_eval.registry import Registry
    from tests.pope_data.fake_engine import ScriptedEngine

    def doubling(count: int, *, seed: int, difficulty: int) -> list[Problem]:
        return [Problem(id=f"dbl-{seed}-{i}", problem=f"Double {i + difficulty}.",
                        answer=str(2 * (i + difficulty)), source="doubling",
                        solution=f"Step 1: {i + difficulty} + {i + difficulty}.\n"
                                 f"Step 2: that is {2 * (i + difficulty)}.\n"
                                 f"Step 3: the answer is {2 * (i + difficulty)}.")
                for i in range(count)]

    registry = Registry("source", option="--source")
    for name, spec in SOURCES.items():
        registry.add(name, spec)
    registry.add("doubling", SourceSpec(
        generate=doubling, options={"difficulty": "synthetic_difficulty"}, default_limit=5,
        license="cc0-1.0", solution_origin="generator:doubling", can_overlap_eval_sets=False,
        description="doubling drills"))
    monkeypatch.setattr("pope_data.sources.SOURCES", registry)

    problems = load_problems("doubling", options={"difficulty": 3})
    assert [p.problem for p in problems] == [f"Double {i}." for i in range(3, 8)]
    config = BuildConfig(out=str(tmp_path / "o"), source="doubling", synthetic_difficulty=3,
                         k=2, n=2, wave_size=1, engine=EngineConfig(engine="transformers"),
                         sampling=Sampling(max_tokens=16, temperature=0.8, top_p=0.95))
    engine = ScriptedEngine({p.problem: p.answer for p in problems},
                            {p.problem: 2 for p in problems})
    s = run_build(config, engine=engine)
    assert s.problems == 5 and s.guided == 5
    assert s.decontam_not_checked == {
        name: "doubling problems are generated here; they cannot overlap eval sets"
        for name in config.decontam_against}
    guided = pl.read_parquet(tmp_path / "o" / "export" / "guided" / "train.parquet")
    prov = guided["provenance"].to_list()[0]
    assert prov["solution_source"] == "generator:doubling"
    assert prov["source_dataset"] == "doubling"
    assert prov["source_revision"].endswith("generator, seed 0, difficulty 3")
    assert source_info({"source": "doubling"}) == ("doubling drills", "cc0-1.0")
    assert config.fingerprint()["limit"] == 5  # the count in effect is what resume compares


def test_rows_are_counted_from_read_to_kept(tmp_path):
    from pope_data.sources import Loaded

    path = tmp_path / "x.jsonl"
    rows = [{"id": f"q{i}", "problem": f"Problem {i}?", "answer": str(i),
             "difficulty": float(i % 3)} for i in range(12)]
    rows[3] = {"problem": "no answer"}
    rows[5] = {**rows[4], "id": "other"}  # the same problem text again
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    loaded = Loaded()
    got = load_problems("dapo", path=str(path), columns="problem=problem,answer=answer,id=id",
                        difficulty=(1, None), shard=(1, 2), limit=2, loaded=loaded)
    c = loaded.counts
    assert (c.read, c.unreadable, c.duplicates) == (13, 2, 1)
    assert c.read == (c.unreadable + c.duplicates + c.other_shards + c.filtered + c.over_limit
                      + c.kept)
    assert c.kept == len(got) == 2 and c.other_shards > 0 and c.filtered > 0
    assert set(loaded.origin) == {p.id for p in got}
    assert all(row == int(pid.removeprefix("q")) + 1
               for pid, (row, _) in loaded.origin.items())


def test_a_generator_source_declares_its_own_options(tmp_path, monkeypatch):
    """`--source-option KEY=VALUE` reaches a generator through its option class: typed, checked,
    fingerprinted; no BuildConfig field is needed for a new generator's knob."""
    from dataclasses import dataclass

    from pope_cli.data import app
    from typer.testing import CliRunner

    from pope_data.build import run_build
    from pope_data.config import BuildConfig
    from pope_data.records import Problem
    from pope_data.sources import SOURCES, SourceSpec
    from pope_eval.engines import EngineConfig, Sampling
    from pope_eval.options import option
    from pope_eval.registry import Registry
    from tests.pope_data.fake_engine import ScriptedEngine

    @dataclass(frozen=True)
    class TimesOptions:
        factor: int = option(2, "what to multiply by")
        loud: bool = option(False, "shout the problem")

    def times(count: int, *, seed: int, factor: int, loud: bool) -> list[Problem]:
        text = "TIMES {i} BY {f}!" if loud else "Times {i} by {f}."
        return [Problem(id=f"t-{i}", problem=text.format(i=i + 1, f=factor),
                        answer=str((i + 1) * factor), source="times",
                        solution=f"Step 1: {i + 1} x {factor}.\nStep 2: the answer is "
                                 f"{(i + 1) * factor}.")
                for i in range(count)]

    registry = Registry("source", option="--source")
    for name, spec in SOURCES.items():
        registry.add(name, spec)
    registry.add("times", SourceSpec(generate=times, option_class=TimesOptions, default_limit=3,
                                     solution_origin="generator:times",
                                     can_overlap_eval_sets=False, description="times drills"))
    monkeypatch.setattr("pope_data.sources.SOURCES", registry)

    def config(*items: str) -> BuildConfig:
        return BuildConfig(out=str(tmp_path / "o"), source="times", source_options=items,
                           k=2, n=2, wave_size=1, engine=EngineConfig(engine="transformers"),
                           sampling=Sampling(max_tokens=16, temperature=0.8, top_p=0.95))

    built = config("factor=5", "loud=true")
    assert built.fingerprint()["source_options"] == {"factor": 5, "loud": True}
    assert "source_options" not in config().fingerprint()  # older folders hold no such key
    problems = [f"TIMES {i} BY 5!" for i in (1, 2, 3)]
    engine = ScriptedEngine({p: str(5 * (i + 1)) for i, p in enumerate(problems)},
                            {p: 1 for p in problems})
    summary = run_build(built, engine=engine)
    assert summary.problems == 3
    hard = pl.read_parquet(tmp_path / "o" / "export" / "hard" / "train.parquet")
    assert hard.height >= 1
    assert all(text.split("\n")[0] in problems for text in hard["problem"].to_list())

    runner = CliRunner()
    for args, message in [
        (["--source-option", "fcator=3"], "expected KEY=VALUE with KEY one of factor, loud"),
        (["--source-option", "factor=three"], "factor: must be an integer, got 'three'"),
        (["--source-option", "loud=maybe"], "loud: must be true or false, got 'maybe'"),
    ]:
        res = runner.invoke(app, ["build", "--source", "times", "--out", str(tmp_path / "x"),
                                  *args])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(app, ["build", "--source-option", "difficulty=3",
                              "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--source-option: this source takes no options" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
