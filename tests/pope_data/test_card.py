"""Tests for pope_data.card: front matter that parses and matches the files, and the card's facts.

`make_build` writes a build folder in the layout of `pope-data build` (also used by test_hub.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pope_data.card import (
    PUBLISHED_CONFIGS,
    published_files,
    redact_command,
    render_card,
    repo_path,
    size_category,
)
from pope_data.decontam import DecontamResult, write_decontamination
from pope_data.export import (
    PREFIX_SCHEMA,
    PrefixChoice,
    plot_prefix_fractions,
    write_export,
    write_table,
)
from pope_data.records import Problem
from pope_eval.errors import DataError
from pope_eval.prompts import GUIDANCE, GUIDED_INSTRUCTION, GUIDED_TEMPLATE

COMMAND = ("/opt/venv/bin/pope-data build --source omni-math --path omni.jsonl --k 8 --n 4 "
           "--engine openai --endpoint http://127.0.0.1:8000/v1 --api-key sk-local-0000")


def make_build(root: Path, *, source: str = "omni-math", hard: int = 12, easy: int = 3,
               command: str = COMMAND, run_config: bool = True, decontam: bool = True,
               image: bool = True, validation_fraction: float = 0.4,
               guidance: str | None = None) -> Path:
    """A finished build folder: export/, prefixes.parquet, run_config.json, summary.json, ...
    `guidance`: a registered template the build recorded (None: a folder from before builds
    recorded one)."""
    out = root / "build"
    out.mkdir(parents=True)
    problems = [Problem(id=f"{source}-{i}", problem=f"Compute {i} * 7 + {i + 3}.",
                        answer=str(i * 7 + i + 3), source=source,
                        solution=f"Step 1: {i} * 7 = {i * 7}.\nStep 2: add {i + 3}.\n"
                                 f"Step 3: the answer is {i * 7 + i + 3}.")
                for i in range(hard + easy)]
    hard_set, easy_set = problems[:hard], problems[hard:]
    choices = {}
    for i, p in enumerate(hard_set):
        fallback = i % 4 == 3
        i_star = None if fallback else 1 + i % 2
        choices[p.id] = PrefixChoice(
            problem_id=p.id, num_segments=3, i_star=i_star,
            prefix_segments=0 if fallback else i_star,
            prefix_fraction=0.15 if fallback else 0.3 * i_star,
            prefix_text=p.solution.split("\n")[0], fallback=fallback, probes=2 + i % 3,
            samples=8 + i, tokens=1000 + 10 * i)
    write_table([asdict(c) for c in choices.values()], PREFIX_SCHEMA, out / "prefixes.parquet")
    template = GUIDANCE[guidance] if guidance else None
    counts = write_export(out, hard_set, choices, easy=easy_set,
                          validation_fraction=validation_fraction, seed=0, guidance=template)
    if image:
        plot_prefix_fractions(list(choices.values()), out / "prefix_fraction.png")
    if run_config:
        config = {
            "source": source, "path": "omni.jsonl" if source != "synthetic" else None,
            "hub_id": None, "k": 8, "n": 4, "strategy": "sweep", "wave_size": 4,
            "segmenter": "steps",
            "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 192, "seed": 0},
            "engine": {"engine": "openai", "model": "Qwen/Qwen3-4B-Instruct-2507",
                                  "dtype": "auto", "api_key": "sk-local-0000"},
        }
        run = {"config": config, "versions": {"pope": "0.1.0"}, "command": command}
        if template is not None:
            config["guidance"] = {"name": template.name, "sha256": template.sha256}
            run["guidance"] = template.record()
        (out / "run_config.json").write_text(json.dumps(run))
        (out / "summary.json").write_text(json.dumps({
            "problems": hard + easy + 2, "quarantined": 2, "hard": hard, "easy": easy,
            "guided": len(choices), "fallback": sum(c.fallback for c in choices.values()),
            "no_solution": 0, "tokens": {"curate": 5555, "prefix": 999}, "counts": counts}))
    if decontam:
        removed = [{"problem_id": "omni-math-x", "source": source, "eval_set": "aime2025",
                    "eval_id": "aime2025-I-1", "method": "exact", "score": 1.0}]
        write_decontamination(out, DecontamResult(kept=[], removed=removed,
                                                  checked={"aime2025": 30}),
                              {"hmmt_feb_2025": "offline"})
    return out


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, sep, _ = card[4:].partition("\n---\n")
    assert sep, "front matter is not closed"
    return yaml.safe_load(head)


def test_front_matter_parses_and_configs_match_the_build_files(tmp_path):
    out = make_build(tmp_path)
    card = render_card(out, repo_id="org/pope-omni")
    meta = _front_matter(card)
    files = published_files(out)
    assert {c["config_name"] for c in meta["configs"]} == set(files) == set(PUBLISHED_CONFIGS)
    for entry in meta["configs"]:
        config = entry["config_name"]
        assert {d["split"]: d["path"] for d in entry["data_files"]} == {
            s: repo_path(config, s) for s in files[config]}
        assert entry.get("default", False) == (config == "mix")
    assert meta["license"] == "apache-2.0"
    assert meta["task_categories"] == ["text-generation"]
    # `all` joins mix and easy: the largest config sets the size category.
    export = out / "export"
    assert files["all"] == {s: (export / "mix" / f"{s}.parquet", export / "easy" / f"{s}.parquet")
                            for s in ("train", "validation")}
    all_rows = sum(pq.read_metadata(p).num_rows for paths in files["all"].values() for p in paths)
    assert meta["size_categories"] == [size_category(all_rows)] == ["n<1K"]
    rows = {s: sum(pq.read_metadata(p).num_rows for p in paths)
            for s, paths in files["all"].items()}
    assert f"| `all` | {rows['train']} | {rows['validation']} | every row of `mix` and" in card
    assert "Qwen/Qwen3-4B-Instruct-2507" in meta["pretty_name"]


def test_card_states_the_search_counts_template_usage_and_command(tmp_path):
    out = make_build(tmp_path)
    card = render_card(out, repo_id="org/pope-omni")
    prefixes = pq.read_table(out / "prefixes.parquet").to_pylist()
    fallback = sum(r["fallback"] for r in prefixes)
    # A folder that recorded no template was worded by POPE's, the only one builds then used.
    assert GUIDED_TEMPLATE in card and GUIDED_INSTRUCTION in card
    assert f"template `pope` (sha256 `{GUIDANCE['pope'].sha256}`" in card
    assert "Qwen/Qwen3-4B-Instruct-2507" in card
    assert "temperature 0.8, top_p 0.95, max_tokens 192" in card
    assert "k = 8" in card and "n = 4" in card and "`sweep`" in card
    assert f"fallback: {fallback} (fallback rate {fallback / len(prefixes):.1%})" in card
    assert f"prefix search {sum(r['tokens'] for r in prefixes)}" in card
    assert "hard-set curation 5555" in card
    assert "[KbsdJames/Omni-MATH]" not in card  # read from a local file
    assert "`omni-math` read from the local file `omni.jsonl`" in card
    assert "Apache-2.0" in card
    # Usage for verl, TRL and OpenRLHF.
    assert "hf download org/pope-omni --repo-type dataset" in card
    assert ("    data.train_files=pope-data/data/mix/train.parquet \\\n"
            "    data.val_files=pope-data/data/mix/validation.parquet \\\n"
            "    data.prompt_key=prompt") in card
    assert 'load_dataset("org/pope-omni", "mix", split="train")' in card
    assert "`solution`" in card
    # OpenRLHF and Pipeline-RL: the flags and config tests/compat follows, marked as not run.
    assert ("--prompt_data pope-data/data/mix/train.parquet --input_key messages --label_key "
            "answer --apply_chat_template\n") in card
    assert ("--prompt_data pope-data/data/mix/train.parquet --input_key problem --label_key "
            "answer\n") in card
    assert card.count("(documented, not run)") == 2
    assert 'load_dataset("org/pope-omni", "all", split="train")' in card
    assert "`hard-without-guidance`" in card and "`hard-with-guidance`" in card
    # The reproducing command, as typed, without the engine's API key.
    assert "pope-data build --source omni-math --path omni.jsonl --k 8 --n 4" in card
    assert "/opt/venv/bin" not in card
    assert "sk-local-0000" not in card
    # The histogram image and a text table of prefix fractions.
    assert "![prefix fractions](prefix_fraction.png)" in card
    found = [r for r in prefixes if not r["fallback"]]
    by_istar = {i: sum(r["i_star"] == i for r in found) for i in (1, 2)}
    assert f"| 1 | {by_istar[1]} |" in card and f"| 2 | {by_istar[2]} |" in card
    assert f"| [0.1, 0.2) | 0 | {fallback} |" in card


def test_card_shows_the_guidance_template_the_build_recorded(tmp_path):
    template = GUIDANCE["no-revisit"]
    card = render_card(make_build(tmp_path, guidance="no-revisit"))
    assert f"template `no-revisit` (sha256 `{template.sha256}`" in card
    assert template.instruction in card and GUIDED_INSTRUCTION not in card
    guided = pq.read_table(tmp_path / "build" / "export" / "guided" / "train.parquet")
    assert template.instruction in guided.column("problem").to_pylist()[0]


def test_card_lists_decontamination(tmp_path):
    card = render_card(make_build(tmp_path))
    assert "| omni-math-x | aime2025 | aime2025-I-1 | exact | 1.0 |" in card
    assert "aime2025 (30 items)" in card
    assert "not checked: hmmt_feb_2025" in card


def test_missing_run_config_and_records_give_na(tmp_path):
    out = make_build(tmp_path, run_config=False, decontam=False, image=False)
    card = render_card(out)
    meta = _front_matter(card)
    assert meta["license"] == "other"
    assert "temperature n/a" in card and "k = n/a" in card
    assert "was not checked against evaluation sets" in card
    assert "![prefix fractions]" not in card


@pytest.mark.parametrize("source, license_id", [("dapo", "apache-2.0"), ("synthetic", "apache-2.0"),
                                                ("generic", "other")])
def test_license_is_inherited_from_the_source(tmp_path, source, license_id):
    out = make_build(tmp_path, source=source)
    assert _front_matter(render_card(out))["license"] == license_id
    assert _front_matter(render_card(out, license="cc-by-4.0"))["license"] == "cc-by-4.0"


def test_empty_splits_are_left_out(tmp_path):
    out = make_build(tmp_path, validation_fraction=0.0)
    files = published_files(out)
    assert all(set(splits) == {"train"} for splits in files.values())
    card = render_card(out)
    meta = _front_matter(card)
    assert all([d["split"] for d in c["data_files"]] == ["train"] for c in meta["configs"])
    assert "data.train_files=" in card and "data.val_files=" not in card


def test_folder_without_export_is_refused(tmp_path):
    with pytest.raises(DataError, match="no export/ folder"):
        published_files(tmp_path)


def test_redact_command_and_size_category():
    assert redact_command("x/bin/pope-data build --token=hf_abc --api-key sk1 --k 4") == (
        "pope-data build --token=*** --api-key *** --k 4")
    assert [size_category(n) for n in (0, 999, 1000, 17_000, 250_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M"]
