"""Data-file reading: row numbers, invalid lines, column mapping, quarantine files."""

import json

import polars as pl
import pytest

from pope_eval.datafiles import Quarantine, get_field, iter_rows, parse_column_map
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
