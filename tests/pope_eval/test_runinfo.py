"""Run folders: config recording, refusal of a changed config, atomic JSON writes."""

import json

import pytest

from pope_eval.errors import ConfigError
from pope_eval.runinfo import config_diff, open_run_dir, write_json_atomic


def test_open_run_dir_records_config_versions_and_command(tmp_path):
    out = open_run_dir(tmp_path / "run", {"n": 4, "engine": {"model": "m"}}, command="pope-eval x")
    data = json.loads((out / "run_config.json").read_text())
    assert data["config"] == {"n": 4, "engine": {"model": "m"}}
    assert data["command"] == "pope-eval x"
    assert "python" in data["versions"] and "polars" in data["versions"]


def test_reopen_with_same_config_is_allowed_and_changed_config_refused(tmp_path):
    open_run_dir(tmp_path, {"n": 4, "engine": {"model": "m", "seed": 0}})
    open_run_dir(tmp_path, {"n": 4, "engine": {"model": "m", "seed": 0}})
    with pytest.raises(ConfigError) as err:
        open_run_dir(tmp_path, {"n": 8, "engine": {"model": "m", "seed": 1}})
    msg = str(err.value)
    assert "n: 4 -> 8" in msg and "engine.seed: 0 -> 1" in msg


def test_tuples_compare_equal_to_recorded_lists(tmp_path):
    open_run_dir(tmp_path, {"ks": (1, 2)})
    open_run_dir(tmp_path, {"ks": [1, 2]})


def test_config_diff_lists_added_and_removed_keys():
    assert config_diff({"a": 1}, {"b": 2}) == ["a: 1 -> None", "b: None -> 2"]


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
    p = write_json_atomic(tmp_path / "x.json", {"a": [1, 2]})
    assert json.loads(p.read_text()) == {"a": [1, 2]}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]
