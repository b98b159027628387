"""`--preset`: published values fill the options the user did not give, and are recorded."""

import json

import pytest
from pope_cli.eval import app as eval_app
from typer.testing import CliRunner

from pope_eval.presets import PRESETS

runner = CliRunner()


def test_unknown_preset_names_the_choices(tmp_path):
    res = runner.invoke(eval_app, ["pass-at-k", "--preset", "nosuch", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "--preset: unknown preset 'nosuch'; choose one of paper, qwen3-instruct" in res.output


def test_the_preset_line_says_what_was_set_and_what_the_user_kept(tmp_path):
    # The data file is missing: the run stops at its checks, after the preset was applied.
    res = runner.invoke(eval_app, ["pass-at-k", "--preset", "paper", "--model", "smollm2-135m",
                                   "--data", str(tmp_path / "missing.jsonl"),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    line = next(ln for ln in res.output.splitlines() if ln.startswith("preset paper:"))
    assert "--top-k 50" in line and "--top-p 0.95" in line and "--max-tokens 16000" in line
    assert "yours: --model" in line and "Qwen" not in line


def test_every_preset_value_has_a_source():
    for preset in PRESETS.values():
        for command in ("build", "pass-at-k", "train"):
            for flag, value in preset.values_for(command).items():
                assert flag.startswith("--") and value.source.strip(), (preset.name, flag)


@pytest.mark.slow
def test_pass_at_k_with_a_preset_records_its_values(tmp_path):
    data = tmp_path / "two.jsonl"
    data.write_text('{"problem": "What is 2+3?", "answer": "5"}\n'
                    '{"problem": "What is 4+4?", "answer": "8"}\n', encoding="utf-8")
    out = tmp_path / "run"
    res = runner.invoke(eval_app, ["pass-at-k", "--preset", "paper", "--model", "smollm2-135m",
                                   "--engine", "transformers", "--data", str(data), "--n", "2",
                                   "--max-tokens", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run_config = json.loads((out / "run_config.json").read_text())
    sampling = run_config["config"]["sampling"]
    # The preset's test sampling, except what the command line gave.
    assert (sampling["temperature"], sampling["top_p"], sampling["top_k"]) == (0.8, 0.95, 50)
    assert sampling["max_tokens"] == 8 and run_config["config"]["engine"]["model"] == "smollm2-135m"
    assert run_config["preset"]["name"] == "paper"
    assert run_config["preset"]["set"]["--top-k"]["value"] == 50
    assert set(run_config["preset"]["explicit"]) == {"--model", "--n", "--max-tokens"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampling"]["top_k"] == 50


def test_the_docs_table_lists_every_preset_value_as_in_the_code():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "presets.md").read_text(encoding="utf-8")
    for preset in PRESETS.values():
        assert f"### `{preset.name}`" in doc
        for command in ("build", "pass-at-k", "train"):
            for flag, value in preset.values_for(command).items():
                assert f"| `{command}` | `{flag}` | `{value.value}` | {value.source} |" in doc
