"""The engine interface: requests in, samples out (DESIGN §4).

Every backend implements `Engine.generate`; callers build `GenerationRequest`s and read `Sample`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pope_eval.errors import ConfigError

FINISH_REASONS = ("stop", "length", "error")


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample `n` completions from.

    `prompt` is model input already rendered by `pope_eval.prompts` (chat template applied);
    `messages` is the alternative for chat endpoints. Exactly one of them is set.
    """

    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    n: int = 1
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
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
        if self.max_tokens < 1:
            raise ConfigError(f"GenerationRequest.max_tokens: must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ConfigError(
                f"GenerationRequest.temperature: must be >= 0, got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"GenerationRequest.top_p: must be in (0, 1], got {self.top_p}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))


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


@dataclass
class Engine:
    """Base class of the backends. Subclasses set `name` and implement `_generate`."""

    name: str = field(init=False, default="base")
    model: str = ""

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

    def describe(self) -> dict[str, Any]:
        """Identity recorded in run configs and journals."""
        return {"engine": self.name, "model": self.model}

    def close(self) -> None:
        """Release the model / connections. Safe to call twice."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
