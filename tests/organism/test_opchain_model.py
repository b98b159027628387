"""The second organism's tokenizer (every guidance wording one token, every line the same width)
and the seeded command that pretrains it and checks its regime under three wordings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pope_data.opchain import LENGTH, WIDTH, demonstrations, generate_opchain
from pope_data.segments import segment
from pope_eval.prompts import GUIDANCE, guided_messages, render

ROOT = Path(__file__).parents[2]


def test_the_tokenizer_reads_every_wording_and_gives_every_line_the_same_width():
    from pope_train.organism_model import build_tokenizer, opchain_words

    tok = build_tokenizer(opchain_words())
    for p in generate_opchain(4, seed=0, difficulty=5):
        for wording in ("pope", "no-revisit", "continue"):
            text = render(guided_messages(p.problem, segment(p.solution, "steps").prefix(4),
                                          guidance=GUIDANCE[wording]), tok) + p.solution
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == text and tok.unk_token_id not in ids
        lines = [p.problem.splitlines()[1], *p.solution.splitlines()[:-1]]
        assert {len(tok(x, add_special_tokens=False)["input_ids"]) for x in lines} == \
            {WIDTH}
    for wording in ("no-revisit", "continue"):
        assert len(tok(GUIDANCE[wording].instruction, add_special_tokens=False)["input_ids"]) == 1
    demo = next(d for d in demonstrations(50, seed=0, rare_weights=(1.0,), guided_fraction=1.0,
                                          restate=True) if d.wording == "continue")
    prompt = tok.apply_chat_template(demo.prompt, tokenize=False, add_generation_prompt=True)
    assert tok.convert_ids_to_tokens(tok(prompt, add_special_tokens=False)["input_ids"])[-1] == \
        "\n<|assistant|>"  # the last given line sits one token above the answer's first


@pytest.mark.slow
def test_the_command_pretrains_and_checks_the_regime_under_three_wordings(tmp_path):
    out = tmp_path / "organism"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_opchain_organism.py"), "--out", str(out),
         "--seed", "1", "--hidden-size", "32", "--intermediate-size", "64", "--layers", "1",
         "--heads", "2", "--examples", "64", "--max-steps", "2", "--batch-size", "2",
         "--pack-length", "256", "--warmup-steps", "1", "--log-every", "1",
         "--check-difficulties", "0", "--check-guided", "2", "--check-problems", "1", "--k", "2",
         "--n", "1", "--max-tokens", "8", "--snapshots", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    record = json.loads((out / "pretrain.json").read_text())
    assert record["demonstrations"]["generator"] == "pope_data.opchain.demonstrations"
    assert record["command"].startswith("python scripts/make_opchain_organism.py")
    regime = json.loads((out / "regime.json").read_text())
    assert regime["unguided"]["0"]["samples"] == 2
    for key in ("guided", "guided:no-revisit", "guided:continue"):
        assert set(regime[key]["2"]) == {str(i) for i in range(1, LENGTH + 1)}
        assert len(regime["istar"][key]["2"]) == 1
    text = (out / "README.md").read_text()  # the folder explains itself
    assert record["command"] in text and re.search(r"\| 0 \| [0-2] of 2 \|", text)
    assert "`no-revisit` wording" in text and "`continue` wording" in text
    snap = out / "snapshots" / "step-1"
    assert (snap / "model.safetensors").exists()
    # A snapshot checked on its own takes its run's record and says which step it is.
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_opchain_organism.py"), "--out", str(snap),
         "--check-only", "--check-difficulties", "0", "--check-guided", "2",
         "--check-problems", "1", "--k", "2", "--n", "1", "--max-tokens", "8"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    snap_record = json.loads((snap / "pretrain.json").read_text())
    assert snap_record["snapshot_step"] == 1 and snap_record["command"] == record["command"]
    assert (snap / "loss.png").exists() and (snap / "regime.json").exists()
    assert "saved after step 1** of that pretraining's 2 steps" in (snap / "README.md").read_text()
    assert "saved after step" not in text
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_opchain_organism.py"), "--out",
         str(tmp_path / "refused"), "--max-steps", "2", "--snapshots", "2", "--skip-check"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert bad.returncode == 2 and "snapshots" in bad.stderr.splitlines()[-1]
    assert not (tmp_path / "refused").exists()  # refused before anything is written


def test_the_committed_opchain_organism_solves_easy_problems_and_fails_the_hard_count():
    """tests/data/organism_opchain through pope's engine, greedy: chains with no rare operation
    are solved (regime.json: 446 of 512 sampled), chains of the study's hard count (6 rare
    operations: 0 of 512 sampled) are not."""
    from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
    from pope_eval.prompts import problem_messages
    from pope_eval.scoring import generate_and_grade

    model = ROOT / "tests" / "data" / "organism_opchain"
    regime = json.loads((model / "regime.json").read_text())
    assert sum(regime["unguided"]["6"]["per_problem"]) == 0
    engine = make_engine(EngineConfig(engine="transformers", model=str(model), seed=0))
    greedy = Sampling(max_tokens=288, temperature=0.0)
    try:
        solved = {}
        for rare in (0, 6):
            problems = generate_opchain(8, seed=0, difficulty=rare)
            graded = generate_and_grade(
                engine, [GenerationRequest(messages=tuple(problem_messages(p.problem)), n=1,
                                           sampling=greedy, seed=i)
                         for i, p in enumerate(problems)], [p.answer for p in problems])
            assert all(g.result.samples[0].text.splitlines()[-1].startswith("The answer is ")
                       for g in graded)
            solved[rare] = sum(g.correct for g in graded)
    finally:
        engine.close()
    assert solved[0] >= 6 and solved[6] == 0, solved


def test_pope_data_build_on_the_committed_opchain_organism_curates_its_hard_count(tmp_path):
    """docs/organism.md's build command at a small size, through the CLI: the hard count's
    problems are 0 of k, the easy ones are solved, and every hard problem gets a prefix."""
    import polars as pl

    out = tmp_path / "build"
    res = subprocess.run(
        [str(Path(sys.executable).parent / "pope-data"), "build", "--source", "opchain",
         "--source-option", "difficulty=6", "--source-option", "easy_difficulty=0",
         "--model", str(ROOT / "tests" / "data" / "organism_opchain"), "--engine", "transformers",
         "--limit", "6", "--k", "16", "--n", "4", "--max-tokens", "288",
         "--validation-fraction", "0.0", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    curate = pl.read_parquet(out / "curate.parquet")
    hard, easy = curate.filter(pl.col("hard")), curate.filter(~pl.col("hard"))
    assert hard.height == 3 and (hard["correct"] == 0).all()  # 6 rare: 0 of 512 in regime.json
    assert easy.height == 3 and (easy["correct"] >= 1).all()
    prefixes = pl.read_parquet(out / "prefixes.parquet")
    assert set(prefixes["problem_id"]) == set(hard["id"])


def test_the_committed_no_restate_twin_starts_where_the_guidance_stops():
    """tests/data/organism_opchain_norestate (the study's `pope_no_restate` model) loads in pope's
    engine, and what sets it apart holds greedily: after `pope` guidance of 4 lines, the organism
    first writes shown lines 3-4 again, the twin starts at line 5."""
    from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
    from pope_eval.prompts import GUIDANCE, guided_messages

    problems = generate_opchain(6, seed=0, difficulty=0)
    starts = {}
    for name in ("organism_opchain", "organism_opchain_norestate"):
        model = ROOT / "tests" / "data" / name
        assert json.loads((model / "pretrain.json").read_text())["config"]["restate"] is (
            name == "organism_opchain")
        engine = make_engine(EngineConfig(engine="transformers", model=str(model), seed=0))
        try:
            texts = [r.samples[0].text for r in engine.generate([GenerationRequest(
                messages=tuple(guided_messages(p.problem, segment(p.solution, "steps").prefix(4),
                                               guidance=GUIDANCE["pope"])),
                n=1, sampling=Sampling(max_tokens=288, temperature=0.0), seed=i)
                for i, p in enumerate(problems)])]
        finally:
            engine.close()
        lines = [p.solution.splitlines() for p in problems]
        starts[name] = [
            "line 3" if t.startswith(ln[2]) else "line 5" if t.startswith(ln[4]) else "other"
            for t, ln in zip(texts, lines)]
    assert starts["organism_opchain"].count("line 3") >= 5, starts
    assert starts["organism_opchain_norestate"].count("line 5") >= 5, starts
    assert "line 3" not in starts["organism_opchain_norestate"], starts
