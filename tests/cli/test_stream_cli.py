"""`--batch-samples` (the streaming window) on the command line: refused when not >= 1 before anything
is written, and carried into a pass@k run that streams its problems a window at a time."""

import json

import pytest
from pope_cli.data import app as data_app
from pope_cli.eval import app as eval_app
from typer.testing import CliRunner

from pope_eval.engines import Engine, GenerationResult, Sample

runner = CliRunner()


def _data(tmp_path):
    f = tmp_path / "problems.jsonl"
    f.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + 2?",
                                     "answer": str(i + 2)}) + "\n" for i in range(5)))
    return f


@pytest.mark.parametrize("app,command", [(eval_app, "pass-at-k"), (data_app, "build")])
def test_a_window_below_one_is_refused_naming_the_flag(tmp_path, app, command):
    out = tmp_path / "out"
    res = runner.invoke(app, [command, "--data" if command == "pass-at-k" else "--path",
                              str(_data(tmp_path)), "--batch-samples", "0", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "--batch-samples" in " ".join(res.output.split())
    assert not out.exists()


class Counting(Engine):
    """Answers 0 to everything; records the most samples any one generate() call held."""

    most = 0

    def _generate(self, requests, progress):
        Counting.most = max(Counting.most, sum(r.n for r in requests))
        return [GenerationResult(r, tuple(Sample("\\boxed{0}", 3, "stop") for _ in range(r.n)))
                for r in requests]


def test_pass_at_k_streams_a_window_at_a_time(tmp_path, monkeypatch):
    import pope_eval.engines.factory

    monkeypatch.setattr(pope_eval.engines.factory, "make_engine",
                        lambda config: Counting(model="counting"))
    out = tmp_path / "run"
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(_data(tmp_path)), "--n", "2",
                                   "--batch-samples", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 5
    assert Counting.most == 4  # two problems of 2 samples in flight, never more
