"""Tests for pope_data.decontam: planted eval problems are removed, near-misses are kept.

Eval sets are the real AIME 2025 / HMMT Feb 2025 files bundled with pope_eval; training files are written here.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from pope_data.decontam import (
    DECONTAMINATION_FILE,
    decontaminate,
    exact_key,
    load_eval_sets,
    words,
    write_decontamination,
)
from pope_data.records import Problem
from pope_data.sources import load_problems
from pope_eval.benchmarks import bundled_file
from pope_eval.datafiles import iter_rows
from pope_eval.errors import ConfigError

NOVEL = ("zebra quartz violin meadow lantern cobalt harbor pepper glacier orchid tundra falcon "
         "marble saffron canyon velvet ember willow nectar prism").split()


def _eval_set(name: str) -> list[tuple[str, str]]:
    return [(row["id"], row["problem"]) for _, row in iter_rows(bundled_file(name))]


@pytest.fixture(scope="module")
def eval_sets() -> dict[str, list[tuple[str, str]]]:
    return {"aime2025": _eval_set("aime2025"), "hmmt_feb_2025": _eval_set("hmmt_feb_2025")}


def _aime(eval_sets, item_id: str) -> str:
    return dict(eval_sets["aime2025"])[item_id]


def _reworded(text: str) -> str:
    """The same problem with other whitespace, LaTeX spacing and sizing, braces and case."""
    t = text.replace(" ", "  ").replace("$", " $ ", 4).replace("(", r"\left(").replace(")", r"\right)")
    t = t.replace(", ", r",\, ").replace("=", r"\;=\;")
    return "  " + t[:1].lower() + t[1:] + "\n"


def _near_miss(text: str, keep: int) -> str:
    """The first `keep` words of `text` followed by 20 words that appear in no eval item."""
    return " ".join(words(text)[:keep] + NOVEL)


def _write_training_file(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_planted_aime_problem_in_a_training_file_is_removed_and_reported(tmp_path, eval_sets,
                                                                          data_dir):
    math500 = [row for _, row in iter_rows(data_dir / "math500.jsonl")]  # 150 rows
    planted = _reworded(_aime(eval_sets, "aime2025-I-1"))
    planted_long = _reworded(_aime(eval_sets, "aime2025-II-7"))
    assert planted != _aime(eval_sets, "aime2025-I-1")
    rows = [*math500[:100],
            {"id": "planted-1", "problem": planted, "answer": "70"},
            *math500[100:],
            {"id": "planted-2", "problem": planted_long, "answer": "1"}]
    train = _write_training_file(tmp_path / "train.jsonl", rows)
    problems = load_problems("generic", path=str(train))
    assert len(problems) == 152

    result = decontaminate(problems, eval_sets=eval_sets)

    removed = {r["problem_id"]: r for r in result.removed}
    assert set(removed) == {"planted-1", "planted-2"}
    assert removed["planted-1"] == {
        "problem_id": "planted-1", "source": "generic", "eval_set": "aime2025",
        "eval_id": "aime2025-I-1", "method": "exact", "score": 1.0}
    assert removed["planted-2"]["eval_id"] == "aime2025-II-7"
    assert removed["planted-2"]["method"] == "exact"
    assert [p.id for p in result.kept] == [str(r["id"]) for r in math500]
    assert result.checked == {"aime2025": 30, "hmmt_feb_2025": 30}

    write_decontamination(tmp_path, result, {"extra.jsonl": "no such file"})
    report = json.loads((tmp_path / DECONTAMINATION_FILE).read_text())
    assert {r["problem_id"] for r in report["removed"]} == {"planted-1", "planted-2"}
    assert report["not_checked"] == {"extra.jsonl": "no such file"}
    assert report["kept"] == 150 and report["ngram"] == 8 and report["threshold"] == 0.5


def test_normalisation_ignores_spacing_delimiters_and_braces():
    a = r"Let $f\left(x\right) = x^{2}$ and  $g(x)=x~+\,1$."
    b = r"let \( f(x)=x^2 \) and g(x) = x + 1."
    assert exact_key(a) == exact_key(b)
    assert exact_key("x + 1") != exact_key("x + 2")
    assert words(r"Compute $\frac{1}{2}$, then 17_b.") == ["compute", "frac", "1", "2", "then",
                                                           "17", "b"]


def test_ngram_overlap_removes_an_edited_copy(eval_sets):
    original = _aime(eval_sets, "aime2025-I-2")
    toks = words(original)
    # Change one word in the middle: most 8-grams survive, exact match does not.
    edited = " ".join(toks[: len(toks) // 2] + ["sixteen"] + toks[len(toks) // 2 + 1:])
    result = decontaminate([Problem(id="edit", problem=edited, answer="1", source="t")],
                           eval_sets=eval_sets)
    (row,) = result.removed
    # Every 8-gram of the edit is shared except the 8 windows over the changed word.
    edited_grams = {tuple(words(edited)[i:i + 8]) for i in range(len(toks) - 7)}
    assert row["method"] == "ngram" and row["eval_id"] == "aime2025-I-2"
    assert row["score"] == pytest.approx((len(edited_grams) - 8) / len(edited_grams), abs=1e-4)


def test_near_miss_below_threshold_is_kept_and_threshold_is_settable(eval_sets):
    source = _aime(eval_sets, "aime2025-I-12")
    keep, n = 20, 8
    near = Problem(id="near", problem=_near_miss(source, keep), answer="1", source="t")
    expected = (keep - n + 1) / (keep + len(NOVEL) - n + 1)
    assert expected < 0.5

    default = decontaminate([near], eval_sets=eval_sets)
    assert [p.id for p in default.kept] == ["near"] and default.removed == []

    lowered = decontaminate([near], eval_sets=eval_sets, threshold=expected - 0.01)
    assert lowered.kept == []
    (row,) = lowered.removed
    assert row["method"] == "ngram" and row["eval_id"] == "aime2025-I-12"
    assert row["score"] == pytest.approx(expected, abs=1e-4)

    # A longer n-gram window on the same text: fewer shared n-grams, still kept at 0.5.
    assert decontaminate([near], eval_sets=eval_sets, ngram=13).removed == []


def test_short_problems_are_matched_exactly_only(eval_sets):
    short = Problem(id="short", problem="Find the sum of all integer bases", answer="1", source="t")
    assert decontaminate([short], eval_sets=eval_sets).removed == []


@pytest.mark.parametrize("kwargs, field", [({"ngram": 0}, "ngram"), ({"threshold": 0}, "threshold"),
                                           ({"threshold": 1.5}, "threshold")])
def test_bad_settings_name_the_field(eval_sets, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        decontaminate([], eval_sets=eval_sets, **kwargs)


def test_load_eval_sets_reports_sets_it_cannot_load(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    # The Hub answers (pope_eval.offline), then the load fails.
    monkeypatch.setattr("pope_eval.offline.hub_unreachable", lambda: None)
    missing = tmp_path / "missing.jsonl"
    eval_sets, not_checked = load_eval_sets(
        [str(bundled_file("aime2025")), "hub:MathArena/hmmt_feb_2025", str(missing)])
    assert list(eval_sets) == ["aime2025"]
    assert len(eval_sets["aime2025"]) == 30
    assert eval_sets["aime2025"][0][0] == "aime2025-I-1"
    assert set(not_checked) == {"hub:MathArena/hmmt_feb_2025", str(missing)}
    assert not_checked["hub:MathArena/hmmt_feb_2025"] == (
        "cannot load MathArena/hmmt_feb_2025 (split 'train') from the Hugging Face Hub "
        "(ConnectionError: no network); offline? use a bundled name (aime2025, hmmt_feb_2025) "
        "or --decontam-against PATH")
    assert "no such file" in not_checked[str(missing)]


def test_default_eval_sets_load_offline_from_the_bundled_files(monkeypatch):
    import pope_eval.benchmarks as benchmarks

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub must not be touched for bundled eval sets")

    monkeypatch.setattr(benchmarks, "hub_rows", no_hub)
    start = time.perf_counter()
    eval_sets, not_checked = load_eval_sets()
    assert time.perf_counter() - start < 5
    assert not_checked == {}
    assert {name: len(items) for name, items in eval_sets.items()} == {
        "aime2025": 30, "hmmt_feb_2025": 30}
    assert eval_sets["hmmt_feb_2025"][0][0] == "hmmt-feb-2025-1"


def test_seventeen_thousand_problems_against_sixty_items_is_fast(eval_sets):
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    problems = [Problem(id=f"p{i}", problem=" ".join(rng.choices(vocab, k=60)), answer="1",
                        source="t") for i in range(17_000)]
    problems.append(Problem(id="copy", problem=_aime(eval_sets, "aime2025-II-3"), answer="1",
                            source="t"))
    start = time.perf_counter()
    result = decontaminate(problems, eval_sets=eval_sets)
    elapsed = time.perf_counter() - start
    assert [r["problem_id"] for r in result.removed] == ["copy"]
    assert len(result.kept) == 17_000
    assert elapsed < 30, f"decontamination of 17k problems took {elapsed:.1f} s"


def test_default_eval_sets_are_the_bundled_benchmarks():
    from pope_data.config import BuildConfig
    from pope_data.decontam import DEFAULT_EVAL_SETS
    from pope_eval.benchmarks import BENCHMARKS

    assert DEFAULT_EVAL_SETS == tuple(BENCHMARKS) == ("aime2025", "hmmt_feb_2025")
    assert BuildConfig().decontam_against == DEFAULT_EVAL_SETS
