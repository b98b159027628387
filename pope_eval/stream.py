"""Streaming generate-and-grade: up to a window of samples in the engine, each request graded as it finishes.

`gs = GradedStream(engine, window=1024)`; `gs.submit(key, request, gold)`; `for done in gs.results():`
each `done` is a list of (key, GradedResult) in completion order; the caller may submit more in between.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pope_eval.engines.base import Engine, EngineStream, GenerationRequest, GenerationResult
from pope_eval.errors import ConfigError
from pope_eval.scoring import GradedResult, grade_results

log = logging.getLogger(__name__)

# How long one poll of the engine may block while graded results wait to be handed back.
POLL_WHILE_GRADING_S = 0.01
POLL_IDLE_S = 0.5


@dataclass
class StreamStats:
    """What the stream did: requests and samples through it, and the time-weighted mean share of
    the window the engine held (`busy_share`), from the first submission to the last result."""

    requests: int = 0
    samples: int = 0
    generated_tokens: int = 0
    busy_sample_seconds: float = 0.0
    seconds: float = 0.0
    window: int = 0

    @property
    def busy_share(self) -> float:
        return self.busy_sample_seconds / (self.window * self.seconds) if self.seconds else 0.0


@dataclass
class GradedStream:
    """Keeps up to `window` samples in the engine (a request of n samples counts n; a single
    request larger than the window still goes alone) and grades finished requests on
    `grading_threads` threads over the shared math-verify workers, so that grading never holds
    the engine up (0: grade in the caller's thread, before the next poll; simulations use it).
    Submissions past the window wait in order of submission."""

    engine: Engine
    window: int = 1024
    grading_timeout: float = 5.0
    grading_threads: int = 2
    stats: StreamStats = field(default_factory=StreamStats)

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"--batch-samples: the window must be an integer >= 1, got "
                              f"{self.window!r}")
        # An engine with its own concurrency (an OpenAI client over N endpoints) gets at least
        # what it can keep busy.
        self.window = max(self.window, self.engine.window() or 0)
        self.stats.window = self.window
        self._waiting: deque[tuple[Any, GenerationRequest]] = deque()
        self._golds: dict[Any, str] = {}
        self._in_engine = 0  # samples submitted to the engine, not yet returned
        self._grading: set[Future] = set()
        self._to_grade: list[tuple[Any, GenerationResult]] = []  # finished, not yet grading
        self._graded: queue.SimpleQueue = queue.SimpleQueue()
        self._mark: float | None = None

    # -- the caller's side ------------------------------------------------------------------
    def submit(self, key: Hashable, request: GenerationRequest, gold: str) -> None:
        """Queue a request whose samples are graded against `gold`; `key` is unique while the
        request is in the stream."""
        if key in self._golds:
            raise ConfigError(f"GradedStream: key {key!r} submitted twice")
        self._golds[key] = gold
        self._waiting.append((key, request))

    @property
    def pending(self) -> int:
        """Requests submitted and not yet handed back (waiting, generating or grading)."""
        return len(self._golds)

    @property
    def samples_in_engine(self) -> int:
        return self._in_engine

    def results(self) -> Iterator[list[tuple[Any, GradedResult]]]:
        """Run until every submitted request (including those submitted while iterating) is
        generated and graded; yields each group of graded requests as it is ready."""
        stream = self.engine.open_stream()
        pool = ThreadPoolExecutor(max_workers=max(1, self.grading_threads),
                                  thread_name_prefix="pope-grading")
        try:
            while self._golds:
                self._fill(stream)
                self._dispatch(pool)
                if not (stream.in_flight or self._grading or self._to_grade):
                    raise RuntimeError(f"GradedStream: {len(self._golds)} requests neither "
                                       "generating nor grading")
                if stream.in_flight:
                    timeout = POLL_WHILE_GRADING_S if (self._grading or self._to_grade) \
                        else POLL_IDLE_S
                    finished = stream.poll(timeout)
                    self._tick()
                    if finished:
                        self._finished(finished)
                        self._dispatch(pool)
                else:
                    self._wait_graded(POLL_IDLE_S)
                ready = self._collect()
                if ready:
                    yield ready
        finally:
            stream.close()
            pool.shutdown(wait=True, cancel_futures=True)
            self._tick()
            self._mark = None

    # -- inside ----------------------------------------------------------------------------
    def _fill(self, stream: EngineStream) -> None:
        while self._waiting and (self._in_engine == 0
                                 or self._in_engine + self._waiting[0][1].n <= self.window):
            key, r = self._waiting.popleft()
            self._tick()
            stream.submit(key, r)
            self._in_engine += r.n

    def _tick(self) -> None:
        """Integrate the samples in the engine over time (the busy share)."""
        now = time.monotonic()
        if self._mark is not None:
            dt = now - self._mark
            self.stats.busy_sample_seconds += min(self._in_engine, self.window) * dt
            self.stats.seconds += dt
        self._mark = now

    def _finished(self, finished: list[tuple[Any, GenerationResult]]) -> None:
        for _, res in finished:
            self._in_engine -= res.request.n
            self.stats.requests += 1
            self.stats.samples += len(res.samples)
            self.stats.generated_tokens += res.generated_tokens
        self._to_grade.extend(finished)

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        """Hand everything finished so far to a free grading thread as one call: a grading call
        costs a round trip to the workers, so under load the calls grow instead of queueing."""
        if not self._to_grade or len(self._grading) >= max(1, self.grading_threads):
            return
        finished, self._to_grade = self._to_grade, []
        golds = [self._golds[key] for key, _ in finished]
        if self.grading_threads == 0:
            fut: Future = Future()
            fut.set_result(grade_results([res for _, res in finished], golds,
                                         timeout=self.grading_timeout))
        else:
            fut = pool.submit(grade_results, [res for _, res in finished], golds,
                              timeout=self.grading_timeout)
        self._grading.add(fut)
        keys = [key for key, _ in finished]
        fut.add_done_callback(lambda f: self._graded.put((keys, f)))

    def _wait_graded(self, timeout: float) -> None:
        if not self._grading:
            return
        try:
            item = self._graded.get(timeout=timeout)
        except queue.Empty:
            return
        self._graded.put(item)  # _collect takes it

    def _collect(self) -> list[tuple[Any, GradedResult]]:
        out: list[tuple[Any, GradedResult]] = []
        while True:
            try:
                keys, fut = self._graded.get_nowait()
            except queue.Empty:
                return out
            self._grading.discard(fut)
            graded = fut.result()  # a grading failure is an error, never a verdict
            for key, g in zip(keys, graded):
                del self._golds[key]
                out.append((key, g))
