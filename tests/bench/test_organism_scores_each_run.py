"""bench/organism.py scores each run with pope-eval as soon as it is trained, so a study cut short
(a machine that goes away, a session that ends) holds every finished run whole: trained and
scored, which is what bench/study_records.py keeps. The stages are stand-ins here; the stages
themselves run for real in tests/trl/test_organism_study.py."""

from __future__ import annotations

import pytest

import bench.organism as organism


def test_a_run_is_scored_before_the_next_one_trains(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []

    def build(args, model, guidance, dest, task_seed):
        dest.mkdir(parents=True, exist_ok=True)
        return dest

    def train(args, recipe, model, build_dir, dest, seed):
        if calls:  # the machine goes away while the second run trains
            raise SystemExit("cut")
        calls.append(("train", dest.name))
        return dest

    def evaluate(args, model, data, dest):
        calls.append(("evaluate", dest.name))
        return {}

    monkeypatch.setattr(organism, "build", build)
    monkeypatch.setattr(organism, "train", train)
    monkeypatch.setattr(organism, "evaluate", evaluate)
    with pytest.raises(SystemExit, match="cut"):
        organism.main(["--out", str(tmp_path), "--arms", "hard_only,pope", "--seeds", "0",
                       "--jobs", "1"])
    assert calls == [("train", "hard_only-s0"), ("evaluate", "hard_only-s0")]
