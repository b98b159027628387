"""The streaming search driver: keeps an engine busy with probes from many problems, grades, journals.

`SearchService(engine, journal, ...).run(stage, tasks)` drives one strategy per problem to the end
and returns their SearchResults; finished probes found in the journal are replayed, never regenerated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pope_data.journal import Journal, ProbeRow
from pope_data.records import Probe, ProbeOutcome, Problem, SearchResult
from pope_data.search import Strategy
from pope_data.segments import Segmentation
from pope_eval.engines import Engine, GenerationRequest, Sampling
from pope_eval.prompts import Guidance, guided_messages
from pope_eval.scoring import GradedResult
from pope_eval.seeds import stable_int
from pope_eval.stream import GradedStream, StreamStats

log = logging.getLogger(__name__)


@dataclass
class SearchTask:
    """A problem, its segmented solution (None for unguided-only stages) and its strategy."""

    problem: Problem
    strategy: Strategy
    segmentation: Segmentation | None = None

    def prefix_text(self, i: int) -> str:
        if i == 0:
            return ""
        if self.segmentation is None:
            raise ValueError(f"problem {self.problem.id}: prefix {i} asked without a solution")
        return self.segmentation.prefix(i)

    def prefix_fraction(self, i: int) -> float:
        return self.segmentation.fraction(i) if (self.segmentation and i) else 0.0


@dataclass
class ServiceProgress:
    """What the CLI shows: problems done, probes in flight, tokens and throughput."""

    stage: str
    problems_total: int
    problems_done: int = 0
    probes_in_flight: int = 0
    probes_done: int = 0
    probes_replayed: int = 0
    generated_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / max(time.monotonic() - self.started, 1e-9)


def probe_seed(seed: int, stage: str, probe: Probe) -> int:
    """Stable request seed from (run seed, stage, problem, prefix). The wave is left out on
    purpose: with the probe's sample offset, sample j of a prefix is the same sample however the
    prefix's samples are split into waves (so early stopping never changes a verdict)."""
    return stable_int(f"{seed}:{stage}:{probe.problem_id}:{probe.prefix_segments}", 4)


def kept_texts(retention: str, texts: list[str], statuses: list[str]) -> list[str]:
    """The sample texts a journal row keeps: all, the correct ones (others stored as ""), none."""
    if retention == "all":
        return list(texts)
    if retention == "correct":
        return [t if st == "correct" else "" for t, st in zip(texts, statuses)]
    return []


@dataclass
class SearchService:
    engine: Engine
    journal: Journal
    sampling: Sampling = field(default_factory=Sampling)
    # The window (--batch-samples): samples in the engine at once; a finished probe's place is
    # taken by the next probe at once (pope_eval.stream.GradedStream).
    samples_per_batch: int = 1024
    grading_timeout: float = 5.0
    grading_threads: int = 2  # beside generation; 0 grades in the driver's thread (simulations)
    progress: Callable[[ServiceProgress], None] | None = None
    # Which sample texts the journal keeps: all, correct (the rest stored as ""), none. Verdicts,
    # counts and tokens are always kept, so resume is exact under each.
    retention: str = "all"
    # How guided probes are worded (--guidance); None is POPE's template.
    guidance: Guidance | None = None
    # What the last run's stream did (requests, samples, busy share of the window).
    stream_stats: StreamStats | None = field(default=None, init=False)

    def params(self) -> dict:
        return {**self.sampling.to_dict(), **self.engine.describe()}

    def run(self, stage: str, tasks: list[SearchTask]) -> dict[str, SearchResult]:
        """Drive every task's strategy to the end through one stream: as each probe finishes it
        is graded, journaled (committed before its strategy moves) and its problem's next probes
        are submitted at once. A problem has at most one round of probes in flight and its
        outcomes are applied in probe order, so the verdicts never depend on completion order."""
        by_id = {t.problem.id: t for t in tasks}
        state = ServiceProgress(stage=stage, problems_total=len(tasks))
        ready = self._replay(stage, by_id, state)
        self._report(state)
        if not ready:
            return {pid: t.strategy.result() for pid, t in by_id.items()}
        stream = GradedStream(self.engine, window=self.samples_per_batch,
                              grading_timeout=self.grading_timeout,
                              grading_threads=self.grading_threads)
        self.stream_stats = stream.stats
        # Each problem's round in flight: its probes in the order the strategy gave them, and
        # the outcomes back so far.
        rounds: dict[str, list[Probe]] = {}
        outcomes: dict[tuple, ProbeOutcome] = {}
        started: dict[tuple, float] = {}

        def submit(probes: list[Probe]) -> None:
            # One problem's probes side by side: they share the prompt up to the prefix, which
            # vLLM's automatic prefix cache reuses.
            for p in sorted(probes, key=lambda p: (p.problem_id, p.prefix_segments, p.wave)):
                rounds.setdefault(p.problem_id, []).append(p)
                started[p.key] = time.time()
                stream.submit(p.key, self._request(stage, p, by_id[p.problem_id]),
                              by_id[p.problem_id].problem.answer)

        submit(ready)
        state.probes_in_flight = stream.pending
        self._report(state)
        params = self.params()
        for finished in stream.results():
            rows = []
            for key, g in finished:
                p = next(q for q in rounds[key[0]] if q.key == key)
                rows.append(self._row(stage, p, g, by_id[p.problem_id], params, started.pop(key)))
                r = g.result
                outcomes[key] = ProbeOutcome(p, len(r.samples), g.correct, r.generated_tokens)
                state.generated_tokens += r.generated_tokens
            # Commit before the strategies move on: a crash after this line loses nothing.
            self.journal.record_many(rows)
            state.probes_done += len(finished)
            nxt: list[Probe] = []
            for pid in sorted({key[0] for key, _ in finished}):
                round_ = rounds[pid]
                if any(p.key not in outcomes for p in round_):
                    continue  # the rest of its round is still running
                task = by_id[pid]
                del rounds[pid]
                for p in round_:
                    task.strategy.update(outcomes.pop(p.key))
                probes = task.strategy.next_probes()
                if task.strategy.done:
                    state.problems_done += 1
                nxt.extend(probes)
            submit(nxt)
            state.probes_in_flight = stream.pending
            self._report(state)
        return {pid: t.strategy.result() for pid, t in by_id.items()}

    def _report(self, state: ServiceProgress) -> None:
        if self.progress:
            self.progress(state)

    def _replay(self, stage: str, by_id: dict[str, SearchTask],
                state: ServiceProgress) -> list[Probe]:
        """Feed journaled outcomes back into fresh strategies; return the probes still to run."""
        recorded = {(r.problem_id, r.prefix_segments, r.wave): r for r in self.journal.rows(stage)}
        ready: list[Probe] = []
        for task in by_id.values():
            while True:
                probes = task.strategy.next_probes()
                if not probes:
                    break
                pending = []
                for pr in probes:
                    r = recorded.get(pr.key)
                    if r is None:
                        pending.append(pr)
                    else:
                        task.strategy.update(ProbeOutcome(pr, r.samples, r.correct, r.tokens))
                        state.probes_replayed += 1
                if pending:
                    ready.extend(pending)
                    break
            if task.strategy.done:
                state.problems_done += 1
        return ready

    def _request(self, stage: str, p: Probe, task: SearchTask) -> GenerationRequest:
        return GenerationRequest(
            messages=tuple(guided_messages(task.problem.problem, task.prefix_text(p.prefix_segments),
                                           guidance=self.guidance)),
            n=p.n, sampling=self.sampling, seed=probe_seed(self.sampling.seed, stage, p),
            sample_offset=p.offset, tag=p.key)

    def _row(self, stage: str, p: Probe, g: GradedResult, task: SearchTask, params: dict,
             started: float) -> ProbeRow:
        r = g.result
        return ProbeRow(
            stage=stage, problem_id=p.problem_id, prefix_segments=p.prefix_segments,
            wave=p.wave, prefix_fraction=task.prefix_fraction(p.prefix_segments),
            samples=len(r.samples), correct=g.correct, tokens=r.generated_tokens,
            finish_reasons=[s.finish_reason for s in r.samples], statuses=g.statuses,
            params=params, seed=probe_seed(self.sampling.seed, stage, p), started=started,
            texts=kept_texts(self.retention, [s.text for s in r.samples], g.statuses))
