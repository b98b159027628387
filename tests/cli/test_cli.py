"""The CLIs with typer's CliRunner on real files: exit codes and messages for bad input, compare."""

import json

import pytest
from pope_cli.data import app as data_app
from pope_cli.eval import app as eval_app
from typer.testing import CliRunner

from pope_eval.benchmarks import bundled_file

runner = CliRunner()


def text(res) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(res.output.split())


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent/file.jsonl"], "no such file"),
    (["--data", "nope_bench"], "unknown benchmark"),
    (["--n", "4", "--k", "8"], "larger than n"),
    (["--k", "1,x"], "comma list"),
])
def test_pass_at_k_bad_input_exits_non_zero_with_a_message(args, message, tmp_path):
    res = runner.invoke(eval_app, ["pass-at-k", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert message in text(res)


def test_pass_at_k_missing_columns_names_them(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "final": "2"}) + "\n")
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(f), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "missing column" in text(res) and "question" in text(res)


def _summary(path, values):
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({
        "model": path.name,
        "pass_at_k": {str(k): {"estimate": v, "ci_low": v - 0.1, "ci_high": v + 0.1}
                      for k, v in values.items()}}))


def test_compare_prints_and_plots_two_runs(tmp_path):
    _summary(tmp_path / "a", {1: 0.2, 4: 0.5})
    _summary(tmp_path / "b", {1: 0.3, 4: 0.45})
    res = runner.invoke(eval_app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"),
                                   "--plot", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    assert "+0.100" in text(res) and "-0.050" in text(res)
    assert (tmp_path / "c.png").stat().st_size > 1000
    res = runner.invoke(eval_app, ["compare", str(tmp_path / "a"), str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no summary.json" in text(res)


def test_build_bad_options_exit_non_zero(tmp_path):
    res = runner.invoke(data_app, ["build", "--out", str(tmp_path / "o"), "--k", "0"])
    assert res.exit_code == 2 and "--k: must be an integer >= 1" in text(res)
    assert "resume" not in text(res)  # nothing started, nothing to resume
    assert not (tmp_path / "o").exists()
    res = runner.invoke(data_app, ["build", "--out", str(tmp_path / "o"), "--source", "generic",
                                   "--path", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "no such file" in text(res)


def test_decontaminate_command_on_a_planted_problem(tmp_path):
    aime = json.loads(bundled_file("aime2025").read_text().splitlines()[3])
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"problem": aime["problem"].replace(" ", "   "), "answer": "1"})
                     + "\n" + json.dumps({"problem": "Compute 2+2.", "answer": "4"}) + "\n")
    res = runner.invoke(data_app, ["decontaminate", str(train), "--against",
                                   str(bundled_file("aime2025")), "--out",
                                   str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    kept = (tmp_path / "d" / "kept.jsonl").read_text().splitlines()
    assert len(kept) == 1 and "2+2" in kept[0]
    assert aime["id"] in text(res)


@pytest.mark.parametrize("flag,value", [("--threshold", "nan"), ("--threshold", "0"),
                                        ("--threshold", "1.5"), ("--ngram", "0")])
def test_decontaminate_refuses_bad_flags_by_their_names(tmp_path, flag, value):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"problem": "Compute 2+2.", "answer": "4"}) + "\n")
    res = runner.invoke(data_app, ["decontaminate", str(train), "--against",
                                   str(bundled_file("aime2025")), flag, value, "--out",
                                   str(tmp_path / "d")])
    assert res.exit_code == 2
    assert f"{flag}: must be" in text(res) and "decontaminate." not in text(res)
    assert not (tmp_path / "d").exists()
