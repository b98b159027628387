"""Ray backend: N replicas of any engine as Ray actors, fed chunks of each batch, surviving lost replicas.

Built by `make_engine(EngineConfig(..., ray_address="local" | "auto" | "host:port", replicas=N))`;
`RayEngine.start(factory, replicas=N)` wraps any engine factory (tests use a fake one).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from pope_eval.engines.base import (
    Engine,
    EngineStream,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
)
from pope_eval.engines.registry import register_options
from pope_eval.errors import ConfigError, EngineError, require
from pope_eval.options import option

log = logging.getLogger(__name__)

# Seconds to wait for every replica to be placed and to load its model (vLLM start: minutes).
START_TIMEOUT = 1800.0
# Ray runs workers at nice 15; on a shared machine that starves the replicas, which are the work.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}


@dataclass(frozen=True)
class RayOptions:
    """Engine replicas as Ray actors: a wrapper around any backend, not a backend of its own."""

    # None = in process; "local" = start a local cluster; "auto" or host:port = existing one
    ray_address: str | None = option(None, "Ray cluster for engine replicas: local, auto or "
                                           "host:port.", flag="--ray", operational=True)
    replicas: int = option(1, "Engine replicas (Ray actors; needs --ray).", operational=True)

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) \
                or self.replicas < 1:
            raise ConfigError(f"--replicas: must be >= 1, got {self.replicas}")
        if self.replicas > 1 and not self.ray_address:
            raise ConfigError("--replicas: more than one replica needs --ray "
                              "(local, auto or host:port)")
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("--ray: empty address; use local, auto or host:port")


register_options("ray", RayOptions)


class _Replica:
    """The actor body: one engine built on the worker; chunks in, results out."""

    def __init__(self, factory: Callable[[], Engine], threads: int | None) -> None:
        self.engine = factory()
        self.stream: EngineStream | None = None
        # The transformers engine takes every core of the node; replicas sharing a node must
        # split them, or their spinning OpenMP threads slow each other down.
        if threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)

    def describe(self) -> dict[str, Any]:
        return self.engine.describe()

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return self.engine.generate(requests)

    # The streaming side: the driver's submits and polls reach this actor in the order sent.
    def submit(self, items: list[tuple[Any, GenerationRequest]]) -> None:
        if self.stream is None:
            self.stream = self.engine.open_stream()
        for key, r in items:
            self.stream.submit(key, r)

    def poll(self, timeout: float) -> list[tuple[Any, GenerationResult]]:
        return self.stream.poll(timeout) if self.stream is not None else []

    def close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def close(self) -> None:
        self.close_stream()
        self.engine.close()


def split_chunks(requests: list[GenerationRequest], chunks: int) -> list[list[int]]:
    """Contiguous runs of request indices with about equal samples each (requests stay whole).

    Contiguous, because callers put one problem's probes side by side for vLLM's prefix cache.
    """
    total = sum(r.n for r in requests)
    chunks = max(1, min(chunks, len(requests)))
    out: dict[int, list[int]] = {}
    done = 0
    for i, r in enumerate(requests):
        # A request goes to the chunk holding the middle of its run of samples.
        out.setdefault(min(chunks - 1, int((done + r.n / 2) * chunks / total)), []).append(i)
        done += r.n
    return list(out.values())


@dataclass
class RayEngine(Engine):
    """Replica actors placed by Ray (one GPU each, or a share of a CPU node's cores)."""

    actors: list[Any] = field(default_factory=list)
    inner: dict[str, Any] = field(default_factory=dict)
    address: str = "local"
    chunks_per_replica: int = 2  # >1: a fast replica takes more chunks than a slow one
    owns_ray: bool = False
    replicas_lost: int = 0

    streams = True  # each replica streams (its engine's own stream), requests go to the least busy

    def __post_init__(self) -> None:
        self.name = "ray"

    def open_stream(self) -> EngineStream:
        return _RayStream(self)

    @classmethod
    def from_config(cls, config) -> RayEngine:
        if not config.ray_address:
            raise ConfigError("RayEngine: EngineConfig.ray_address (--ray) is not set")
        # Imported here: the factory imports this module when a config names --ray.
        from pope_eval.engines.config import resolve_engine_name
        from pope_eval.engines.factory import make_engine

        # `auto` resolved here, as in the run's fingerprint, not on each worker node.
        inner = replace(config, engine=resolve_engine_name(config), ray_address=None, replicas=1)
        return cls.start(partial(make_engine, inner), replicas=config.replicas,
                         address=config.ray_address, model=config.model)

    @classmethod
    def start(cls, factory: Callable[[], Engine], *, replicas: int, address: str = "local",
              model: str = "", chunks_per_replica: int = 2) -> RayEngine:
        """Connect to (or start) Ray, place `replicas` actors each running `factory()`."""
        ray = require("ray", "ray")
        if replicas < 1:
            raise ConfigError(f"--replicas: must be >= 1, got {replicas}")
        owns = not ray.is_initialized()
        if owns:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False,
                         _system_config=LOCAL_SYSTEM_CONFIG)
            else:
                ray.init(address=address, log_to_driver=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus:
            options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            threads = None
        else:
            # A CPU cluster: each replica reserves an equal share of the largest node's cores.
            node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]),
                            default=1)
            threads = max(1, int(min(node_cpus, resources.get("CPU", 1) // replicas)))
            options = {"num_cpus": threads}
        log.info("ray: %d replicas, %s each (cluster: %s)", replicas, options, resources)
        actor_cls = ray.remote(_Replica).options(max_restarts=0, max_concurrency=1, **options)
        actors = [actor_cls.remote(factory, threads) for _ in range(replicas)]
        engine = cls(model=model, actors=actors, address=address,
                     chunks_per_replica=chunks_per_replica, owns_ray=owns)
        try:
            engine.inner = engine._wait_ready(ray, resources, options)
        except BaseException:
            engine.close()
            raise
        return engine

    def _wait_ready(self, ray, resources: dict, options: dict) -> dict[str, Any]:
        refs = [a.describe.remote() for a in self.actors]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT)
        if pending:
            raise EngineError(
                f"ray: {len(pending)} of {len(refs)} replicas not started after "
                f"{START_TIMEOUT:.0f} s; each needs {options} and the cluster has {resources}: "
                "lower --replicas or add nodes")
        try:
            described = ray.get(ready)
        except ray.exceptions.RayError as exc:
            raise EngineError(f"ray: a replica failed to start: {exc}") from exc
        return described[0]

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model, "inner": self.inner,
                "replicas": len(self.actors), "ray_address": self.address}

    def _generate(self, requests: list[GenerationRequest],
                  progress: ProgressFn | None) -> list[GenerationResult]:
        ray = require("ray", "ray")
        if not self.actors:
            raise EngineError(f"ray: no live replica ({self.replicas_lost} died)")
        chunks = split_chunks(requests, len(self.actors) * self.chunks_per_replica)
        pending = deque(range(len(chunks)))
        idle = list(self.actors)
        in_flight: dict[Any, tuple[Any, int]] = {}
        results: list[list[GenerationResult] | None] = [None] * len(chunks)
        done_requests = tokens = 0
        last_error: Exception | None = None
        while pending or in_flight:
            while pending and idle:
                actor, c = idle.pop(), pending.popleft()
                ref = actor.generate.remote([requests[i] for i in chunks[c]])
                in_flight[ref] = (actor, c)
            if not in_flight:
                raise EngineError(
                    f"ray: all {self.replicas_lost} replicas died; {len(pending)} of "
                    f"{len(chunks)} chunks of this batch unfinished; last error: {last_error}")
            finished, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in finished:
                actor, c = in_flight.pop(ref)
                try:
                    chunk = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    # The replica is gone (process, node or actor killed): drop it, and give
                    # its chunk to another one. Nothing of the batch was returned yet, so the
                    # caller records nothing twice.
                    last_error = exc
                    self._drop(ray, actor)
                    pending.appendleft(c)
                    log.warning("ray: replica lost (%d of %d left), chunk %d retried: %s",
                                len(self.actors), len(self.actors) + self.replicas_lost, c,
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    continue
                results[c] = chunk
                idle.append(actor)
                done_requests += len(chunk)
                tokens += sum(r.generated_tokens for r in chunk)
                if progress:
                    progress(done_requests, tokens)
        out: list[GenerationResult] = [None] * len(requests)  # type: ignore[list-item]
        for c, indices in enumerate(chunks):
            for i, res in zip(indices, results[c]):
                out[i] = res
        return out

    def _drop(self, ray, actor: Any) -> None:
        if actor in self.actors:
            self.actors.remove(actor)
            self.replicas_lost += 1
            ray.kill(actor)

    def close(self) -> None:
        if "ray" not in sys.modules:
            return
        ray = sys.modules["ray"]
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        self.owns_ray = False


# How long one poll of a replica may run before the driver can hand it more requests.
REPLICA_POLL_S = 0.2


class _RayStream(EngineStream):
    """Requests streamed over the replicas: each goes to the replica with the fewest samples in
    flight, where it joins that replica's own stream (vLLM: its running batch); every replica
    with work has one poll outstanding. A replica lost mid-stream is dropped and its unfinished
    requests go to the others (none of them was returned, so none was recorded)."""

    def __init__(self, engine: RayEngine) -> None:
        self.engine = engine
        self.ray = require("ray", "ray")
        self._requests: dict[Any, GenerationRequest] = {}
        self._on: dict[Any, set] = {a: set() for a in engine.actors}  # actor -> keys in flight
        self._outbox: dict[Any, list] = {a: [] for a in engine.actors}
        self._polls: dict[Any, Any] = {}  # poll ref -> actor
        self._last_error: Exception | None = None

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    def _load(self, actor) -> int:
        return sum(self._requests[k].n for k in self._on[actor])

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        if not self._on:
            raise EngineError(f"ray: no live replica ({self.engine.replicas_lost} died); "
                              f"last error: {self._last_error}")
        self._requests[key] = request
        actor = min(self._on, key=self._load)
        self._on[actor].add(key)
        self._outbox[actor].append((key, request))

    def _send(self) -> None:
        waiting = set(self._polls.values())
        for actor, items in self._outbox.items():
            if items:
                actor.submit.remote(items)
                self._outbox[actor] = []
            if self._on[actor] and actor not in waiting:
                self._polls[actor.poll.remote(REPLICA_POLL_S)] = actor

    def poll(self, timeout: float | None = None) -> list[tuple[Any, GenerationResult]]:
        ray = self.ray
        out: list[tuple[Any, GenerationResult]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._requests and not out:
            self._send()
            if not self._polls:
                raise EngineError(f"ray: all {self.engine.replicas_lost} replicas died; "
                                  f"{len(self._requests)} requests unfinished; last error: "
                                  f"{self._last_error}")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._polls), num_returns=1, timeout=left)
            for ref in ready:
                actor = self._polls.pop(ref)
                try:
                    finished = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    self._lose(actor, exc)
                    continue
                for key, res in finished:
                    self._on[actor].discard(key)
                    del self._requests[key]
                    out.append((key, res))
            if deadline is not None and time.monotonic() >= deadline:
                break
        return out

    def _lose(self, actor, exc: Exception) -> None:
        self._last_error = exc
        keys = self._on.pop(actor)
        self._outbox.pop(actor, None)
        self._polls = {ref: a for ref, a in self._polls.items() if a is not actor}
        self.engine._drop(self.ray, actor)
        log.warning("ray: replica lost (%d left), %d requests resubmitted: %s", len(self._on),
                    len(keys), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if not self._on:
            raise EngineError(f"ray: all {self.engine.replicas_lost} replicas died; "
                              f"{len(self._requests)} requests unfinished; last error: {exc}")
        for key in sorted(keys, key=repr):
            request = self._requests.pop(key)
            self.submit(key, request)

    def close(self) -> None:
        for actor in self._on:
            try:
                actor.close_stream.remote()
            except Exception:  # a replica already gone
                pass
        self._requests.clear()
        self._polls.clear()
