"""RayEngine on a real local Ray cluster: chunking, retry on a lost replica, all replicas dead, pass@k.

Ray starts once per test session (`ray_cluster`); unit tests run a tiny fake engine inside real
actors, the slow test two transformers replicas of the bundled model.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from pope_eval.engines import (
    Engine,
    EngineConfig,
    GenerationRequest,
    GenerationResult,
    Sampling,
    make_engine,
)
from pope_eval.engines.base import Sample
from pope_eval.engines.ray_engine import LOCAL_SYSTEM_CONFIG, RayEngine, split_chunks
from pope_eval.errors import ConfigError, EngineError

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


def start_ray() -> bool:
    """A 2-CPU local cluster for the whole session; False when one is already up."""
    if ray.is_initialized():
        return False
    # Workers import the fake engines below by module name: give them the repository root.
    root = str(Path(__file__).resolve().parents[2])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024**2, _system_config=LOCAL_SYSTEM_CONFIG,
             runtime_env={"env_vars": {"PYTHONPATH": root}})
    return True


@pytest.fixture(scope="session")
def ray_cluster():
    started = start_ray()
    yield ray
    if started:
        ray.shutdown()


@dataclass
class EchoEngine(Engine):
    """Sample j of a request reads '<tag>:<j>'; a request tagged 'die' kills its replica.

    With `marker`, only the first replica to see 'die' exits (it leaves the file behind), so a
    retried chunk succeeds; without it, every replica that gets the chunk dies.
    """

    marker: str | None = None
    delay: float = 0.0

    def _generate(self, requests, progress):
        for r in requests:
            if r.tag == "die" and not (self.marker and os.path.exists(self.marker)):
                if self.marker:
                    Path(self.marker).touch()
                os._exit(1)
        time.sleep(self.delay)
        return [GenerationResult(r, tuple(Sample(f"{r.tag}:{j}", 1, "stop") for j in range(r.n)))
                for r in requests]


def _requests(ns, die_at=None):
    return [GenerationRequest(prompt=f"p{i}", n=n, tag="die" if i == die_at else f"r{i}")
            for i, n in enumerate(ns)]


def _echo(**kw):
    return partial(EchoEngine, model="echo", **kw)


def test_split_chunks_keeps_requests_whole_contiguous_and_balanced():
    reqs = _requests([4, 4, 4, 4, 1, 1, 1, 1, 8])
    chunks = split_chunks(reqs, 4)
    assert [i for c in chunks for i in c] == list(range(9))
    sizes = [sum(reqs[i].n for i in c) for c in chunks]
    assert sizes == [8, 4, 8, 8]
    assert split_chunks(reqs[:2], 8) == [[0], [1]]  # never more chunks than requests
    assert split_chunks(reqs[:1], 3) == [[0]]


def test_results_come_back_in_input_order_with_progress(ray_cluster):
    with RayEngine.start(_echo(delay=0.05), replicas=2, model="echo") as engine:
        reqs = _requests([3, 1, 2, 5, 1, 1, 4])
        seen = []
        results = engine.generate(reqs, progress=lambda done, tok: seen.append((done, tok)))
        assert [r.request.tag for r in results] == [r.tag for r in reqs]
        assert [[s.text for s in r.samples] for r in results] == \
            [[f"r{i}:{j}" for j in range(r.n)] for i, r in enumerate(reqs)]
        # Progress as chunks finish: 4 chunks for 2 replicas, counts only grow, end at the total.
        assert len(seen) == 4 and seen[-1] == (7, 17)
        assert seen == sorted(seen)
        d = engine.describe()
        assert d["engine"] == "ray" and d["replicas"] == 2 and d["inner"]["model"] == "echo"
    assert engine.actors == []


def test_a_replica_dying_mid_chunk_is_retried_on_another(ray_cluster, tmp_path):
    marker = str(tmp_path / "died-once")
    with RayEngine.start(_echo(marker=marker), replicas=2, model="echo") as engine:
        reqs = _requests([2, 2, 2, 2, 2, 2], die_at=3)
        results = engine.generate(reqs)
        assert os.path.exists(marker) and engine.replicas_lost == 1 and len(engine.actors) == 1
        assert [s.text for s in results[3].samples] == ["die:0", "die:1"]
        assert [r.request.tag for r in results] == [r.tag for r in reqs]
        # The survivor carries on alone.
        assert len(engine.generate(_requests([1, 1, 1]))) == 3


def test_all_replicas_dead_is_an_engine_error(ray_cluster):
    with RayEngine.start(_echo(), replicas=2, model="echo") as engine:
        with pytest.raises(EngineError, match=r"all 2 replicas died.*last error"):
            engine.generate(_requests([1, 1, 1, 1], die_at=0))
        with pytest.raises(EngineError, match="no live replica"):
            engine.generate(_requests([1]))


def test_a_killed_replica_is_replaced_by_the_others(ray_cluster):
    with RayEngine.start(_echo(delay=0.5), replicas=2, model="echo") as engine:
        victim = engine.actors[0]
        threading.Timer(0.2, ray.kill, args=(victim,)).start()
        results = engine.generate(_requests([1] * 6))
        assert [r.samples[0].text for r in results] == [f"r{i}:0" for i in range(6)]
        assert engine.replicas_lost == 1


def test_replicas_stream_and_a_lost_replicas_requests_go_to_the_others(ray_cluster, tmp_path):
    """Requests submitted while others run are spread over the replicas; a replica that dies
    mid-stream (the request tagged 'die' kills the first one to run it) is dropped and its
    unfinished requests finish on the other: every request comes back exactly once."""
    marker = str(tmp_path / "died-once")
    with RayEngine.start(_echo(marker=marker, delay=0.1), replicas=2, model="echo") as engine:
        assert engine.streams
        reqs = _requests([1, 2, 1, 1, 3, 1, 1, 2], die_at=5)
        got = []
        with engine.open_stream() as stream:
            for i in range(4):
                stream.submit(i, reqs[i])
            got += stream.poll()
            for i in range(4, len(reqs)):  # submitted while the first ones run
                stream.submit(i, reqs[i])
            while stream.in_flight:
                got += stream.poll(timeout=5)
        assert sorted(k for k, _ in got) == list(range(len(reqs)))  # each exactly once
        for k, res in got:
            assert [s.text for s in res.samples] == [f"{reqs[k].tag}:{j}" for j in range(reqs[k].n)]
        assert os.path.exists(marker) and engine.replicas_lost == 1 and len(engine.actors) == 1


def test_config_validation_names_the_options():
    with pytest.raises(ConfigError, match="--replicas"):
        EngineConfig(replicas=0)
    with pytest.raises(ConfigError, match="--ray"):
        EngineConfig(replicas=2)
    with pytest.raises(ConfigError, match="--ray"):
        EngineConfig(ray_address=" ")
    a = EngineConfig(engine="transformers")
    b = EngineConfig(engine="transformers", ray_address="local", replicas=4)
    assert a.fingerprint() == b.fingerprint()  # operational: a resumed run may switch to Ray


@pytest.mark.slow
def test_pass_at_k_over_ray_equals_the_in_process_run(tmp_path, ray_cluster, hf_engine):
    from pope_eval.evaluate import PassAtKConfig, run_pass_at_k

    data = tmp_path / "problems.jsonl"
    data.write_text("".join(
        f'{{"id": "q{i}", "problem": "What is {i} + {i + 2}?", "answer": "{2 * i + 2}"}}\n'
        for i in range(4)))
    base = dict(data=str(data), n=3, problems_per_batch=2,
                sampling=Sampling(max_tokens=24, temperature=0.8, top_p=0.95, seed=3))
    ref_cfg = PassAtKConfig(out=str(tmp_path / "ref"), engine=EngineConfig(engine="transformers"),
                            **base)
    ref = run_pass_at_k(ref_cfg, engine=hf_engine)
    cfg = PassAtKConfig(out=str(tmp_path / "ray"),
                        engine=EngineConfig(engine="transformers", ray_address="local",
                                            replicas=2), **base)
    engine = make_engine(cfg.engine)
    assert isinstance(engine, RayEngine) and not engine.owns_ray
    try:
        got = run_pass_at_k(cfg, engine=engine)
    finally:
        engine.close()
    cols = ["id", "sample", "text", "tokens", "finish_reason", "status"]
    a = pl.read_parquet(tmp_path / "ref" / "samples.parquet").select(cols).sort("id", "sample")
    b = pl.read_parquet(tmp_path / "ray" / "samples.parquet").select(cols).sort("id", "sample")
    assert a.height == 12 and a.equals(b)
    assert got["pass_at_k"] == ref["pass_at_k"]
    for name in ("summary.json", "per_problem.parquet", "report.md", "run_config.json"):
        assert (tmp_path / "ray" / name).exists()
