"""OpenAI-compatible backend: one or many servers (e.g. `vllm serve`), bounded concurrency, retries.

Built by `make_engine(EngineConfig(engine="openai", endpoints=("http://host:8000/v1", ...)))`;
requests are spread over the endpoints, and a dead endpoint ends in an EngineError naming it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import random
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
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
from pope_eval.errors import ConfigError, EngineError
from pope_eval.options import option

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429}
WAIT_WARN_S = 30.0


class _Retryable(Exception):
    pass


@dataclass(frozen=True)
class OpenAIOptions:
    """The OpenAI-compatible client's own options (one or many `vllm serve` endpoints)."""

    endpoints: tuple[str, ...] = option((), "OpenAI-compatible base URL (repeat for several).",
                                        flag="--endpoint", operational=True)
    api_key: str | None = option(None, cli=False, repr=False)  # else OPENAI_API_KEY
    concurrency: int = option(32, "openai: requests in flight per endpoint.", operational=True)
    request_timeout: float = option(600.0, "openai: seconds to wait for one reply.",
                                    operational=True)
    max_retries: int = option(4, "openai: retries of a failed request.", operational=True)
    send_seed: bool = option(True, "openai: send per-request seeds (--no-send-seed for vLLM CPU "
                                   "servers, which crash on them).")

    def __post_init__(self) -> None:
        if isinstance(self.endpoints, str):
            object.__setattr__(self, "endpoints", (self.endpoints,))
        elif not isinstance(self.endpoints, tuple):
            object.__setattr__(self, "endpoints", tuple(self.endpoints))
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--endpoint: {url!r} is not an http(s) URL "
                                  "(e.g. http://127.0.0.1:8000/v1)")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency: must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries: must be >= 0, got {self.max_retries}")
        if self.request_timeout <= 0:
            raise ConfigError(f"--request-timeout: must be > 0, got {self.request_timeout}")


@register_engine("openai", options=OpenAIOptions)
@dataclass
class OpenAIEngine(Engine):
    """Talks to /v1/completions (rendered prompts) and /v1/chat/completions (messages).

    Per-sample token counts come from vLLM's `return_token_ids` when the server returns them,
    else from `usage.completion_tokens` (exact for n = 1, split by text length for n > 1).
    Per-request seeds are sent when `send_seed` is set; vLLM's CPU build crashes on them, so
    turn it off for CPU servers (`EngineConfig(send_seed=False)`).
    """

    endpoints: tuple[str, ...] = ()
    served_model: str = ""
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 32
    request_timeout: float = 600.0
    max_retries: int = 4
    backoff_base: float = 0.5
    send_seed: bool = True
    seed: int = 0

    remote = True  # the model runs in the servers behind --endpoint
    streams = True  # each endpoint's window is refilled as replies arrive

    def __post_init__(self) -> None:
        self.name = "openai"
        self.endpoints = tuple(u.rstrip("/") for u in self.endpoints)
        # Without per-request seeds the server's sampling decides.
        self.reproducible = self.send_seed

    @classmethod
    def from_config(cls, config) -> OpenAIEngine:
        import os

        return cls(
            model=config.model,
            endpoints=config.endpoints,
            served_model=config.model,
            api_key=config.api_key or os.environ.get("OPENAI_API_KEY"),
            concurrency=config.concurrency,
            request_timeout=config.request_timeout,
            max_retries=config.max_retries,
            send_seed=config.send_seed,
            seed=config.seed,
        )

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model, "endpoints": list(self.endpoints)}

    def window(self) -> int:
        return self.concurrency * len(self.endpoints)

    def open_stream(self) -> EngineStream:
        return _OpenAIStream(self)

    def _generate(self, requests: list[GenerationRequest],
                  progress: ProgressFn | None) -> list[GenerationResult]:
        out: list[GenerationResult | None] = [None] * len(requests)
        done = tokens = 0
        with self.open_stream() as stream:
            for i, r in enumerate(requests):
                stream.submit(i, r)
            while stream.in_flight:
                for i, res in stream.poll():
                    out[i] = res
                    done += 1
                    tokens += res.generated_tokens
                    if progress:
                        progress(done, tokens)
        return out  # type: ignore[return-value]

    async def _one(self, client, slots: _Slots, r: GenerationRequest) -> GenerationResult:
        if r.seed is not None and self.send_seed and r.n > 1:
            # Per-sample seeds: sample j depends on (seed, offset + j) only, so a prompt's
            # samples drawn in several requests equal one request's.
            parts = await asyncio.gather(*[
                self._with_retries(client, slots, replace(
                    r, n=1, sample_offset=0,
                    seed=sample_seed(self.seed, r.seed, r.sample_offset + j)))
                for j in range(r.n)])
            return GenerationResult(request=r, samples=tuple(s for p in parts for s in p.samples),
                                    prompt_tokens=parts[0].prompt_tokens)
        return await self._with_retries(client, slots, r)

    async def _with_retries(self, client, slots: _Slots, r: GenerationRequest):
        errors: list[str] = []
        failed: set[str] = set()
        for attempt in range(self.max_retries + 1):
            # A free slot on the endpoint with the most free; a retry avoids the endpoints that
            # failed this request while another one is left.
            url = await slots.acquire(failed)
            try:
                return await self._post(client, url, r)
            except _Retryable as exc:
                errors.append(f"{url}: {exc}")
                failed.add(url)
            finally:
                slots.release(url)
            if attempt < self.max_retries:
                delay = self.backoff_base * (2**attempt) * (0.5 + random.random())
                log.warning("openai engine: %s (retry %d in %.1fs)", errors[-1], attempt + 1, delay)
                await asyncio.sleep(delay)
        raise EngineError(
            f"openai engine: request failed after {self.max_retries + 1} attempts; "
            f"last error: {errors[-1]}"
        )

    async def _post(self, client, url: str, r: GenerationRequest) -> GenerationResult:
        import aiohttp

        sp = r.sampling
        body: dict[str, Any] = {
            "model": self.served_model, "n": r.n, "max_tokens": sp.max_tokens,
            "temperature": sp.temperature, "top_p": sp.top_p, "return_token_ids": True,
        }
        if sp.stop:
            body["stop"] = list(sp.stop)
        # Not in the OpenAI API: vLLM's server (and most compatible ones) take them as extra
        # sampling parameters in the body.
        if sp.top_k is not None:
            body["top_k"] = sp.top_k
        if sp.min_p is not None:
            body["min_p"] = sp.min_p
        if r.seed is not None and self.send_seed:
            body["seed"] = r.seed
        if r.prompt is not None:
            path, body["prompt"] = "/completions", r.prompt
        else:
            path, body["messages"] = "/chat/completions", list(r.messages)
        try:
            status, text = await self._wait_reply(_fetch(client, url + path, body), url)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc or 'no reply'}") from exc
        if status >= 500 or status in _RETRY_STATUS:
            raise _Retryable(f"HTTP {status}: {text[:200]}")
        if status >= 400:
            raise EngineError(f"openai engine: {url}{path} answered HTTP {status}: "
                              f"{text[:500]}")
        try:
            data = json.loads(text)
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _Retryable(f"malformed reply from {url}{path}: {exc}") from exc
        return GenerationResult(request=r, samples=_samples(choices, data.get("usage") or {}),
                                prompt_tokens=(data.get("usage") or {}).get("prompt_tokens"))

    async def _wait_reply(self, coro, url: str):
        """Await a reply, warning every WAIT_WARN_S while a server keeps the request open (a
        hung server is otherwise silent until --request-timeout)."""
        task = asyncio.ensure_future(coro)
        waited = 0.0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=WAIT_WARN_S)
                if done:
                    return task.result()
                waited += WAIT_WARN_S
                log.warning("openai engine: no reply from %s for %.0f s (gives up after "
                            "--request-timeout %.0f s, then retries up to --max-retries %d)",
                            url, waited, self.request_timeout, self.max_retries)
        finally:
            if not task.done():
                task.cancel()


class _Slots:
    """`concurrency` request slots per endpoint, shared by every request of a stream: a request
    (or one sample of a seeded request) waits for a free slot on any endpoint, so no endpoint
    idles while another has a queue."""

    def __init__(self, endpoints: tuple[str, ...], concurrency: int) -> None:
        self.free = dict.fromkeys(endpoints, concurrency)
        self.changed = asyncio.Condition()

    async def acquire(self, avoid: set[str]) -> str:
        async with self.changed:
            while True:
                usable = [u for u in self.free if u not in avoid] or list(self.free)
                best = max(usable, key=self.free.__getitem__)
                if self.free[best] > 0:
                    self.free[best] -= 1
                    return best
                await self.changed.wait()

    def release(self, url: str) -> None:
        self.free[url] += 1
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify()


class _OpenAIStream(EngineStream):
    """Requests go out as they are submitted, on an event loop in a thread of their own: each
    endpoint keeps up to `concurrency` requests open (`_Slots`), and replies come back through
    `poll` as they arrive."""

    def __init__(self, engine: OpenAIEngine) -> None:
        self.engine = engine
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._futures: set[concurrent.futures.Future] = set()
        self._error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pope-openai",
                                        daemon=True)
        self._thread.start()
        self._client, self._slots = asyncio.run_coroutine_threadsafe(
            self._open(), self._loop).result()

    async def _open(self):
        import aiohttp

        e = self.engine
        headers = {"Authorization": f"Bearer {e.api_key}"} if e.api_key else {}
        # aiohttp, not httpx: httpx's pool walks every connection (a socket query each) at each
        # request's start and end, ~25 ms of CPU per request with 64 open (bench/RESULTS.md,
        # "Streaming service"); aiohttp's connector hands out an idle connection in O(1).
        connector = aiohttp.TCPConnector(limit=e.concurrency * len(e.endpoints),
                                         limit_per_host=0)
        client = aiohttp.ClientSession(headers=headers, connector=connector,
                                       timeout=aiohttp.ClientTimeout(total=e.request_timeout))
        return client, _Slots(e.endpoints, e.concurrency)

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        fut = asyncio.run_coroutine_threadsafe(
            self.engine._one(self._client, self._slots, request), self._loop)
        self._futures.add(fut)
        fut.add_done_callback(lambda f: self._done.put((key, f)))

    def poll(self, timeout: float | None = None) -> list[tuple[Any, GenerationResult]]:
        if self._error is not None:
            raise self._error
        if not self._futures:
            return []
        try:
            items = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._done.get_nowait())
            except queue.Empty:
                break
        out = []
        for key, fut in items:
            self._futures.discard(fut)
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is not None:
                # Hand back what did finish; the failure ends the stream at the next poll.
                self._error = self._error or exc
                continue
            out.append((key, fut.result()))
        if self._error is not None and not out:
            raise self._error
        return out

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        for fut in list(self._futures):
            fut.cancel()
        self._futures.clear()

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._client.close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


async def _fetch(client, url: str, body: dict[str, Any]) -> tuple[int, str]:
    """POST `body` as JSON; the reply's status and text, read whole (the connection goes back to
    the pool on return)."""
    async with client.post(url, json=body) as resp:
        return resp.status, (await resp.read()).decode("utf-8", errors="replace")


def _samples(choices: list[dict[str, Any]], usage: dict[str, Any]) -> tuple[Sample, ...]:
    texts = [c["text"] if "text" in c else (c.get("message") or {}).get("content") or ""
             for c in choices]
    counts: list[int | None] = [len(c["token_ids"]) if c.get("token_ids") is not None else None
                                for c in choices]
    if None in counts:
        total = int(usage.get("completion_tokens") or 0)
        chars = sum(len(t) for t in texts) or 1
        counts = [round(total * len(t) / chars) if len(texts) > 1 else total for t in texts]
    out = []
    for c, text, n_tok in zip(choices, texts, counts):
        reason = c.get("finish_reason")
        out.append(Sample(text=text, tokens=int(n_tok or 0),
                          finish_reason=reason if reason in ("stop", "length") else
                          ("stop" if reason else "error")))
    return tuple(out)
