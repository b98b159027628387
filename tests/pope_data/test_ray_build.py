"""`pope-data build` over Ray replicas: same prefixes as in process, and a lost replica costs nothing.

Two transformers replicas of the bundled model on the session's local Ray cluster (2 CPUs).
"""

from __future__ import annotations

import sqlite3
import threading

import polars as pl
import pytest
from typer.testing import CliRunner

from pope_data.build import BuildConfig, run_build
from pope_eval.engines import Engine, EngineConfig, Sampling, make_engine
from tests.pope_eval.test_ray_engine import start_ray

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def ray_cluster():
    started = start_ray()  # shared with tests/pope_eval/test_ray_engine.py when both run
    yield ray
    if started:
        ray.shutdown()


RAY = EngineConfig(engine="transformers", ray_address="local", replicas=2)


def _config(out, engine: EngineConfig) -> BuildConfig:
    return BuildConfig(out=str(out), source="synthetic", limit=3, k=2, n=2, wave_size=1,
                       sampling=Sampling(max_tokens=16, temperature=0.8, top_p=0.95, seed=7),
                       validation_fraction=0.25, engine=engine)


def _prefixes(out) -> pl.DataFrame:
    return pl.read_parquet(out / "prefixes.parquet").sort("problem_id")


def _probes(out) -> list[tuple]:
    db = sqlite3.connect(out / "journal.sqlite")
    return db.execute("SELECT stage, problem_id, prefix_segments, wave FROM probes").fetchall()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, hf_engine):
    out = tmp_path_factory.mktemp("ray-build") / "ref"
    run_build(_config(out, EngineConfig(engine="transformers")), engine=hf_engine)
    return out


class KillOneReplica(Engine):
    """Passes batches to a RayEngine and kills one of its replicas during the second batch."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.model, self.calls = inner, inner.name, inner.model, 0

    def _generate(self, requests, progress):
        self.calls += 1
        if self.calls == 2:
            threading.Timer(1.0, ray.kill, args=(self.inner.actors[0],)).start()
        return self.inner._generate(requests, progress)

    def describe(self):
        return self.inner.describe()


@pytest.mark.slow
def test_build_over_two_replicas_matches_the_in_process_build(tmp_path, reference, ray_cluster):
    out = tmp_path / "ray"
    s = run_build(_config(out, RAY))
    assert s.problems == 3
    assert _prefixes(out).equals(_prefixes(reference))
    assert sorted(_probes(out)) == sorted(_probes(reference))


@pytest.mark.slow
def test_a_replica_killed_mid_build_loses_and_repeats_nothing(tmp_path, reference, ray_cluster):
    out = tmp_path / "killed"
    engine = make_engine(RAY)
    try:
        run_build(_config(out, RAY), engine=KillOneReplica(engine))
        assert engine.replicas_lost == 1 and len(engine.actors) == 1
    finally:
        engine.close()
    probes = _probes(out)
    assert len(probes) == len(set(probes)), "a probe was journaled twice"
    assert sorted(probes) == sorted(_probes(reference))
    assert _prefixes(out).equals(_prefixes(reference))


def test_cli_options_reach_the_engine_config(tmp_path):
    from pope_cli.data import app

    res = CliRunner().invoke(app, ["build", "--out", str(tmp_path / "o"), "--replicas", "2"])
    assert res.exit_code == 2 and "--replicas" in res.output and "--ray" in res.output
