"""Building engines from an `EngineConfig`: `make_engine` and the deferred `LazyEngine`.

`make_engine(EngineConfig(engine="auto"))` picks the backend; heavy imports happen in its
`from_config`, never at import time.
"""

from __future__ import annotations

from typing import Any

from pope_eval.engines.base import Engine
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

    def _generate(self, requests, progress):
        if self._engine is None:
            self._engine = make_engine(self.config)
        return self._engine._generate(requests, progress)

    def describe(self) -> dict[str, Any]:
        if self._engine is not None:
            return self._engine.describe()
        return {"engine": self.name, "model": self.model}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
