"""The SFT stage of `sft_then_rl` without training: its data from a real build folder, its plan and its refusals.

Builds run with the scripted engine (tests.pope_data.fake_engine); no model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pope_cli.train import app
from typer.testing import CliRunner

from pope_eval.errors import ConfigError, DataError
from pope_train.sft import SftOptions, sft_data, write_sft_data
from tests.pope_data.fake_engine import ScriptedEngine
from tests.trl.conftest import make_export, scripted_build

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return scripted_build(tmp_path_factory.mktemp("sft_build"), count=6)


def test_traces_are_the_correct_guided_samples_after_their_prefix(build):
    data = sft_data(build, "traces")
    prefixes = {r["problem_id"]: r for r in pq.read_table(
        build / "prefixes" / "train.parquet").to_pylist()}
    hard = {r["extra_info"]["problem_id"]: r for r in pq.read_table(
        build / "hard" / "train.parquet").to_pylist()}
    assert data.problems == 6 and len(data.examples) == 6
    for e in data.examples:
        row, choice = hard[e["problem_id"]], prefixes[e["problem_id"]]
        # The prompt is the unguided one GRPO trains on; the target ends with the journaled text.
        assert e["prompt"] == row["prompt"] and "<partial_solution>" not in e["prompt"][-1]["content"]
        answer = e["completion"][0]["content"]
        assert answer == f"{choice['prefix_text'].rstrip()}\n\\boxed{{{row['answer']}}}"
        assert e["messages"] == e["prompt"] + e["completion"] and e["origin"] == "trace"


def test_solutions_are_the_sources_solutions(build):
    data = sft_data(build, "solutions")
    curate = {r["id"]: r["solution"] for r in pq.read_table(build.parent / "curate.parquet")
              .to_pylist()}
    assert len(data.examples) == 6
    for e in data.examples:
        assert e["completion"][0]["content"] == curate[e["problem_id"]].strip()
        assert e["origin"] == "source solution"


def test_oracle_written_solutions_come_from_the_journal(tmp_path, data_dir):
    from pope_data.build import run_build
    from pope_data.config import BuildConfig
    from pope_eval.engines import EngineConfig, GenerationResult, Sample, Sampling

    rows = [json.loads(x) for x in (data_dir / "dapo_sample.jsonl").read_text().splitlines()[:2]]
    answers = {r["problem"]: r["answer"] for r in rows}

    class Oracle(ScriptedEngine):
        def _generate(self, requests, progress):
            out = []
            for r in requests:
                prob = next(p for p in answers if r.messages[-1]["content"].startswith(p))
                text = f"Step one.\nStep two.\nSo \\boxed{{{answers[prob]}}}"
                out.append(GenerationResult(r, tuple(Sample(text, 9, "stop") for _ in range(r.n))))
            return out

    cfg = BuildConfig(out=str(tmp_path / "out"), source="dapo",
                      path=str(data_dir / "dapo_sample.jsonl"), limit=2, k=2, n=2, wave_size=1,
                      sampling=Sampling(max_tokens=16), engine=EngineConfig(engine="transformers"),
                      validation_fraction=0.0, decontam_against=(), solve=True, solve_n=2)
    run_build(cfg, engine=ScriptedEngine(answers, {p: 99 for p in answers}),
              oracle_engine=Oracle({}, {}))
    data = sft_data(tmp_path / "out" / "export", "solutions")
    assert [e["origin"] for e in data.examples] == ["oracle solution"] * 2
    assert all(e["completion"][0]["content"].endswith("\\boxed{" + answers[
        next(p for p in answers if e["prompt"][-1]["content"].startswith(p))] + "}")
        for e in data.examples)
    # No guided rollout was ever correct (the base model needs 99 lines): no traces.
    with pytest.raises(DataError, match="--sft-data traces: none of the 2 hard training problems"):
        sft_data(tmp_path / "out" / "export", "traces")


def test_validation_problems_are_never_fine_tuned_on(tmp_path):
    export = scripted_build(tmp_path, count=8, validation_fraction=0.5)
    held_out = {r["extra_info"]["problem_id"]
                for r in pq.read_table(export / "hard" / "validation.parquet").to_pylist()}
    assert held_out
    for source in ("traces", "solutions"):
        data = sft_data(export, source)
        assert data.examples and not {e["problem_id"] for e in data.examples} & held_out
        assert data.problems == 8 - len(held_out)


def test_a_build_that_kept_no_texts_is_named_with_the_way_out(tmp_path):
    export = scripted_build(tmp_path, count=2, retention="none")
    with pytest.raises(DataError, match=r"journal.sqlite: the build kept no sample texts "
                                        r"\(--retention none\); rebuild with --retention correct"):
        sft_data(export, "traces")
    assert len(sft_data(export, "solutions").examples) == 2


def test_an_export_without_its_build_folder_is_named(tmp_path):
    export = make_export(tmp_path, hard=1, easy=0)  # an export alone: no journal, no curate
    with pytest.raises(DataError, match="journal.sqlite: no such file"):
        sft_data(export, "traces")
    with pytest.raises(DataError, match="curate.parquet: no such file"):
        sft_data(export, "solutions")


def test_sft_data_file_is_what_trl_and_verl_read(build, tmp_path):
    import datasets
    from trl.data_utils import is_conversational

    path = write_sft_data(sft_data(build, "traces"), tmp_path / "sft.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    row = ds[0]
    assert is_conversational({"prompt": row["prompt"], "completion": row["completion"]})
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]


@pytest.mark.parametrize("kwargs, field", [
    ({"sft_steps": 0}, "--sft-steps"), ({"sft_batch_size": 0}, "--sft-batch-size"),
    ({"sft_data": "books"}, "--sft-data: unknown 'books'; choose one of traces, solutions"),
    ({"sft_learning_rate": 2.0}, "--sft-learning-rate"),
])
def test_sft_option_errors_name_the_option(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SftOptions(**kwargs)


def test_dry_run_plans_sft_then_grpo_from_its_model(build, tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    res = runner.invoke(app, ["run", "sft_then_rl", "--backend", "trl", "--export", str(build),
                              "--model", str(tiny_model_dir), "--sft-steps", "3",
                              "--sft-data", "solutions", "--out", str(out), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert ("sft: 6 examples (solutions) for 6 of 6 hard training problems; 3 steps, then GRPO "
            "from the fine-tuned model") in res.output
    plan = json.loads(res.stdout[res.stdout.index("{"):])
    assert plan["train_files"] == [str((build / "hard" / "train.parquet").resolve())]
    sft = plan["sft_config"]
    assert (sft["max_steps"], sft["output_dir"]) == (3, str(out.resolve() / "sft"))
    assert sft["completion_only_loss"] and sft["max_length"] is None
    assert plan["sft_data"]["origins"] == {"source solution": 6}
    from trl import SFTConfig

    SFTConfig(**sft)  # TRL's own validation
    assert not out.exists()


def test_sft_options_are_refused_by_configs_without_an_sft_stage(build, tmp_path):
    res = runner.invoke(app, ["run", "pope", "--backend", "trl", "--export", str(build),
                              "--model", "smollm2-135m", "--sft-steps", "3",
                              "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 2
    assert ("error: --sft-steps: only for configs with an SFT stage (sft_then_rl); pope has none"
            in flat(res.output))


def test_sft_then_rl_needs_a_build_to_fine_tune_on(build, tiny_model_dir, tmp_path):
    res = runner.invoke(app, ["run", "sft_then_rl", "--backend", "trl", "--model",
                              str(tiny_model_dir), "--train", str(build / "hard" / "train.parquet"),
                              "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 2
    assert "export: config sft_then_rl fine-tunes on the build's solutions first" in flat(res.output)
