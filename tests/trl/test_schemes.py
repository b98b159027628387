"""Guidance schemes (pope_train.guidance): the registry, each scheme's rule on a small scripted build,
the TRL seam's refusal, the zero-advantage accounting, and 2 real TRL steps per scheme.

The pure rules run on `scripted_build` (a real `pope-data build` folder answered by a scripted
engine: problem j has i* = (j % 3) + 1), not behind the organism study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pope_cli.options import option_flags
from pope_cli.train import app
from typer.testing import CliRunner

from pope_eval.engines import Sampling
from pope_eval.errors import ConfigError, DataError
from pope_train.backends.trl.backend import TrlConfig
from pope_train.backends.trl.metrics import STEP_FIELDS, read_metrics
from pope_train.backends.trl.options import TrlOptions
from pope_train.backends.trl.trainer import check_trl_seam, zero_advantage, zero_advantage_metrics
from pope_train.guidance import SCHEMES, Runtime, Setup
from pope_train.guidance.table import GroupHints, ratio_prefix
from pope_train.recipes import RECIPES
from tests.trl.conftest import scripted_build

ROOT = Path(__file__).resolve().parents[2]
ORGANISM = ROOT / "tests" / "data" / "organism"
runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return scripted_build(tmp_path_factory.mktemp("schemes"))


def _scheme(name: str, export: Path, tmp: Path | None = None, max_steps: int = 10, **options):
    import pyarrow.parquet as pq

    hard = {r["problem_id"] for r in pq.read_table(export / "prefixes" / "train.parquet")
            .to_pylist()}
    cls = SCHEMES[name]
    scheme = cls.plan(Setup(config=name, export_dir=str(export), hard_ids=frozenset(hard),
                            model="m", seed=0, max_steps=max_steps,
                            sampling=Sampling(max_tokens=16), batch_size=8),
                      cls.options(**options))
    if tmp is not None:
        scheme.start(Runtime(out_dir=tmp, group=4, count_tokens=len, write=lambda r: None,
                             say=lambda line: None))
    return scheme


def _mix(export: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(export / "mix" / "train.parquet").to_pylist()


# -- the registry and the options --------------------------------------------------------------

def test_every_recipe_names_a_scheme_and_every_scheme_option_is_a_trl_flag():
    assert {r.guidance for r in RECIPES.values()} <= set(SCHEMES)
    assert {"static", "online", "ratio", "ghpo", "adaptive", "shorter", "istar_ratio"} <= \
        set(SCHEMES)
    flags = option_flags(TrlOptions)
    for flag in ("--refresh-every", "--ratio-schedule", "--ghpo-ratios", "--istar-schedule",
                 "--adaptive-shorten-at", "--adaptive-lengthen-at", "--adaptive-step",
                 "--adaptive-graduate"):
        assert flag in flags


@pytest.mark.parametrize("kwargs, message", [
    ({"config": "pope", "adaptive_step": 2}, "--adaptive-step: applies to config pope_adaptive"),
    ({"config": "pope_adaptive", "refresh_every": 3},
     "--refresh-every: applies to config pope_online"),
    ({"config": "pope_online", "refresh_every": 0}, "--refresh-every: must be >= 1"),
    ({"config": "pope_adaptive", "adaptive_shorten_at": 0.0}, "--adaptive-shorten-at"),
    ({"config": "pope_adaptive", "adaptive_lengthen_at": 1.0}, "--adaptive-lengthen-at"),
    ({"config": "fixed_ratio_istar", "istar_schedule": (0.5, 0.25)}, "--istar-schedule"),
    ({"config": "pope", "max_steps": 0}, "--max-steps: must be >= 1"),
])
def test_training_option_errors_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrlConfig(**{"model": "m", "export_dir": "x", **kwargs})


def test_the_cli_refuses_an_option_of_another_scheme_by_its_flag(export, tmp_path):
    res = runner.invoke(app, ["run", "pope", "--backend", "trl", "--model", str(ORGANISM),
                              "--export", str(export), "--out", str(tmp_path / "o"),
                              "--refresh-every", "0", "--dry-run"])
    assert res.exit_code == 2
    assert "--refresh-every: must be >= 1" in " ".join(res.output.split())


# -- the schemes' rules on a small build -------------------------------------------------------

def test_static_shorter_and_istar_ratio_start_where_they_say(export):
    static, shorter = _scheme("static", export), _scheme("shorter", export)
    istar = _scheme("istar_ratio", export, max_steps=10)
    rows = _mix(export)
    assert static.rows(rows, 0) == rows  # the export's own rows
    for row in rows:
        info = row["extra_info"]
        if not info["guided"]:
            assert shorter.rows([row], 0) == [row]
            continue
        start = static.problems[info["problem_id"]].start
        assert start == info["prefix_segments"]
        assert shorter.rows([row], 0)[0]["extra_info"]["prefix_segments"] == max(start - 1, 1)
        assert istar.rows([row], 0)[0]["prompt"] == row["prompt"]  # phase 1 is i* itself
        later = istar.rows([row], 9)[0]["extra_info"]["prefix_segments"]
        assert 1 <= later <= start
    assert shorter.describe()["prefix"] != static.describe()["start_prefix"]


def test_a_build_with_fallback_prefixes_starts_every_scheme_at_the_cuts_whole_segments(tmp_path):
    # max prefix 0.2: the problems whose i* is 2 or 3 lines fall back to a random cut under 1/4,
    # which ends inside a line; the schemes that move prefixes by segments must still load it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    export = scripted_build(tmp_path / "b", max_prefix_fraction=0.2)
    rows = {r["problem_id"]: r for r in pq.read_table(export / "prefixes" / "train.parquet")
            .to_pylist()}
    fallbacks = {pid for pid, r in rows.items() if r["fallback"]}
    assert fallbacks and fallbacks != set(rows)
    for name in ("online", "adaptive", "ghpo", "ratio", "istar_ratio", "shorter"):
        problems = _scheme(name, export).problems
        assert set(problems) == set(rows)
        for pid in fallbacks:
            p, cut = problems[pid], rows[pid]["prefix_text"]
            assert not p.found and 1 <= p.start < len(p.segmentation)
            assert p.segmentation.text.startswith(cut)
            # the whole segments within the cut, or the first one when the cut ends inside it
            assert len(p.segmentation.prefix(p.start)) <= len(cut) or p.start == 1
            assert len(p.segmentation.prefix(p.start + 1)) > len(cut)
    # static guidance shows the rows as exported, and counts what they show: the cut itself for
    # a fallback (its row has no whole segment), i*'s segments otherwise
    static = _scheme("static", export, tmp_path / "run")
    guided = [r for r in _rows(export, "mix") if r["extra_info"].get("guided")]
    assert {r["extra_info"]["problem_id"] for r in guided} == set(rows)
    for r in guided:
        text = rows[r["extra_info"]["problem_id"]]["prefix_text"]
        assert text and text in r["prompt"][-1]["content"]
        assert static.shown([r], 1) == len(text)  # the test's token count is len
    # a found prefix that the solution does not give back is still refused
    original = pq.read_table(export / "prefixes" / "train.parquet")
    table = original.to_pylist()
    found = next(r for r in table if not r["fallback"])
    found["prefix_text"] += " changed"
    pq.write_table(pa.Table.from_pylist(table, schema=original.schema),
                   export / "prefixes" / "train.parquet")
    with pytest.raises(DataError, match="does not give back the exported prefix"):
        _scheme("online", export)


def test_a_one_segment_solution_is_never_shown_whole_by_any_scheme(tmp_path):
    # A solution of one segment (one line) has no prefix short of the answer: the build falls
    # back to a cut inside it, and every scheme that moves prefixes by segments shows it unguided.
    import pyarrow as pa
    import pyarrow.parquet as pq

    export = scripted_build(tmp_path / "b", max_prefix_fraction=0.2)
    prefixes = pq.read_table(export / "prefixes" / "train.parquet")
    rows = prefixes.to_pylist()
    row = next(r for r in rows if r["fallback"])
    problems = pq.read_table(export.parent / "problems.parquet")
    table = problems.to_pylist()
    source = next(r for r in table if r["id"] == row["problem_id"])
    source["solution"] = f"The answer is \\boxed{{{source['answer']}}}, from the sum of the terms."
    row.update(num_segments=1, prefix_text=source["solution"][:12])
    pq.write_table(pa.Table.from_pylist(table, schema=problems.schema),
                   export.parent / "problems.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=prefixes.schema),
                   export / "prefixes" / "train.parquet")
    pid, solution = row["problem_id"], source["solution"]
    guided = next(r for r in _rows(export, "mix")
                  if r["extra_info"].get("guided") and r["extra_info"]["problem_id"] == pid)
    for name in ("online", "adaptive", "ghpo", "ratio", "istar_ratio", "shorter"):
        scheme = _scheme(name, export)
        assert len(scheme.problems[pid].segmentation) == 1 and scheme.problems[pid].start == 0
        shown = (scheme.prefix_at(pid, 0) if name in ("ratio", "istar_ratio")
                 else scheme.table.prefix[pid])
        assert shown == 0, name
        rendered = scheme.table.render(guided, shown)
        assert not rendered["extra_info"]["guided"], name
        assert solution not in rendered["prompt"][-1]["content"], name
    hints = GroupHints((0.25, 0.5, 1.0), _scheme("ghpo", export).table)
    for ratio in (0.25, 0.5, 1.0):
        hinted = hints.hinted(guided, ratio)
        assert hinted["extra_info"]["prefix_segments"] == 0
        assert solution not in hinted["prompt"][-1]["content"]


def _rows(export: Path, subset: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(export / subset / "train.parquet").to_pylist()


def test_a_ratio_prefix_is_the_longest_within_the_share_and_never_the_whole_solution(export):
    seg = next(iter(_scheme("ratio", export).problems.values())).segmentation
    for ratio in (0.25, 0.5, 0.75):
        i = ratio_prefix(seg, ratio)
        assert 1 <= i < len(seg)
        assert seg.fraction(i) <= ratio < seg.fraction(i + 1) or i == 1
    assert ratio_prefix(seg, 0.999) == len(seg) - 1  # the answer line is never shown


def test_hints_go_to_all_failed_groups_of_known_problems_only(export):
    table = _scheme("ghpo", export).table
    a, b = sorted(table.problems)[:2]
    rows = [{"extra_info": {"problem_id": pid}} for pid in (a, a, b, b, "other", "other")]
    hints = GroupHints((0.25, 0.5), table)
    # group 0 has a success, group 1 failed entirely, group 2 failed but has no solution
    assert hints.failed_groups([0, 1, 0, 0, 0, 0], rows, 2) == [1]
    assert hints.failed_groups([1, 1, 1, 0, 0, 0], rows, 2) == []
    with pytest.raises(ValueError, match="not one prompt's group"):
        hints.failed_groups([0] * 4, rows[1:5], 2)
    hinted = hints.hinted({**_rows(export, "hard")[0]}, 0.5)
    assert hinted["extra_info"]["guided"] and hinted["extra_info"]["hint_ratio"] == 0.5
    assert "<partial_solution>" in hinted["prompt"][-1]["content"]


def test_the_table_renders_the_exports_own_rows_and_a_graduate_as_its_unguided_prompt(export):
    table = _scheme("online", export).table
    unguided = {r["extra_info"]["problem_id"]: r["prompt"] for r in _rows(export, "hard")}
    for row in _rows(export, "mix"):
        pid = row["extra_info"]["problem_id"]
        assert table.render(row)["prompt"] == row["prompt"]  # the build's prefix, unchanged
        if row["extra_info"]["guided"]:
            graduated = table.render(row, 0)
            assert graduated["prompt"] == unguided[pid]
            assert graduated["extra_info"]["graduated"] and not graduated["extra_info"]["guided"]


def _group(pid: str, guided: bool, scores: list[float]) -> tuple[list[dict], list[float]]:
    return [{"extra_info": {"problem_id": pid, "guided": guided}}] * len(scores), scores


def _observe(scheme, step: int, *groups) -> dict:
    rows, scores = [], []
    for g in groups:
        rows += g[0]
        scores += g[1]
    return scheme.observe(rows, scores, step)


def test_adaptive_shortens_lengthens_up_to_the_probed_cap_and_graduates(export, tmp_path):
    s = _scheme("adaptive", export, tmp_path)
    start = dict(s.table.prefix)
    a, b, c = sorted(start)[:3]
    assert all(s.cap[p] >= start[p] for p in start)
    s.table.prefix[a] = 2
    m = _observe(s, 0, _group(a, True, [1, 1, 1, 1]),  # all correct: one shorter
                 _group(b, True, [0, 1, 0, 0]))  # mixed: kept
    assert s.table.prefix[a] == 1 and s.table.prefix[b] == start[b]
    assert m["adaptive_shortened"] == 1 and m["adaptive_lengthened"] == 0
    _observe(s, 1, _group(a, True, [1, 1, 1, 1]))
    assert s.table.prefix[a] == 1  # never below one segment by moves
    # all wrong: one longer each step, never past the longest prefix the build probed
    for step in range(2, 2 + s.cap[c] + 2):
        _observe(s, step, _group(c, True, [0, 0, 0, 0]))
    assert s.table.prefix[c] == s.cap[c]
    m = _observe(s, 20, _group(c, True, [0, 0, 0, 0]))
    assert m["adaptive_capped"] == 1 and s.table.prefix[c] == s.cap[c]
    # an unguided success graduates: the guided row becomes the unguided prompt, for good
    m = _observe(s, 21, _group(b, False, [0, 0, 1, 0]))
    assert s.table.prefix[b] == 0 and m["adaptive_new_graduates"] == 1
    _observe(s, 22, _group(b, True, [0, 0, 0, 0]))
    assert s.table.prefix[b] == 0
    guided_b = next(r for r in _mix(export) if r["extra_info"]["problem_id"] == b
                    and r["extra_info"]["guided"])
    unguided_b = next(r for r in _mix(export) if r["extra_info"]["problem_id"] == b
                      and not r["extra_info"]["guided"])
    assert s.rows([guided_b], 23)[0]["prompt"] == unguided_b["prompt"]
    # every step is journaled with the table and what moved
    lines = [json.loads(x) for x in (tmp_path / "guidance" / "adaptive.jsonl").read_text()
             .splitlines()]
    assert [x["step"] for x in lines][:2] == [1, 2] and lines[-1]["prefix"] == s.table.prefix
    assert lines[0]["shortened"] == {a: [2, 1]} and lines[-2]["graduates"] == [b]
    assert sum(lines[-1]["histogram"].values()) == len(start)


def test_adaptive_resumes_from_its_state_to_the_same_moves(export, tmp_path):
    outcomes = [
        lambda p: (_group(p[0], True, [1, 1, 1, 1]), _group(p[1], True, [0, 0, 0, 0])),
        lambda p: (_group(p[1], True, [0, 0, 0, 0]), _group(p[2], False, [1, 0, 0, 0])),
        lambda p: (_group(p[0], True, [0, 0, 0, 0]), _group(p[1], True, [1, 1, 1, 1])),
    ]
    whole = _scheme("adaptive", export, tmp_path / "a")
    pids = sorted(whole.table.prefix)
    for step, make in enumerate(outcomes):
        _observe(whole, step, *make(pids))
    first = _scheme("adaptive", export, tmp_path / "b")
    _observe(first, 0, *outcomes[0](pids))
    saved = json.loads(json.dumps(first.state()))
    resumed = _scheme("adaptive", export, tmp_path / "c")
    resumed.load_state(saved)
    for step, make in enumerate(outcomes[1:], start=1):
        _observe(resumed, step, *make(pids))
    assert resumed.table.prefix == whole.table.prefix
    assert resumed.state() == whole.state()


def test_ghpo_names_all_failed_groups_round_by_round(export, tmp_path):
    s = _scheme("ghpo", export, tmp_path)
    rows = [r for r in _mix(export) if not r["extra_info"]["guided"]][:2]
    batch = [rows[0]] * 4 + [rows[1]] * 4
    s.rows(batch, 0)
    redo = s.regenerate(batch, [0, 0, 0, 0, 0, 1, 0, 0], 0, 0)
    assert list(redo) == [0] and all(r["extra_info"]["hint_ratio"] == 0.25 for r in redo[0])
    assert s.regenerate(batch, [0, 0, 0, 0, 0, 1, 0, 0], 3, 0) == {}  # no share left
    assert s.observe(batch, [0] * 8, 0) == {"hinted_groups": 1.0, "hint_rounds": 1.0}


def test_online_searches_in_the_main_process_only_and_every_process_takes_its_table(export,
                                                                                   tmp_path):
    s = _scheme("online", export, refresh_every=1)
    main_table = {pid: 1 for pid in s.table.prefix}
    s.start(Runtime(out_dir=tmp_path, group=4, count_tokens=len, write=lambda r: None,
                    say=lambda line: None, main=False, share=lambda value: main_table))

    def no_generation():
        raise AssertionError("a process other than the main one generated")

    s.after_step(1, 10, no_generation)
    assert s.table.prefix == main_table
    s.after_step(10, 10, no_generation)  # never after the last step
    s.finish()
    assert not (tmp_path / "guidance").exists()  # the main process writes the journal


# -- the TRL seam ----------------------------------------------------------------------------

def test_the_seam_refuses_a_trl_without_the_hooked_method(monkeypatch, export, tmp_path):
    import importlib.metadata

    from trl import GRPOTrainer

    check_trl_seam()  # the installed TRL has it
    version = importlib.metadata.version("trl")
    monkeypatch.delattr(GRPOTrainer, "_calculate_rewards")
    with pytest.raises(ConfigError, match=f"TRL {version}'s GRPOTrainer has no "
                                          "_calculate_rewards") as err:
        check_trl_seam()
    assert "\n" not in str(err.value) and "pip install 'trl" in str(err.value)
    res = runner.invoke(app, ["run", "pope", "--backend", "trl", "--model", str(ORGANISM),
                              "--export", str(export), "--out", str(tmp_path / "o"),
                              "--dry-run"])
    assert res.exit_code == 2 and "_calculate_rewards" in res.output
    assert not (tmp_path / "o").exists()


def test_the_seam_refuses_a_changed_signature(monkeypatch):
    from trl import GRPOTrainer

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions",
                        lambda self, inputs, mode: None)
    with pytest.raises(ConfigError, match=r"has _generate_and_score_completions\(self, inputs, "
                                          r"mode\), not"):
        check_trl_seam()


# -- zero-advantage accounting -----------------------------------------------------------------

def test_zero_advantage_counts_groups_and_tokens_without_gradient():
    scores = [1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0]  # groups of 2: correct, mixed, wrong, ...
    guided = [True] * 6 + [False] * 6
    adv = torch.tensor([0, 0, 1, -1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.float)
    mask = torch.ones(12, 3)
    mask[0, 2] = 0
    c = zero_advantage(scores, guided, 2, adv, mask)
    assert c == [6, 5, 2, 3, 3, 2, 3, 3, 35, 29]
    m = zero_advantage_metrics(c)
    assert m["zero_spread_groups"] == pytest.approx(5 / 6)
    assert m["zero_spread_guided"] == pytest.approx(2 / 3) and m["zero_spread_unguided"] == 1
    assert m["zero_spread_all_correct"] + m["zero_spread_all_wrong"] == pytest.approx(
        m["zero_spread_groups"])
    assert m["zero_gradient_tokens"] == pytest.approx(29 / 35)


# -- two real TRL steps per scheme, through the command line -------------------------------------

SCHEME_FIELDS = {
    "pope": (), "pope_shorter": (), "fixed_ratio": (), "fixed_ratio_istar": (),
    "ghpo": ("hinted_groups", "hint_rounds"),
    "pope_online": (),
    "pope_adaptive": ("adaptive_shortened", "adaptive_lengthened", "adaptive_capped",
                      "adaptive_new_graduates", "adaptive_graduated", "adaptive_prefix_mean"),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(SCHEME_FIELDS))
def test_two_steps_per_scheme_log_the_accounting_and_the_schemes_fields(recipe, export,
                                                                        tmp_path):
    out = tmp_path / "run"
    extra = ["--refresh-every", "1", "--refresh-n", "2"] if recipe == "pope_online" else []
    res = runner.invoke(app, ["run", recipe, "--backend", "trl", "--model", str(ORGANISM),
                              "--export", str(export), "--out", str(out), "--max-steps", "2",
                              "--prompts-per-step", "2", "--num-generations", "4",
                              "--max-completion-length", "32", *extra])
    assert res.exit_code == 0, res.output
    records = read_metrics(out / "metrics.jsonl")
    steps = [r for r in records if "step" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert set(r) == {"step", *STEP_FIELDS, *SCHEME_FIELDS[recipe]}
        assert r["rollout_tokens"] > 0 and 0 <= r["zero_spread_groups"] <= 1
        assert 0 <= r["zero_gradient_tokens"] <= 1
        assert r["zero_spread_groups"] == pytest.approx(
            r["zero_spread_all_correct"] + r["zero_spread_all_wrong"])
    config = json.loads((out / "run_config.json").read_text())
    assert config["guidance"]["kind"] == RECIPES[recipe].guidance
    if recipe == "pope_online":
        refreshes = [r for r in records if "refresh_step" in r]
        assert [r["refresh_step"] for r in refreshes] == [1]
        assert "refresh at step 1:" in res.output  # one console line per refresh
    if recipe == "pope_adaptive":
        table = (out / "guidance" / "adaptive.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in table] == [1, 2]


# -- the seam changes nothing a static run does --------------------------------------------------

# `pope` on three organism problems, 3 steps, measured before the scheme interface existed
# (commit 04fb621, plain GRPOTrainer for a run without a build folder): the seam's trainer must
# reproduce it step for step (its final weights were byte-identical too).
PRE_SEAM_POPE = [
    {"reward": 0.0625, "loss": -0.008396525867283344, "grad_norm": 0.15630576014518738,
     "entropy": 0.08752147853374481, "response_length": 55.25, "clipped_ratio": 0.125},
    {"reward": 0.0, "loss": 0.0, "grad_norm": 0.0, "entropy": 0.0010873228311538696,
     "response_length": 64.0, "clipped_ratio": 1.0},
    {"reward": 0.0, "loss": 0.0, "grad_norm": 0.0, "entropy": 0.049968838691711426,
     "response_length": 62.3125, "clipped_ratio": 0.625},
]


@pytest.mark.slow
def test_pope_reproduces_the_run_from_before_the_seam_step_for_step(tmp_path):
    from pope_data.organism import generate_organism
    from pope_train.backends.trl.backend import plan_trl, train
    from tests.trl.conftest import make_export

    problems = generate_organism(3, seed=0, difficulty=4)
    steps = problems[0].solution.splitlines()
    export = make_export(tmp_path / "data", easy=0, problems=problems,
                         prefix_steps=len(steps) - 2)
    plan = plan_trl(TrlConfig(config="pope", model=str(ORGANISM), export_dir=str(export),
                              out_dir=str(tmp_path / "run"), max_steps=3, prompts_per_step=2,
                              num_generations=8, max_completion_length=64, save_steps=10,
                              learning_rate=1e-4, seed=0))
    result = train(plan)
    records = read_metrics(result.metrics)
    assert len(records) == len(PRE_SEAM_POPE)
    for got, want in zip(records, PRE_SEAM_POPE):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    # the accounting agrees with TRL's own count of zero-spread groups
    assert [r["zero_spread_groups"] for r in records] == [r["reward_zero_std"] for r in records]
    assert records[0]["zero_spread_guided"] == 0.5 and records[0]["zero_gradient_tokens"] < 1
