"""pope-data build's --guidance and --max-prefix-fraction, and the `level` of every exported row.

Builds run with the scripted engine (tests/pope_data/fake_engine.py), so each checks what the
engine was sent, the exported rows, the fingerprint and resume in a few seconds.
"""

import json

import polars as pl
import pytest

from pope_data.build import run_build
from pope_data.card import render_card
from pope_data.config import BuildConfig
from pope_data.export import CONFIGS, EASY, GUIDED, SPLITS, UNGUIDED
from pope_data.journal import Journal
from pope_data.segments import segment
from pope_data.shards import merge
from pope_eval.errors import ConfigError, DataError
from pope_eval.prompts import GUIDANCE, GUIDED_INSTRUCTION, guided_text
from tests.pope_data.test_build import _config, _engine, _problems_file

NO_REVISIT = GUIDANCE["no-revisit"]


def _rows(out, config):
    return pl.concat([pl.read_parquet(out / "export" / config / f"{s}.parquet")
                      for s in SPLITS]).to_dicts()


def test_every_exported_row_names_its_level(tmp_path):
    problems, path = _problems_file(tmp_path)
    run_build(_config(tmp_path, path), engine=_engine(problems))
    out = tmp_path / "out"
    expected = {"hard": {UNGUIDED}, "guided": {GUIDED}, "mix": {UNGUIDED, GUIDED},
                "easy": {EASY}}
    for config, levels in expected.items():
        rows = _rows(out, config)
        assert {r["level"] for r in rows} == levels, config
        for r in rows:
            assert r["level"] == (GUIDED if r["extra_info"]["guided"] else
                                  EASY if config == "easy" else UNGUIDED)
    assert set(expected) | {"prefixes"} == set(CONFIGS)


def test_guidance_words_the_probes_and_the_rows_and_enters_the_fingerprint(tmp_path):
    problems, path = _problems_file(tmp_path)
    default = run_build(_config(tmp_path / "a", path), engine=_engine(problems))
    engine = _engine(problems)
    config = _config(tmp_path / "b", path, guidance="no-revisit")
    other = run_build(config, engine=engine)
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    # The scripted engine finds the prefix whatever the wording: the same search, worded anew.
    assert other.counts == default.counts
    probes = [p for p in engine.prompts if "<partial_solution>" in p]
    assert probes and all(NO_REVISIT.instruction in p and GUIDED_INSTRUCTION not in p
                          for p in probes)
    text = {p.id: p.problem for p in problems}
    prefix = {r["problem_id"]: r["prefix_text"]
              for r in pl.read_parquet(b / "prefixes.parquet").to_dicts()}
    before = {r["extra_info"]["problem_id"]: r["problem"] for r in _rows(a, "guided")}
    for r in _rows(b, "guided"):
        pid = r["extra_info"]["problem_id"]
        assert r["problem"] == guided_text(text[pid], prefix[pid], NO_REVISIT) != before[pid]
        assert r["prompt"] == [{"role": "user", "content": r["problem"]}]
        assert (r["provenance"]["guidance"], r["provenance"]["guidance_sha256"]) == (
            "no-revisit", NO_REVISIT.sha256)
    assert _rows(a, "hard") == [
        {**r, "provenance": {**r["provenance"], "guidance": "pope",
                             "guidance_sha256": GUIDANCE["pope"].sha256}}
        for r in _rows(b, "hard")]
    # Name and digest in the fingerprint; the text beside it in run_config.json.
    assert config.fingerprint()["guidance"] == {"name": "no-revisit",
                                                "sha256": NO_REVISIT.sha256}
    run = json.loads((b / "run_config.json").read_text())
    assert run["config"]["guidance"]["sha256"] == NO_REVISIT.sha256
    assert run["guidance"]["instruction"] == NO_REVISIT.instruction
    assert json.loads((a / "run_config.json").read_text())["guidance"]["name"] == "pope"
    # A resumed build with another template is refused, either way round.
    with pytest.raises(ConfigError, match="guidance"):
        run_build(_config(tmp_path / "b", path), engine=_engine(problems))
    with pytest.raises(ConfigError, match="guidance"):
        run_build(_config(tmp_path / "a", path, guidance="continue"), engine=_engine(problems))


def test_default_guidance_and_cap_leave_the_fingerprint_of_older_folders(tmp_path):
    """Folders built before --guidance / --max-prefix-fraction hold neither key: they resume."""
    problems, path = _problems_file(tmp_path)
    config = _config(tmp_path, path)
    fp = config.fingerprint()
    assert "guidance" not in fp and "max_prefix_fraction" not in fp
    assert _config(tmp_path, path, guidance="pope", max_prefix_fraction=1.0).fingerprint() == fp
    run_build(config, engine=_engine(problems))
    out = tmp_path / "out"
    run = json.loads((out / "run_config.json").read_text())
    assert "guidance" not in run["config"] and "max_prefix_fraction" not in run["config"]
    engine = _engine(problems)
    run_build(_config(tmp_path, path, guidance="pope"), engine=engine)
    assert engine.calls == 0
    # A template file is named by its file name: the same file typed as another path is the
    # same template.
    txt = tmp_path / "mine.txt"
    txt.write_text("{problem}\nHint: {prefix}\n")
    mine = _config(tmp_path, path, guidance=str(txt)).fingerprint()["guidance"]
    assert mine["name"] == "mine.txt"
    other_path = str(tmp_path / "." / "mine.txt")
    assert _config(tmp_path, path, guidance=other_path).fingerprint()["guidance"] == mine


def test_a_guidance_that_cannot_be_read_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="--guidance: 'nosuch' is neither a template name"):
        BuildConfig(guidance="nosuch", out=str(tmp_path / "out"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"template": "{problem} only"}')
    with pytest.raises(ConfigError, match="no {prefix} slot"):
        BuildConfig(guidance=str(bad))
    assert not (tmp_path / "out").exists()


def test_max_prefix_fraction_caps_the_candidates_not_the_fallback(tmp_path):
    problems, path = _problems_file(tmp_path)
    cap = 0.3
    s = run_build(_config(tmp_path, path, max_prefix_fraction=cap), engine=_engine(problems))
    out = tmp_path / "out"
    segs = {p.id: segment(p.solution, "steps") for p in problems}
    allowed = {pid: [i for i in range(1, len(seg)) if seg.fraction(i) <= cap]
               for pid, seg in segs.items()}
    # The bill counts only the candidates under the cap, and no probe went past it.
    assert s.plan.candidates == sum(len(v) for v in allowed.values())
    journal = Journal.open(out / "journal.sqlite", _config(tmp_path, path,
                                                           max_prefix_fraction=cap).fingerprint())
    try:
        fractions = [r.prefix_fraction for r in journal.rows("prefix")]
    finally:
        journal.close()
    assert fractions and max(fractions) <= cap
    # Problem j needs (j % 4) + 1 lines: found where that prefix is under the cap, else the
    # fallback, which is still a random cut under 1/4.
    prefixes = pl.read_parquet(out / "prefixes.parquet").to_dicts()
    need = {p.id: (j % 4) + 1 for j, p in enumerate(problems)}
    for r in prefixes:
        if need[r["problem_id"]] in allowed[r["problem_id"]]:
            assert (r["i_star"], r["fallback"]) == (need[r["problem_id"]], False)
        else:
            assert r["fallback"] and r["prefix_fraction"] < 0.25
    assert {r["fallback"] for r in prefixes} == {True, False}
    assert {r["provenance"]["max_prefix_fraction"] for r in _rows(out, "mix")} == {cap}
    assert json.loads((out / "run_config.json").read_text())["config"][
        "max_prefix_fraction"] == cap
    with pytest.raises(ConfigError, match="max_prefix_fraction: 0.3 -> None"):
        run_build(_config(tmp_path, path), engine=_engine(problems))


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5])
def test_max_prefix_fraction_outside_0_1_is_refused(value):
    with pytest.raises(ConfigError, match=r"--max-prefix-fraction: must be in \(0, 1\]"):
        BuildConfig(max_prefix_fraction=value)


def test_merged_shards_keep_their_guidance_and_shards_of_two_templates_are_refused(tmp_path):
    problems, path = _problems_file(tmp_path)
    outs = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        run_build(_config(tmp_path, path, out=str(out), shard=f"{i}/2", guidance="no-revisit"),
                  engine=_engine(problems))
        outs.append(out)
    merge(outs, tmp_path / "merged")
    run = json.loads((tmp_path / "merged" / "run_config.json").read_text())
    assert run["guidance"] == NO_REVISIT.record()
    assert f"template `no-revisit` (sha256 `{NO_REVISIT.sha256}`" in render_card(
        tmp_path / "merged")
    other = tmp_path / "other1"
    run_build(_config(tmp_path, path, out=str(other), shard="1/2"), engine=_engine(problems))
    with pytest.raises(DataError, match="guidance"):
        merge([outs[0], other], tmp_path / "mixed")
