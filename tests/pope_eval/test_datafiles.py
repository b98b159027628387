"""Data-file reading: row numbers, invalid lines, column mapping, the shared row rules, Hub rows."""

import json

import polars as pl
import pytest

from pope_eval.datafiles import (
    HubRows,
    Quarantine,
    RowReader,
    as_text,
    get_field,
    has_field,
    hub_rows,
    iter_rows,
    parse_column_map,
)
from pope_eval.errors import DataError


def test_jsonl_rows_are_numbered_and_bad_lines_yielded_as_errors(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n{not json}\n{"a": 3}\n', encoding="utf-8")
    rows = list(iter_rows(p))
    assert [r[0] for r in rows] == [1, 3, 4]
    assert rows[0][1] == {"a": 1} and rows[2][1] == {"a": 3}
    assert isinstance(rows[1][1], DataError) and "row 3" in str(rows[1][1])


def test_parquet_and_json_files_are_read(tmp_path):
    pl.DataFrame({"problem": ["p1", "p2"], "answer": ["1", "2"]}).write_parquet(tmp_path / "x.parquet")
    assert [r for _, r in iter_rows(tmp_path / "x.parquet")][1] == {"problem": "p2", "answer": "2"}
    (tmp_path / "x.json").write_text(json.dumps({"rows": [{"a": 1}]}))
    assert list(iter_rows(tmp_path / "x.json")) == [(1, {"a": 1})]


@pytest.mark.parametrize("name,content,match", [
    ("missing.jsonl", None, "no such file"),
    ("x.csv", "a,b", "unsupported file type"),
    ("bad.parquet", "not parquet", "cannot read parquet"),
    ("bad.json", "{", "cannot read JSON"),
])
def test_unreadable_files_name_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    if content is not None:
        p.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        list(iter_rows(p))
    assert name in str(err.value)


def test_column_map_and_dotted_fields():
    assert parse_column_map("problem=question, answer=reward_model.ground_truth") == {
        "problem": "question", "answer": "reward_model.ground_truth"}
    with pytest.raises(DataError, match="FIELD=COLUMN"):
        parse_column_map("problem")
    row = {"reward_model": {"ground_truth": "7"}}
    assert get_field(row, "reward_model.ground_truth") == "7"
    assert get_field(row, "reward_model.missing") is None


def test_quarantine_writes_source_row_and_reason(tmp_path):
    q = Quarantine()
    q.add("f.jsonl", 3, "empty answer", {"problem": "x", "answer": ""})
    q.add("f.jsonl", 4, "odd", object())
    lines = [json.loads(x) for x in q.write(tmp_path / "q" / "quarantine.jsonl").read_text().splitlines()]
    assert len(q) == 2
    assert lines[0] == {"source": "f.jsonl", "row": 3, "reason": "empty answer",
                        "raw": {"problem": "x", "answer": ""}}
    assert lines[1]["raw"].startswith("<object")


def test_column_map_refuses_unknown_fields_naming_the_valid_ones():
    assert parse_column_map("problem=q", fields=("id", "problem", "answer")) == {"problem": "q"}
    with pytest.raises(DataError) as err:
        parse_column_map("problme=question,answr=final", fields=("id", "problem", "answer"))
    assert str(err.value) == ("--columns: unknown field(s) 'problme', 'answr'; valid fields: id, "
                              "problem, answer")


def test_fields_and_text_values():
    row = {"a": {"b": None}}
    assert has_field(row, "a.b") and not has_field(row, "a.c") and get_field(row, "a.b") is None
    assert [as_text(v) for v in ("x", 3, 2.0, 2.5, True, None, [1])] == [
        "x", "3", "2", "2.5", None, None, None]


def _read(rows, columns=None, transform=None):
    q = Quarantine()
    reader = RowReader("f.jsonl", columns or {}, q, transform=transform)
    out = [(r.rownum, r.problem, r.answer) for r in reader.rows(enumerate(rows, start=1))]
    return out, {e["row"]: e["reason"] for e in q.entries}, reader


def test_row_reader_judges_every_row_alike():
    rows = [{"problem": "p1"}, {"problem": " p2 ", "answer": 2}, {"problem": "p3", "answer": []},
            {"problem": "p4", "answer": False}, {"problem": "", "answer": "1"}, "text",
            {"problem": 5, "answer": "1"}]
    out, reasons, _ = _read(rows)
    assert out == [(2, "p2", "2")]
    assert reasons == {1: "missing answer", 3: "answer is list, not text",
                       4: "answer is bool, not text", 5: "empty problem",
                       6: "row is str, not an object", 7: "problem is int, not text"}


def test_row_reader_mapped_columns_fall_back_to_field_names_and_transform():
    rows = [{"q": {"text": "p1"}, "a": "1"}, {"problem": "p2", "answer": "2"}, {"q": {}, "a": "3"}]
    out, reasons, reader = _read(rows, {"problem": "q.text", "answer": "a"},
                                 transform=lambda r: {**r, "seen": True})
    assert out == [(1, "p1", "1"), (2, "p2", "2")]
    assert reasons == {3: "missing problem (column 'q.text')"}
    assert reader.value({"id": 3}, "id") == 3


def test_row_reader_error_only_when_a_column_is_absent_everywhere():
    with pytest.raises(DataError) as err:
        _read([{"problem": "p", "final": "1"}, {"problem": "q", "extra": 2}])
    assert str(err.value) == (
        "f.jsonl: missing column(s) 'answer' in every row (columns found: extra, final, problem); "
        "map yours with --columns, e.g. 'problem=question,answer=final'")
    # One row with the column is enough: the others are quarantined, nothing is raised.
    out, reasons, _ = _read([{"problem": "p"}, {"problem": "q", "answer": None}])
    assert out == [] and reasons == {1: "missing answer", 2: "missing answer"}
    assert _read([])[0] == [] and _read(["{bad"])[0] == []


def test_columns_given_with_the_option_are_read_only_from_those_columns():
    rows = [{"problem": "p1", "answer": "1", "final": "10"}, {"problem": "p2", "answer": "2"}]
    # A layout's column (plain str) falls back to the field's name; --columns' do not.
    out, reasons, _ = _read(rows, parse_column_map("answer=final"))
    assert out == [(1, "p1", "10")] and reasons == {2: "missing answer (column 'final')"}
    assert _read(rows, {"answer": "final"})[0] == [(1, "p1", "10"), (2, "p2", "2")]


@pytest.mark.parametrize("spec, typos", [
    ("answer=fianl", "answer=fianl"),
    ("id=idx,answer=fianl", "answer=fianl, id=idx"),  # an optional field's column too
    ("problem=problem.text", "problem=problem.text"),
])
def test_a_column_of_the_option_in_no_row_is_an_error_whatever_the_file_holds(spec, typos):
    rows = [{"id": 1, "problem": "p1", "answer": "1", "final": "10"}, {"problem": "p2"}]
    with pytest.raises(DataError) as err:
        _read(rows, parse_column_map(spec))
    assert str(err.value) == (f"f.jsonl: --columns {typos}: no such column in any row "
                              "(columns found: answer, final, id, problem)")


def test_row_reader_claims_ids_once():
    q = Quarantine()
    reader = RowReader("f.jsonl", {}, q)
    assert reader.claim_id(1, {}, "a") and not reader.claim_id(2, {"x": 1}, "a")
    assert q.entries == [{"source": "f.jsonl", "row": 2, "reason": "duplicate id 'a'",
                          "raw": {"x": 1}}]


def test_hub_rows_digest_is_the_json_of_all_rows():
    import hashlib

    data = [{"b": 1, "a": "x"}, {"a": "y", "b": None}]
    rows = HubRows("org/name", "train", data)
    with pytest.raises(RuntimeError, match="only after reading every row"):
        rows.sha256  # noqa: B018 - the property raises before iteration
    assert list(rows) == [(1, data[0]), (2, data[1])]
    assert rows.sha256 == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    empty = HubRows("org/name", "train", [])
    assert list(empty) == [] and empty.sha256 == hashlib.sha256(b"[]").hexdigest()


def test_hub_rows_failure_is_one_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    # The Hub answers (pope_eval.offline), then the load fails.
    monkeypatch.setattr("pope_eval.offline.hub_unreachable", lambda: None)
    with pytest.raises(DataError) as err:
        hub_rows("org/name", "test", local="a local file with --path")
    assert str(err.value) == ("cannot load org/name (split 'test') from the Hugging Face Hub "
                              "(ConnectionError: Couldn't reach the Hub); offline? use a local "
                              "file with --path")
