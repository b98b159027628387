"""The organism model: its tokenizer, the committed organism through pope's engine, pretraining.

The committed organism (tests/data/organism/, made by the command in its README.md) must load with
`--model PATH` like any Hugging Face folder and solve easy problems of its task family.
"""

import json
from pathlib import Path

import pytest

from pope_data.organism import (
    OPERATIONS,
    WIDTH,
    demonstrations,
    generate_organism,
)
from pope_data.segments import segment
from pope_eval.prompts import GUIDED_INSTRUCTION, MATH_INSTRUCTION, guided_messages, render

ORGANISM = Path(__file__).parents[1] / "data" / "organism"


@pytest.fixture(scope="module")
def tokenizer():
    from pope_train.organism_model import build_tokenizer

    return build_tokenizer()


def test_tokenizer_round_trips_pope_prompts_and_gives_every_line_the_same_width(tokenizer):
    for p in generate_organism(5, seed=0, difficulty=7):
        text = render(guided_messages(p.problem, segment(p.solution, "steps").prefix(3)),
                      tokenizer) + p.solution
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids
        lines = [p.problem.splitlines()[1], *p.solution.splitlines()[:-1]]
        assert {len(tokenizer(x, add_special_tokens=False)["input_ids"]) for x in lines} == {WIDTH}
    for phrase in (MATH_INSTRUCTION, GUIDED_INSTRUCTION, *OPERATIONS[:3], *OPERATIONS[-3:]):
        assert len(tokenizer(phrase, add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("guided_fraction", [0.0, 1.0])
def test_the_answer_starts_one_line_below_the_last_line_of_the_prompt(tokenizer, guided_fraction):
    # The prompt's end and the assistant marker are one token, so the last line of the problem
    # (or of the guidance) and the answer's first line are WIDTH + 1 tokens apart, like any two
    # lines of a solution; the assistant turn ends with the EOS.
    for demo in demonstrations(6, seed=0, difficulties=(3, 5), guided_fraction=guided_fraction,
                               restate=False):
        prompt = tokenizer.apply_chat_template(demo.prompt, tokenize=False,
                                               add_generation_prompt=True)
        text = tokenizer.apply_chat_template(demo.prompt + demo.completion, tokenize=False)
        assert text == prompt + demo.completion[0]["content"] + tokenizer.eos_token
        content = demo.prompt[0]["content"]
        shown = content.split("</partial_solution>")[0] if demo.shown else content.split("\n\n")[0]
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        last_line = tokenizer(shown.rstrip("\n").splitlines()[-1],
                              add_special_tokens=False)["input_ids"]
        assert len(last_line) == WIDTH
        assert ids[-WIDTH - 1:-1] == last_line
        assert tokenizer.decode(ids[-1:]).endswith("<|assistant|>")


def test_committed_organism_is_a_small_plain_model_folder():
    files = {f.name: f.stat().st_size for f in ORGANISM.iterdir() if f.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "README.md", "pretrain.json", "loss.png", "regime.json"} <= set(files)
    assert sum(files.values()) <= 5 * 2**20
    config = json.loads((ORGANISM / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    tok_config = json.loads((ORGANISM / "tokenizer_config.json").read_text())
    assert "<|assistant|>" in tok_config["chat_template"]
    record = json.loads((ORGANISM / "pretrain.json").read_text())
    assert record["parameters"] < 2_000_000 and record["loss_curve"]


def test_committed_organism_generates_through_pope_and_solves_easy_problems():
    from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
    from pope_eval.models import resolve_model
    from pope_eval.prompts import problem_messages
    from pope_eval.scoring import generate_and_grade

    assert resolve_model(str(ORGANISM)).is_local
    engine = make_engine(EngineConfig(engine="transformers", model=str(ORGANISM), seed=0))
    try:
        problems = generate_organism(8, seed=0, difficulty=1)
        greedy = Sampling(max_tokens=64, temperature=0.0)
        graded = generate_and_grade(
            engine, [GenerationRequest(messages=tuple(problem_messages(p.problem)), n=1,
                                       sampling=greedy, seed=i) for i, p in enumerate(problems)],
            [p.answer for p in problems])
    finally:
        engine.close()
    texts = [g.result.samples[0].text for g in graded]
    assert all(g.result.samples[0].finish_reason == "stop" for g in graded)
    assert all(t.splitlines()[-1].startswith("The answer is ") for t in texts)
    assert sum(g.correct for g in graded) >= 6  # regime.json: easy problems are mostly solved


@pytest.mark.slow
def test_pretraining_writes_a_model_folder_that_pope_loads(tmp_path):
    from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
    from pope_eval.prompts import problem_messages
    from pope_train.organism_model import OrganismConfig, pretrain

    cfg = OrganismConfig(hidden_size=32, intermediate_size=64, layers=1, heads=2, examples=64,
                         max_steps=3, batch_size=2, pack_length=256, warmup_steps=1, log_every=1)
    record = pretrain(cfg, tmp_path / "organism")
    assert [p["step"] for p in record["loss_curve"]] == [1, 2, 3]
    assert record["demonstrations"]["count"] == 64
    assert (tmp_path / "organism" / "loss.png").stat().st_size > 0
    assert not (tmp_path / "organism" / ".trainer").exists()
    engine = make_engine(EngineConfig(engine="transformers", model=str(tmp_path / "organism")))
    try:
        problem = generate_organism(1, difficulty=2)[0].problem
        out = engine.generate([GenerationRequest(messages=tuple(problem_messages(problem)), n=2,
                                                 sampling=Sampling(max_tokens=8), seed=0)])
    finally:
        engine.close()
    assert len(out[0].samples) == 2 and all(1 <= s.tokens <= 8 for s in out[0].samples)


def test_snapshots_are_model_folders_and_leave_the_final_model_unchanged(tmp_path):
    from safetensors.numpy import load_file

    from pope_eval.errors import ConfigError
    from pope_train.organism_model import OrganismConfig, pretrain

    tiny = dict(hidden_size=32, intermediate_size=64, layers=1, heads=2, examples=64, max_steps=4,
                batch_size=2, pack_length=256, warmup_steps=1, log_every=1, threads=1)
    pretrain(OrganismConfig(**tiny), tmp_path / "plain")
    record = pretrain(OrganismConfig(**tiny, snapshots=(1, 3)), tmp_path / "snap")
    assert list(record["config"]["snapshots"]) == [1, 3]
    final, plain = load_file(tmp_path / "snap" / "model.safetensors"), \
        load_file(tmp_path / "plain" / "model.safetensors")
    assert all((final[k] == plain[k]).all() for k in plain)  # saving took nothing from training
    early = [load_file(tmp_path / "snap" / "snapshots" / f"step-{n}" / "model.safetensors")
             for n in (1, 3)]
    assert not all((early[0][k] == early[1][k]).all() for k in plain)  # two points of training
    assert (tmp_path / "snap" / "snapshots" / "step-3" / "tokenizer_config.json").exists()
    for bad in ((4,), (0,), (2, 2)):
        with pytest.raises(ConfigError, match="snapshots"):
            OrganismConfig(**tiny, snapshots=bad)


@pytest.mark.slow
def test_make_organism_command_pretrains_and_checks_the_regime(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "organism"
    root = Path(__file__).parents[2]
    res = subprocess.run(
        [sys.executable, str(root / "scripts" / "make_organism.py"), "--out", str(out),
         "--seed", "1", "--hidden-size", "32", "--intermediate-size", "64", "--layers", "1",
         "--heads", "2", "--examples", "64", "--max-steps", "2", "--batch-size", "2",
         "--pack-length", "256", "--warmup-steps", "1", "--log-every", "1",
         "--difficulties", "1,2", "--check-difficulties", "1", "--check-guided", "2",
         "--check-problems", "1", "--k", "2", "--n", "1", "--max-tokens", "8"],
        capture_output=True, text=True, cwd=root, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    record = json.loads((out / "pretrain.json").read_text())
    assert record["config"]["difficulties"] == [1, 2] and record["config"]["seed"] == 1
    regime = json.loads((out / "regime.json").read_text())
    assert regime["unguided"]["1"]["samples"] == 2
    assert set(regime["guided"]["2"]) == {"1", "2"}
    # A second run into the same folder is refused before anything is trained.
    again = subprocess.run([sys.executable, str(root / "scripts" / "make_organism.py"),
                            "--out", str(out)], capture_output=True, text=True, cwd=root,
                           timeout=600)
    assert again.returncode == 2 and "not an empty folder" in again.stderr
    assert "Traceback" not in again.stderr
