"""The engine interface: requests in, samples out (docs/design.md, "Engines").

Every backend implements `Engine.generate` (results in input order) and may stream
(`Engine.open_stream`: submit requests while others run, results in completion order).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_eval.seeds import stable_int

FINISH_REASONS = ("stop", "length", "error")


@dataclass(frozen=True)
class Sampling:
    """How samples are drawn: the one declaration of these values, validated once.

    Used by the build, the evaluator, the engines and the run fingerprints. `seed` is the run's
    base seed: per-request and per-sample seeds derive from it (`pope_eval.seeds`). Errors name
    the command-line option.
    """

    max_tokens: int = option(256, "Max generated tokens per sample.")
    temperature: float = option(1.0, "Sampling temperature.")
    top_p: float = option(1.0, "Nucleus sampling: keep the smallest token set with this mass.")
    top_k: int | None = option(None, "Sample among the k most likely tokens only (default: off).")
    min_p: float | None = option(None, "Drop tokens less likely than min_p times the most likely "
                                       "one (default: off).")
    seed: int = option(0, "Base seed of every sample (samples are seeded per request and index).")
    stop: tuple[str, ...] = option((), cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or self.max_tokens < 1:
            raise ConfigError(f"--max-tokens: must be an integer >= 1, got {self.max_tokens!r}")
        if not isinstance(self.temperature, int | float) or not math.isfinite(self.temperature) \
                or self.temperature < 0:
            raise ConfigError(f"--temperature: must be a finite number >= 0, got "
                              f"{self.temperature!r}")
        if not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p: must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool)
                                       or not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"--top-k: must be an integer >= 1 (leave it out for no limit), "
                              f"got {self.top_k!r}")
        if self.min_p is not None and (not isinstance(self.min_p, int | float)
                                       or not 0 <= self.min_p < 1):
            raise ConfigError(f"--min-p: must be in [0, 1), got {self.min_p!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"--seed: must be an integer, got {self.seed!r}")
        if any(not isinstance(x, str) or not x for x in self.stop):
            raise ConfigError(f"stop: stop strings must be non-empty text, got {self.stop!r}")

    def to_dict(self) -> dict[str, Any]:
        # top_k / min_p only when set: a run folder recorded before they existed resumes (an
        # absent key reads as None, their "off").
        d: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature,
                             "top_p": self.top_p, "seed": self.seed, "stop": list(self.stop)}
        for name in ("top_k", "min_p"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        return d


def describe_sampling(d: dict[str, Any]) -> str:
    """One line on a recorded sampling dict (`Sampling.to_dict`, as run configs and summaries hold
    it): 'temperature 0.7, top_p 0.8, top_k 20, max_tokens 4096, seed 0'; filters only when set."""
    def value(name: str) -> Any:
        return "n/a" if d.get(name) is None else d[name]  # a record that lacks it

    parts = [f"temperature {value('temperature')}", f"top_p {value('top_p')}"]
    parts += [f"{name} {d[name]}" for name in ("top_k", "min_p") if d.get(name) is not None]
    parts += [f"max_tokens {value('max_tokens')}", f"seed {value('seed')}"]
    return ", ".join(parts)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample `n` completions from.

    `prompt` is model input already rendered by `pope_eval.prompts` (chat template applied);
    `messages` is the alternative for chat endpoints. Exactly one of them is set. `seed` is the
    request's own seed (None: unseeded); sample j is seeded from (seed, sample_offset + j), so
    drawing a prompt's samples in several requests gives the same samples as one request.
    """

    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    n: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    seed: int | None = None
    sample_offset: int = 0
    # Free-form tag the caller uses to route results back (problem id, probe id, ...).
    tag: Any = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ConfigError("GenerationRequest: set exactly one of 'prompt' or 'messages'")
        if self.prompt is not None and not self.prompt.strip():
            raise ConfigError("GenerationRequest.prompt: empty prompt")
        if self.messages is not None and not self.messages:
            raise ConfigError("GenerationRequest.messages: empty message list")
        if self.n < 1:
            raise ConfigError(f"GenerationRequest.n: must be >= 1, got {self.n}")
        if self.sample_offset < 0:
            raise ConfigError(f"GenerationRequest.sample_offset: must be >= 0, got "
                              f"{self.sample_offset}")
        if not isinstance(self.sampling, Sampling):
            raise ConfigError("GenerationRequest.sampling: must be a Sampling value")


@dataclass(frozen=True)
class Sample:
    """One completion: its text, generated token count and why it ended."""

    text: str
    tokens: int
    finish_reason: str  # one of FINISH_REASONS


@dataclass(frozen=True)
class GenerationResult:
    """The samples for one request, in the order of `Engine.generate`'s input."""

    request: GenerationRequest
    samples: tuple[Sample, ...]
    prompt_tokens: int | None = None

    @property
    def generated_tokens(self) -> int:
        return sum(s.tokens for s in self.samples)


ProgressFn = Callable[[int, int], None]
"""Called as progress(requests_done, generated_tokens_so_far) while a batch runs."""


def sample_seed(engine_seed: int, request_seed: int | None, index: int) -> int:
    """Seed of sample `index` (offset included) of a request: stable across runs, batch layouts
    and the split of a prompt's samples into several requests."""
    return stable_int(f"{engine_seed}:{request_seed}:{index}") & ((1 << 63) - 1)


class EngineStream:
    """Requests in, results out as they finish: `submit(key, request)` any time, `poll()` for
    what has finished since, in completion order. One caller thread; `close()` drops what is
    still running (nothing of it was returned, so nothing of it was recorded)."""

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> list[tuple[Any, GenerationResult]]:
        """Finished (key, result) pairs; waits up to `timeout` s (None: until one finishes)
        when none has yet. Returns [] at once when nothing is in flight. An engine failure
        is raised here."""
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet returned by poll."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop and forget what is still in flight. Safe to call twice."""

    def __enter__(self) -> EngineStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChunkedStream(EngineStream):
    """The stream of an engine that does not stream (`Engine.streams` False): each `poll` hands
    the requests waiting so far to `engine.generate`, whole requests of up to
    `engine.stream_chunk` samples (all waiting ones when None), and returns their results."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: deque[tuple[Any, GenerationRequest]] = deque()

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        self._waiting.append((key, request))

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def poll(self, timeout: float | None = None) -> list[tuple[Any, GenerationResult]]:
        if not self._waiting:
            return []
        limit = self.engine.stream_chunk
        chunk: list[tuple[Any, GenerationRequest]] = []
        samples = 0
        while self._waiting and (not chunk or limit is None
                                 or samples + self._waiting[0][1].n <= limit):
            key, r = self._waiting.popleft()
            chunk.append((key, r))
            samples += r.n
        try:
            results = self.engine.generate([r for _, r in chunk])
        except BaseException:
            self._waiting.extendleft(reversed(chunk))  # not returned: still in flight
            raise
        return [(key, res) for (key, _), res in zip(chunk, results)]

    def close(self) -> None:
        self._waiting.clear()


@dataclass
class Engine:
    """Base class of the backends. Subclasses set `name`, implement `_generate` and say what they
    are in the class attributes below; callers read those, never the name."""

    # Samples depend on the request seeds only (not on batching or request order); an instance
    # may narrow it (vLLM's CPU build, an OpenAI client told not to send seeds).
    reproducible: ClassVar[bool] = True
    # The model runs in servers reached over the network (`--endpoint`), not in this process.
    remote: ClassVar[bool] = False
    # `open_stream` is native: requests join the running batch as others finish. Otherwise the
    # default `ChunkedStream` runs `generate` over chunks of `stream_chunk` samples.
    streams: ClassVar[bool] = False
    # Samples per generate() call of the default stream (None: everything waiting).
    stream_chunk: ClassVar[int | None] = None

    name: str = field(init=False, default="base")
    model: str = ""

    @classmethod
    def from_config(cls, config: Any) -> Engine:
        """Build the backend from an `EngineConfig` (heavy imports happen here)."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_config")

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressFn | None = None
    ) -> list[GenerationResult]:
        """Generate for every request; results come back in input order."""
        requests = list(requests)
        if not requests:
            raise ConfigError("generate: empty request list")
        for i, r in enumerate(requests):
            if not isinstance(r, GenerationRequest):
                raise ConfigError(f"generate: request {i} is {type(r).__name__}, not GenerationRequest")
        return self._generate(requests, progress)

    def _generate(
        self, requests: list[GenerationRequest], progress: ProgressFn | None
    ) -> list[GenerationResult]:
        raise NotImplementedError

    def open_stream(self) -> EngineStream:
        """A stream of this engine's requests (see `EngineStream`); close it when done."""
        return ChunkedStream(self)

    def window(self) -> int | None:
        """Samples this engine wants in flight to stay busy (e.g. an OpenAI client's concurrency
        over its endpoints), or None when it has no own limit; callers keep at least as many."""
        return None

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """(index, result) for every request, in completion order."""
        requests = list(requests)
        with self.open_stream() as s:
            for i, r in enumerate(requests):
                s.submit(i, r)
            while s.in_flight:
                yield from s.poll()

    def describe(self) -> dict[str, Any]:
        """Identity recorded in run configs and journals (valid before and after `close`)."""
        return {"engine": self.name, "model": self.model}

    def close(self) -> None:
        """Release the model / connections. Safe to call twice."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
