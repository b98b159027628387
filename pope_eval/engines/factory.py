"""Building engines from an `EngineConfig`: `make_engine` and the deferred `LazyEngine`.

`make_engine(EngineConfig(engine="auto"))` picks the backend; heavy imports happen in its
`from_config`, never at import time.
"""

from __future__ import annotations

from typing import Any

from pope_eval.engines.base import Engine, EngineStream
from pope_eval.engines.config import EngineConfig, resolve_engine_name
from pope_eval.engines.registry import ENGINES


def make_engine(config: EngineConfig) -> Engine:
    """Build the engine the config names (Ray replicas when `ray_address` is set)."""
    if config.ray_address:
        from pope_eval.engines.ray_engine import RayEngine

        return RayEngine.from_config(config)
    return ENGINES.get(resolve_engine_name(config)).from_config(config)


class LazyEngine(Engine):
    """Builds the real engine on first use: a resumed, finished run never loads a model."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.name = resolve_engine_name(config)
        self.model = config.model
        self._engine: Engine | None = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    # What the engine is, read from its class before it is built.
    @property
    def reproducible(self) -> bool:  # type: ignore[override]
        return self._engine.reproducible if self._engine else ENGINES.get(self.name).reproducible

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return ENGINES.get(self.name).remote

    @property
    def streams(self) -> bool:  # type: ignore[override]
        return self._built().streams

    @property
    def stream_chunk(self) -> int | None:  # type: ignore[override]
        return self._built().stream_chunk

    def _built(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.config)
        return self._engine

    def _generate(self, requests, progress):
        return self._built()._generate(requests, progress)

    def open_stream(self) -> EngineStream:
        return self._built().open_stream()

    def window(self) -> int | None:
        # Known without building: an unfinished run only, so building now costs nothing extra.
        return self._built().window()

    def describe(self) -> dict[str, Any]:
        if self._engine is not None:
            return self._engine.describe()
        return {"engine": self.name, "model": self.model}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
