"""Benchmarks: the bundled AIME 2025 / HMMT Feb 2025 offline, `hub:` specs, and row rules for files.

Hub specs are read by the real `datasets.load_dataset`, which resolves ORG/NAME to a local folder
of that name first, so no test touches the network.
"""

import json

import polars as pl
import pytest

import pope_eval.benchmarks as benchmarks
from pope_eval.benchmarks import bundled_file, load_benchmark
from pope_eval.datafiles import Quarantine, file_sha256
from pope_eval.errors import ConfigError, DataError

AIME_SHA256 = "b8372c531275fdfbe322ebf6fbc2373162e83c0d2c35d6d90cadcd5ae5a19684"
HMMT_SHA256 = "e9d317adfd7df590ce271deec609c4f91bee3dc4f4ae437e6fce8920d4cf271f"


@pytest.fixture
def no_hub(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Hub must not be touched")

    monkeypatch.setattr(benchmarks, "hub_rows", refuse)


def test_bundled_sets_load_offline_by_name(no_hub):
    aime = load_benchmark("aime2025")
    assert (aime.name, aime.source, aime.sha256, aime.quarantined) == (
        "aime2025", "bundled:aime2025", AIME_SHA256, 0)
    assert [i.id for i in aime.items] == ([f"aime2025-I-{j}" for j in range(1, 16)]
                                          + [f"aime2025-II-{j}" for j in range(1, 16)])
    assert aime.items[0].answer == "70" and aime.items[0].problem.startswith(
        "Find the sum of all integer bases $b>9$")
    hmmt = load_benchmark("hmmt_feb_2025", limit=3)
    assert (hmmt.source, hmmt.sha256) == ("bundled:hmmt_feb_2025", HMMT_SHA256)
    assert [i.id for i in hmmt.items] == ["hmmt-feb-2025-1", "hmmt-feb-2025-2", "hmmt-feb-2025-3"]
    assert file_sha256(bundled_file("aime2025")) == AIME_SHA256


def test_bundled_file_unknown_name():
    with pytest.raises(DataError, match="no bundled eval set 'aime2024': use one of aime2025, "
                                        "hmmt_feb_2025"):
        bundled_file("aime2024")


def test_benchmarks_are_a_registry_that_takes_a_name_once():
    assert tuple(benchmarks.BENCHMARKS) == ("aime2025", "hmmt_feb_2025")
    assert "aime2025" in benchmarks.BENCHMARKS and "aime2024" not in benchmarks.BENCHMARKS
    assert benchmarks.BENCHMARKS["aime2025"].hub_id == "MathArena/aime_2025"
    with pytest.raises(ConfigError, match="--data: unknown benchmark 'aime2024'; choose one of "
                                          "aime2025, hmmt_feb_2025"):
        benchmarks.BENCHMARKS["aime2024"]  # noqa: B018 - the lookup raises
    with pytest.raises(ValueError, match="benchmark 'aime2025' is already registered"):
        benchmarks.BENCHMARKS.add("aime2025", benchmarks.BundledBenchmark("x.jsonl", "a/b"))
    assert benchmarks.default_benchmarks() == ("aime2025", "hmmt_feb_2025")


def _hub_folder(root, hub_id, split, rows):
    folder = root / hub_id
    folder.mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(folder / f"{split}.parquet")


@pytest.fixture
def hub_cwd(tmp_path, monkeypatch):
    import datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path


def test_hub_spec_maps_matharena_columns_and_records_source_and_digest(hub_cwd):
    import hashlib

    rows = [{"problem_idx": 1, "problem": "Compute $1+1$.", "answer": 2},
            {"problem_idx": 2, "problem": "Compute $2+2$.", "answer": 4}]
    _hub_folder(hub_cwd, "MathArena/aime_2025", "train", rows)
    bench = load_benchmark("hub:MathArena/aime_2025")
    assert [(i.id, i.problem, i.answer) for i in bench.items] == [
        ("aime2025-1", "Compute $1+1$.", "2"), ("aime2025-2", "Compute $2+2$.", "4")]
    assert (bench.name, bench.source) == ("aime_2025", "hub:MathArena/aime_2025")
    assert bench.sha256 == hashlib.sha256(
        json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def test_hub_spec_with_a_split_and_unknown_layout(hub_cwd):
    _hub_folder(hub_cwd, "someone/set", "test", [{"id": "a", "question": "Q?", "final": "1"}])
    bench = load_benchmark("hub:someone/set:test", columns="problem=question,answer=final")
    assert [(i.id, i.problem, i.answer) for i in bench.items] == [("a", "Q?", "1")]
    assert bench.source == "hub:someone/set:test"


def test_hub_failure_is_one_error_naming_the_dataset_and_the_way_out(hub_cwd):
    _hub_folder(hub_cwd, "someone/set", "train", [{"problem": "Q?", "answer": "1"}])
    with pytest.raises(DataError) as err:
        load_benchmark("hub:someone/set:validation", option="--decontam-against")
    msg = str(err.value)
    assert msg.startswith("cannot load someone/set (split 'validation') from the Hugging Face Hub (")
    assert msg.endswith("offline? use a bundled name (aime2025, hmmt_feb_2025) or "
                        "--decontam-against PATH")


@pytest.mark.parametrize("spec, message", [
    ("hub:nope", "--data 'hub:nope': expected hub:ORG/NAME or hub:ORG/NAME:SPLIT"),
    ("hub:a/b/c", "--data 'hub:a/b/c': expected hub:ORG/NAME or hub:ORG/NAME:SPLIT"),
    ("aime2026", "--data: unknown benchmark 'aime2026': use one of aime2025, hmmt_feb_2025 "
                 "(bundled), hub:ORG/NAME[:split], or a path to a .jsonl, .json or .parquet file"),
])
def test_bad_specs_name_the_option(spec, message):
    with pytest.raises(DataError) as err:
        load_benchmark(spec)
    assert str(err.value) == message


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_every_row_is_judged_alike_even_the_first(tmp_path):
    # The first row has no answer: it is quarantined like any other row, the file still loads.
    f = _write(tmp_path / "q.jsonl", [
        {"id": "a", "problem": "P1"},
        {"id": "b", "problem": "P2", "answer": "2"},
        {"id": "c", "problem": "P3", "answer": ["1", "2"]},
        {"id": "d", "problem": "P4", "answer": True},
        {"id": "e", "problem": {"text": "P5"}, "answer": "5"},
        {"id": "f", "problem": "P6", "answer": "  "},
        {"id": "b", "problem": "P7", "answer": "7"},
        {"id": "g", "problem": "P8", "answer": 8.0},
    ])
    q = Quarantine()
    bench = load_benchmark(str(f), quarantine=q)
    assert [(i.id, i.answer) for i in bench.items] == [("b", "2"), ("g", "8")]
    assert bench.quarantined == 6 and bench.source == str(f) and bench.name == "q"
    assert {e["row"]: e["reason"] for e in q.entries} == {
        1: "missing answer",
        3: "answer is list, not text",
        4: "answer is bool, not text",
        5: "problem is dict, not text",
        6: "empty answer",
        7: "duplicate id 'b'",
    }


def test_mapped_columns_are_named_in_reasons(tmp_path):
    f = _write(tmp_path / "q.jsonl", [{"question": "Q1", "final": "1"}, {"question": "Q2"}])
    q = Quarantine()
    bench = load_benchmark(str(f), columns="problem=question,answer=final", quarantine=q)
    assert [(i.id, i.problem) for i in bench.items] == [("row-1", "Q1")]
    assert q.entries[0]["reason"] == "missing answer (column 'final')"


def test_a_column_missing_from_every_row_is_an_error_naming_it(tmp_path):
    f = _write(tmp_path / "q.jsonl", [{"question": "1+1?", "final": "2"},
                                      {"question": "2+2?", "final": "4", "id": 7}])
    with pytest.raises(DataError) as err:
        load_benchmark(str(f))
    assert str(err.value) == (
        f"{f}: missing column(s) 'problem', 'answer' in every row (columns found: final, id, "
        "question); map yours with --columns, e.g. 'problem=question,answer=final'")


def test_unknown_column_field_is_refused_up_front(tmp_path):
    f = _write(tmp_path / "q.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(DataError) as err:
        load_benchmark(str(f), columns="problme=question")
    assert str(err.value) == ("--columns: unknown field(s) 'problme'; valid fields: id, problem, "
                              "answer")
