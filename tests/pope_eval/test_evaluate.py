"""pass@k runs: outputs, the estimator recomputed from per-problem counts, resume, refusals."""

import json

import polars as pl
import pytest

from pope_eval import passk
from pope_eval.benchmarks import bundled_file
from pope_eval.engines import Engine, EngineConfig, GenerationResult, Sample, Sampling
from pope_eval.errors import ConfigError
from pope_eval.evaluate import PassAtKConfig, run_pass_at_k

AIME = bundled_file("aime2025")


class ScriptedEngine(Engine):
    """Answers problem j's sample s correctly when (j + s) % 3 == 0; counts generated requests."""

    def __init__(self, answers: dict[str, str]):
        self.name = "scripted"
        self.model = "scripted"
        self.answers = answers
        self.requests = 0

    def _generate(self, requests, progress):
        out = []
        for r in requests:
            self.requests += 1
            j = sorted(self.answers).index(r.tag)
            samples = tuple(
                Sample(
                    text=f"so the answer is \\boxed{{{self.answers[r.tag] if (j + s) % 3 == 0 else 'x+1'}}}",
                    tokens=10 + s, finish_reason="stop")
                for s in range(r.n)
            )
            out.append(GenerationResult(request=r, samples=samples))
        return out


def _answers(limit):
    rows = [json.loads(x) for x in AIME.read_text().splitlines()[:limit]]
    return {r["id"]: r["answer"] for r in rows}


def _config(tmp_path, **kw):
    sampling = {k: kw.pop(k) for k in ("max_tokens", "temperature", "top_p", "seed") if k in kw}
    base = dict(data=str(AIME), out=str(tmp_path / "run"), n=4, limit=5,
                sampling=Sampling(**{"max_tokens": 16, "temperature": 0.7, "top_p": 0.8,
                                     **sampling}),
                engine=EngineConfig(engine="transformers"), problems_per_batch=5, n_boot=200)
    base.update(kw)
    return PassAtKConfig(**base)


def test_outputs_and_summary_match_the_estimator_on_per_problem_counts(tmp_path):
    engine = ScriptedEngine(_answers(5))
    summary = run_pass_at_k(_config(tmp_path), engine=engine)
    out = tmp_path / "run"
    for name in ("summary.json", "per_problem.parquet", "samples.parquet", "report.md",
                 "pass_at_k.png", "run_config.json"):
        assert (out / name).exists(), name
    per = pl.read_parquet(out / "per_problem.parquet")
    assert per.columns[:4] == ["id", "answer", "n", "correct"]
    assert per["correct"].to_list() == [2, 1, 1, 2, 1]
    for k in (1, 2, 4):
        expected = sum(passk.pass_at_k(4, c, k) for c in per["correct"]) / 5
        assert summary["pass_at_k"][str(k)]["estimate"] == pytest.approx(expected)
    samples = pl.read_parquet(out / "samples.parquet")
    assert samples.columns == ["id", "sample", "text", "tokens", "finish_reason", "status", "extracted"]
    assert samples.height == 20 and set(samples["status"]) == {"correct", "wrong"}
    assert summary["status_counts"]["correct"] == 7
    report = (out / "report.md").read_text()
    assert "| 1 |" in report and "aime2025-I-1" in report


def test_rerun_generates_nothing_and_partial_runs_resume(tmp_path):
    engine = ScriptedEngine(_answers(5))
    first = run_pass_at_k(_config(tmp_path, problems_per_batch=2), engine=engine)
    assert engine.requests == 5
    again = run_pass_at_k(_config(tmp_path, problems_per_batch=2), engine=engine)
    assert engine.requests == 5
    assert again["pass_at_k"] == first["pass_at_k"]
    # Lose the last finished batch (one problem): only that problem is generated again.
    parts = sorted((tmp_path / "run" / "parts").glob("part-*.parquet"))
    parts[-1].unlink()
    resumed = run_pass_at_k(_config(tmp_path, problems_per_batch=2), engine=engine)
    assert engine.requests == 6
    assert resumed["pass_at_k"] == first["pass_at_k"]


def test_changed_config_is_refused_not_mixed(tmp_path):
    run_pass_at_k(_config(tmp_path), engine=ScriptedEngine(_answers(5)))
    with pytest.raises(ConfigError, match="temperature"):
        run_pass_at_k(_config(tmp_path, temperature=0.2), engine=ScriptedEngine(_answers(5)))


def test_k_larger_than_n_is_an_error():
    with pytest.raises(ConfigError, match="larger than n"):
        PassAtKConfig(n=4, ks=(8,))


@pytest.mark.slow
def test_end_to_end_on_the_tiny_model(tmp_path, hf_engine):
    cfg = _config(tmp_path, n=4, max_tokens=24, temperature=0.8, top_p=0.95)
    summary = run_pass_at_k(cfg, engine=hf_engine)
    per = pl.read_parquet(tmp_path / "run" / "per_problem.parquet")
    assert per.height == 5 and per["n"].to_list() == [4] * 5
    for k in (1, 2, 4):
        expected = sum(passk.pass_at_k(n, c, k) for n, c in zip(per["n"], per["correct"])) / 5
        assert summary["pass_at_k"][str(k)]["estimate"] == pytest.approx(expected)
    samples = pl.read_parquet(tmp_path / "run" / "samples.parquet")
    assert (samples["tokens"] > 0).all() and (samples["tokens"] <= 24).all()
    assert set(samples["finish_reason"]) <= {"stop", "length"}

    class Refuse(Engine):
        def _generate(self, requests, progress):
            raise AssertionError("a finished run must not generate again")

    again = run_pass_at_k(cfg, engine=Refuse())
    assert again["pass_at_k"] == summary["pass_at_k"]
