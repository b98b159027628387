"""top_k and min_p: validated once, recorded only when set, and honoured by every engine."""

import http.server
import json
import threading

import pytest

from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
from pope_eval.errors import ConfigError
from pope_eval.prompts import problem_messages
from tests.conftest import free_port

PROBLEMS = ["What is 12 + 30?", "Compute 7 * 8.", "Name a prime number above 10."]


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_k=0), "--top-k: must be an integer >= 1"),
    (dict(top_k=2.5), "--top-k"),
    (dict(min_p=1.0), r"--min-p: must be in \[0, 1\)"),
    (dict(min_p=-0.1), "--min-p"),
])
def test_bad_filters_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Sampling(**kwargs)


def test_filters_enter_the_record_only_when_set():
    # A run folder recorded before top_k/min_p existed has no such keys: unset, they stay absent.
    assert "top_k" not in Sampling().to_dict() and "min_p" not in Sampling().to_dict()
    assert Sampling(top_k=20, min_p=0.05).to_dict()["top_k"] == 20
    assert Sampling(top_k=20, min_p=0.05).to_dict()["min_p"] == 0.05


def _requests(sampling: Sampling, n: int = 3) -> list[GenerationRequest]:
    return [GenerationRequest(messages=tuple(problem_messages(p)), n=n, sampling=sampling,
                              seed=7 + i) for i, p in enumerate(PROBLEMS)]


def _texts(results) -> list[list[str]]:
    return [[s.text for s in r.samples] for r in results]


@pytest.mark.slow
def test_transformers_top_k_1_and_high_min_p_are_greedy(hf_engine):
    greedy = _texts(hf_engine.generate(_requests(Sampling(max_tokens=24, temperature=0), n=1)))
    top1 = _texts(hf_engine.generate(_requests(Sampling(max_tokens=24, temperature=1.5,
                                                        top_k=1), n=1)))
    assert top1 == greedy
    # min_p 0.99: only tokens nearly as likely as the best survive, i.e. the best one here.
    minp = _texts(hf_engine.generate(_requests(Sampling(max_tokens=24, temperature=1.5,
                                                        min_p=0.99), n=1)))
    assert minp == greedy


@pytest.mark.slow
def test_transformers_top_k_changes_samples_and_is_seeded(hf_engine):
    wide = Sampling(max_tokens=24, temperature=1.5, seed=3)
    narrow = Sampling(max_tokens=24, temperature=1.5, seed=3, top_k=3)
    a = _texts(hf_engine.generate(_requests(narrow)))
    b = _texts(hf_engine.generate(_requests(narrow)))
    assert a == b  # same seeds, same samples
    assert a != _texts(hf_engine.generate(_requests(wide)))


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_top_k_1_is_greedy(vllm_engine):
    greedy = _texts(vllm_engine.generate(_requests(Sampling(max_tokens=16, temperature=0), n=1)))
    top1 = _texts(vllm_engine.generate(_requests(Sampling(max_tokens=16, temperature=1.5,
                                                          top_k=1), n=1)))
    assert top1 == greedy


class _Capture(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        body = (b'{"choices":[{"index":0,"text":"4","finish_reason":"stop"}],'
                b'"usage":{"prompt_tokens":3,"completion_tokens":1}}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_openai_sends_top_k_and_min_p_only_when_set():
    port = free_port()
    handler = type("Capture", (_Capture,), {"bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = make_engine(EngineConfig(engine="openai", model="m",
                                          endpoints=(f"http://127.0.0.1:{port}/v1",)))
        engine.generate([GenerationRequest(prompt="2+2=", sampling=Sampling(top_k=20, min_p=0.05))])
        engine.generate([GenerationRequest(prompt="2+2=", sampling=Sampling())])
    finally:
        server.shutdown()
        server.server_close()
    first, second = handler.bodies
    assert (first["top_k"], first["min_p"]) == (20, 0.05)
    assert "top_k" not in second and "min_p" not in second
