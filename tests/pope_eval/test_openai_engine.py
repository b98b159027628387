"""The openai backend against a real `vllm serve`, and its failure handling against stand-ins."""

import http.server
import json
import threading
import time

import pytest

from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
from pope_eval.errors import EngineError
from pope_eval.prompts import problem_messages, render
from tests.conftest import free_port


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers per a script: 'ok', '500', or 'drop' (close without a reply)."""

    script: list[str] = []
    calls = 0
    bodies: list[dict] = []  # the JSON bodies received, in order

    def do_POST(self):  # noqa: N802 (http.server's naming)
        cls = type(self)
        action = cls.script[min(cls.calls, len(cls.script) - 1)]
        cls.calls += 1
        cls.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        if action == "drop":
            self.connection.close()
            return
        if action == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        body = (b'{"choices":[{"index":0,"text":"\\\\boxed{4}","finish_reason":"stop"}],'
                b'"usage":{"prompt_tokens":3,"completion_tokens":5}}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    port = free_port()
    handler = type("Stub", (_Stub,), {"script": [], "calls": 0, "bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{port}/v1"
    server.shutdown()
    server.server_close()


def _engine(*urls, retries=2):
    e = make_engine(EngineConfig(engine="openai", model="m", endpoints=tuple(urls),
                                 max_retries=retries, request_timeout=5))
    e.backoff_base = 0.05
    return e


def test_unreachable_endpoint_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    t = time.monotonic()
    with pytest.raises(EngineError, match=r"after 3 attempts.*127\.0\.0\.1"):
        _engine(url).generate([GenerationRequest(prompt="hi")])
    assert time.monotonic() - t < 10


def test_5xx_then_success_is_retried(stub):
    handler, url = stub
    handler.script = ["500", "drop", "ok"]
    res = _engine(url).generate([GenerationRequest(prompt="hi")])
    assert res[0].samples[0].text == "\\boxed{4}" and res[0].samples[0].tokens == 5
    assert handler.calls == 3


def test_persistent_5xx_is_an_error(stub):
    handler, url = stub
    handler.script = ["500"]
    with pytest.raises(EngineError, match="HTTP 500"):
        _engine(url, retries=1).generate([GenerationRequest(prompt="hi")])


def test_dead_endpoint_hands_requests_to_a_live_one(stub):
    handler, live = stub
    handler.script = ["ok"]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    res = _engine(dead, live).generate([GenerationRequest(prompt=f"q{i}") for i in range(4)])
    assert all(r.samples[0].text == "\\boxed{4}" for r in res)


@pytest.mark.slow
@pytest.mark.vllm
def test_openai_against_vllm_serve_matches_in_process_greedy(vllm_server, hf_engine):
    url, _ = vllm_server
    engine = make_engine(EngineConfig(engine="openai", model="smollm2-135m", endpoints=(url,),
                                      send_seed=False))
    prompts = [render(problem_messages(p), hf_engine.tokenizer)
               for p in ["What is 12 + 30?", "Compute 7 * 8."]]
    reqs = [GenerationRequest(prompt=p, n=1, sampling=Sampling(max_tokens=24, temperature=0))
            for p in prompts]
    served = engine.generate(reqs)
    local = hf_engine.generate(reqs)
    for a, b in zip(served, local):
        assert a.samples[0].tokens >= 1
        assert a.samples[0].text[:40] == b.samples[0].text[:40]
    # n > 1 with chat messages: per-sample token counts come back.
    chat = engine.generate([GenerationRequest(messages=tuple(problem_messages("What is 2+2?")),
                                              n=3, sampling=Sampling(max_tokens=12, temperature=1.0))])
    assert len(chat[0].samples) == 3 and all(1 <= s.tokens <= 12 for s in chat[0].samples)


@pytest.mark.slow
@pytest.mark.vllm
def test_server_dying_mid_batch_is_a_clear_error(tiny_model_dir, tmp_path):
    """A second, private server is killed while a batch is in flight."""
    import os
    import signal
    import subprocess

    import httpx

    from pope_eval.engines.vllm_engine import server_command

    port = free_port()
    log = (tmp_path / "server.log").open("w")
    # POPE_VLLM_CPU_MEMORY (conftest) keeps its KV share small beside the session's server
    argv = server_command("smollm2-135m", port=port, served_name="m")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 420
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(2)
        threading.Timer(3.0, lambda: os.killpg(proc.pid, signal.SIGKILL)).start()
        engine = _engine(f"http://127.0.0.1:{port}/v1", retries=2)
        t = time.monotonic()
        with pytest.raises(EngineError, match=str(port)):
            engine.generate([GenerationRequest(prompt=f"Count to {i}:", n=4, sampling=Sampling(max_tokens=2000, temperature=1.0))
                             for i in range(16)])
        assert time.monotonic() - t < 60
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_top_k_and_min_p_reach_the_server_only_when_set(stub):
    handler, url = stub
    handler.script = ["ok"]
    engine = _engine(url)
    engine.generate([GenerationRequest(prompt="2+2=", sampling=Sampling(top_k=20, min_p=0.05))])
    engine.generate([GenerationRequest(prompt="2+2=", sampling=Sampling())])
    first, second = handler.bodies
    assert (first["top_k"], first["min_p"]) == (20, 0.05)
    assert "top_k" not in second and "min_p" not in second


class _SlowStub(http.server.BaseHTTPRequestHandler):
    """Answers every request wrongly after a long-tailed delay; records (start, end) per request."""

    spans: list = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802
        import random

        start = time.monotonic()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        rng = random.Random(body.get("seed", 0))
        time.sleep(min(1.5, 0.2 + rng.expovariate(1 / 0.3)))
        reply = (b'{"choices":[{"index":0,"text":"\\\\boxed{-1}","finish_reason":"stop"}],'
                 b'"usage":{"prompt_tokens":3,"completion_tokens":5}}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        with type(self).lock:
            type(self).spans.append((start, time.monotonic()))

    def log_message(self, *args):
        pass


def _window_share(spans: list, window: int) -> float:
    """Mean share of the window in flight from the first request to the last one's start (after
    that, no request is left to send: the tail of the last sequential probes)."""
    t0 = min(s for s, _ in spans)
    t1 = max(s for s, _ in spans)
    busy = sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in spans)
    return busy / (window * (t1 - t0))


def test_streaming_service_keeps_every_endpoints_window_full(tmp_path):
    """Two endpoints with uneven reply times, 2 requests each in flight: through the search
    service (curate waves of 1 and 1 sample per problem, every problem hard), the servers see
    their windows full until the last requests, and never more than the window. (Replies take
    longer than grading, as a model's do: the test measures the client, not math-verify.)"""
    from pope_data.journal import Journal
    from pope_data.search import make_strategy
    from pope_data.service import SearchService, SearchTask
    from pope_data.synthetic import generate_synthetic
    from pope_eval.grading import grade_many

    grade_many(["\\boxed{1}"], ["1"])  # the grading workers' start is not the client's

    servers, urls = [], []
    handler = type("Slow", (_SlowStub,), {"spans": [], "lock": threading.Lock()})
    for _ in range(2):
        port = free_port()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls.append(f"http://127.0.0.1:{port}/v1")
    try:
        engine = make_engine(EngineConfig(engine="openai", model="m", endpoints=tuple(urls),
                                          concurrency=2))
        problems = generate_synthetic(24, seed=2)
        service = SearchService(engine, Journal.open(tmp_path / "j.sqlite", {}),
                                sampling=Sampling(max_tokens=8), samples_per_batch=1)
        tasks = [SearchTask(p, make_strategy("curate", problem_id=p.id, min_prefix=0,
                                             max_prefix=0, n=2, wave_size=1)) for p in problems]
        results = service.run("curate", tasks)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert all(r.fallback for r in results.values())
    spans = handler.spans
    assert len(spans) == 24 * 2
    # Never more than the window: at each request's start, count those open.
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 4
    assert _window_share(spans, 4) >= 0.85
    assert service.stream_stats.window == 4  # the engine's window, above --batch-samples 1


@pytest.mark.slow
@pytest.mark.vllm
def test_build_through_vllm_serve_streams_resumes_after_kill_and_reruns_to_itself(vllm_server,
                                                                                 tmp_path):
    """`pope-data build --engine openai` against the session's vLLM server, 2 samples in flight:
    killed (-9) mid-stream once some probes are journaled, the same command resumes and finishes
    without regenerating them (each probe journaled once, those before the kill unchanged), and
    running it again generates nothing and writes the same tables."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    import polars as pl
    from pope_cli.data import app as data_app
    from typer.testing import CliRunner

    url, _ = vllm_server
    out = tmp_path / "out"
    args = ["build", "--source", "synthetic", "--limit", "4", "--engine", "openai",
            "--endpoint", url, "--model", "smollm2-135m", "--no-send-seed", "--k", "2",
            "--n", "2", "--wave-size", "1", "--max-tokens", "32", "--batch-samples", "2",
            "--concurrency", "2", "--out", str(out)]

    def probes():
        # Read-only: never creates the journal while the build is starting.
        try:
            db = sqlite3.connect(f"{(out / 'journal.sqlite').as_uri()}?mode=ro", uri=True)
        except sqlite3.OperationalError:  # not created yet
            return []
        try:
            return db.execute("SELECT stage, problem_id, prefix_segments, wave, tokens, finished "
                              "FROM probes ORDER BY rowid").fetchall()
        except sqlite3.OperationalError:  # created, no table yet
            return []
        finally:
            db.close()

    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from pope_cli.data import app; app()", *args],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(probes()) < 2:
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no probe journaled in 120 s"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL  # killed mid-build, not finished
    assert not (out / "summary.json").exists()
    killed = probes()
    runner = CliRunner()
    first = runner.invoke(data_app, args)
    assert first.exit_code == 0, first.output
    before = probes()
    assert before[:len(killed)] == killed  # kept, not regenerated
    assert len(before) > len(killed)
    assert len(before) == len({p[:4] for p in before})  # each probe journaled once
    tables = {t: pl.read_parquet(out / t) for t in ("curate.parquet", "prefixes.parquet")}
    again = runner.invoke(data_app, args)
    assert again.exit_code == 0, again.output
    assert probes() == before  # nothing generated again
    for name, table in tables.items():
        assert pl.read_parquet(out / name).equals(table), name
