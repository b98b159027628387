"""Generation backends behind one interface (docs/design.md): transformers, vllm, openai, Ray.

Use `make_engine(EngineConfig(engine="auto", model="smollm2-135m"))`, then `engine.generate(requests)`.
"""

from __future__ import annotations

# The registry lines: importing a backend's module registers it and its options (light imports).
from pope_eval.engines import openai_engine, ray_engine, transformers_engine, vllm_engine  # noqa: F401
from pope_eval.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    Sample,
    Sampling,
)
from pope_eval.engines.config import (
    DTYPES,
    EngineConfig,
    engine_names,
    resolve_engine_name,
    vllm_available,
)
from pope_eval.engines.factory import LazyEngine, make_engine
from pope_eval.engines.registry import ENGINE_OPTIONS, ENGINES, register_engine

__all__ = [
    "DTYPES",
    "ENGINES",
    "ENGINE_OPTIONS",
    "Engine",
    "EngineConfig",
    "GenerationRequest",
    "GenerationResult",
    "LazyEngine",
    "Sample",
    "Sampling",
    "engine_names",
    "make_engine",
    "register_engine",
    "resolve_engine_name",
    "vllm_available",
]
