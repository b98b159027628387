"""Engine utilisation of the search service, batch barrier vs streaming, on a simulated continuous-batching engine.

`python bench/stream_sim.py [--slots 256 1024 4096 16384] [--json bench/stream_sim.json]`: the real
SearchService and strategies drive an engine of S slots in simulated time (one token per running
sequence per step; long-tailed lengths, median ~6k tokens, capped at 32k), for curation and search.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pope_eval.stream as stream_module  # noqa: E402
from pope_data.journal import Journal  # noqa: E402
from pope_data.records import Problem  # noqa: E402
from pope_data.search import DEFAULT_WAVE_SIZE, make_strategy  # noqa: E402
from pope_data.segments import Segmentation  # noqa: E402
from pope_data.service import SearchService, SearchTask  # noqa: E402
from pope_eval.engines.base import (  # noqa: E402
    Engine,
    EngineStream,
    GenerationResult,
    Sample,
    sample_seed,
)
from pope_eval.grading import GradeResult  # noqa: E402
from pope_eval.scoring import GradedResult  # noqa: E402
from pope_eval.seeds import stable_int  # noqa: E402

CAP = 32_768
MEDIAN = 6_000.0
SIGMA = 0.9
SEGMENTS = 12


def _unit(*key: Any) -> float:
    """A stable uniform in [0, 1) from a key."""
    return (stable_int(":".join(map(str, key)), 8) % (1 << 53)) / float(1 << 53)


def length(seed: int | None, index: int) -> int:
    """Tokens of one sample: lognormal (median MEDIAN, sigma SIGMA) capped at CAP."""
    u = min(max(_unit("len", seed, index), 1e-12), 1 - 1e-12)
    z = math.sqrt(2) * _erfinv(2 * u - 1)
    return max(64, min(CAP, int(MEDIAN * math.exp(SIGMA * z))))


def _erfinv(y: float) -> float:
    # Winitzki's approximation refined by two Newton steps: plenty for a simulation.
    a = 0.147
    ln = math.log(1 - y * y)
    t = 2 / (math.pi * a) + ln / 2
    x = math.copysign(math.sqrt(math.sqrt(t * t - ln / a) - t), y)
    for _ in range(2):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def pass_rate(problem_id: str, prefix: int, need: int) -> float:
    """Unguided: 30% of problems never solved, the rest 2-90%; guided: 0.6 from `need` lines."""
    if prefix == 0:
        u = _unit("p0", problem_id)
        return 0.0 if u < 0.3 else 0.02 + 0.88 * (u - 0.3) / 0.7
    return 0.6 if prefix >= need else 0.01


@dataclass
class SimEngine(Engine):
    """S slots batching continuously; `streams` True: requests join as slots free, else each
    generate() call runs its samples through the slots and returns when the last one ends."""

    slots: int = 256
    streaming: bool = True
    need: dict[str, int] = field(default_factory=dict)
    clock: float = 0.0
    busy: float = 0.0  # slot-steps occupied
    calls: int = 0

    def __post_init__(self) -> None:
        self.name = "sim"

    @property
    def streams(self) -> bool:  # type: ignore[override]
        return self.streaming

    def _samples(self, r) -> list[tuple[int, bool]]:
        pid, prefix, _ = r.tag
        p = pass_rate(pid, prefix, self.need.get(pid, 1))
        out = []
        for j in range(r.n):
            idx = r.sample_offset + j
            out.append((length(r.seed, idx), _unit("ok", sample_seed(0, r.seed, idx)) < p))
        return out

    @staticmethod
    def _result(r, samples) -> GenerationResult:
        return GenerationResult(r, tuple(Sample("\\boxed{1}" if ok else "\\boxed{0}", n,
                                                "length" if n >= CAP else "stop")
                                         for n, ok in samples))

    def _generate(self, requests, progress):
        self.calls += 1
        per = [self._samples(r) for r in requests]
        lengths = [n for s in per for n, _ in s]
        end = _run_slots(lengths, self.slots)  # continuous batching inside the call
        self.busy += sum(lengths)
        self.clock += end
        return [self._result(r, s) for r, s in zip(requests, per)]

    def open_stream(self) -> EngineStream:
        if not self.streaming:
            return super().open_stream()
        return _SimStream(self)


def _run_slots(lengths: list[int], slots: int) -> float:
    """When the last of `lengths` ends on `slots` slots, started in order as slots free."""
    free = [0.0] * min(slots, len(lengths))
    heapq.heapify(free)
    end = 0.0
    for n in lengths:
        t = heapq.heappop(free) + n
        end = max(end, t)
        heapq.heappush(free, t)
    return end


class _SimStream(EngineStream):
    def __init__(self, engine: SimEngine) -> None:
        self.e = engine
        self.running: list[tuple[float, int, Any]] = []  # (end time, order, key)
        self.waiting: list[tuple[Any, int]] = []  # (key, length) not yet in a slot
        self.left: dict[Any, int] = {}
        self.samples: dict[Any, tuple[Any, list]] = {}
        self.order = 0
        self.wpos = 0

    @property
    def in_flight(self) -> int:
        return len(self.left)

    def submit(self, key, request) -> None:
        s = self.e._samples(request)
        self.samples[key] = (request, s)
        self.left[key] = len(s)
        for n, _ in s:
            self.waiting.append((key, n))
        self._start()

    def _start(self) -> None:
        while self.wpos < len(self.waiting) and len(self.running) < self.e.slots:
            key, n = self.waiting[self.wpos]
            self.wpos += 1
            self.order += 1
            heapq.heappush(self.running, (self.e.clock + n, self.order, key))
            self.e.busy += n
        if self.wpos > 4096:
            del self.waiting[: self.wpos]
            self.wpos = 0

    def poll(self, timeout=None):
        out = []
        while self.running and not out:
            t, _, key = heapq.heappop(self.running)
            self.e.clock = t
            self._finish(key, out)
            while self.running and self.running[0][0] == t:
                self._finish(heapq.heappop(self.running)[2], out)
            self._start()
        return out

    def _finish(self, key, out) -> None:
        self.left[key] -= 1
        if self.left[key] == 0:
            del self.left[key]
            r, s = self.samples.pop(key)
            out.append((key, SimEngine._result(r, s)))


def fast_grade(results, golds, *, timeout: float = 5.0) -> list[GradedResult]:
    """Exact-match grading in process (math-verify's cost is measured in bench/grading.py)."""
    return [GradedResult(r, tuple(GradeResult("correct" if s.text == "\\boxed{1}" else "wrong",
                                              s.text[7:-1]) for s in r.samples))
            for r in results]


def _tasks(stage: str, count: int, need: dict[str, int],
           search_wave: int | None = None) -> list[SearchTask]:
    text = "\n".join(f"Step {i}: work." for i in range(1, SEGMENTS + 1))
    ends = tuple(text.index(f"Step {i + 1}") - 1 if i < SEGMENTS else len(text)
                 for i in range(1, SEGMENTS + 1))
    seg = Segmentation(text=text, ends=ends, mode="steps")
    tasks = []
    for i in range(count):
        pid = f"p{i:06d}"
        need[pid] = 1 + int(_unit("need", pid) * SEGMENTS)
        problem = Problem(id=pid, problem=f"Problem {i}.", answer="1", source="sim", solution=text)
        if stage == "curate":
            strategy = make_strategy("curate", problem_id=pid, min_prefix=0, max_prefix=0, n=128)
            tasks.append(SearchTask(problem, strategy))
        else:
            strategy = make_strategy("bisect-seq", problem_id=pid, min_prefix=1,
                                     max_prefix=SEGMENTS, n=8, wave_size=search_wave)
            tasks.append(SearchTask(problem, strategy, seg))
    return tasks


def run(stage: str, slots: int, mode: str, problems: int,
        search_wave: int | None = None) -> dict[str, Any]:
    need: dict[str, int] = {}
    tasks = _tasks(stage, problems, need, search_wave)
    streaming = mode.startswith("stream")
    # batch: the old driver, 256 samples per call (the default) or 16x the slots; streaming: a
    # window of 1, 2 or 4 times the slots (past the slots, requests wait in the engine's queue).
    window = {"batch-256": 256, "batch-16x": 16 * slots, "stream-1x": slots,
              "stream-2x": 2 * slots, "stream-4x": 4 * slots,
              "stream-8x": 8 * slots, "stream-16x": 16 * slots}[mode]
    engine = SimEngine(model="sim", slots=slots, streaming=streaming, need=need)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.open(Path(tmp) / "j.sqlite", {})
        service = SearchService(engine, journal, samples_per_batch=window, grading_threads=0)
        cpu, wall = time.process_time(), time.perf_counter()
        results = service.run(stage, tasks)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        probes = journal.count(stage)
        journal.close()
    return {
        "stage": stage, "slots": slots, "mode": mode, "window": window, "problems": problems,
        "utilisation": round(engine.busy / (slots * engine.clock), 4),
        "sim_steps": round(engine.clock), "probes": probes,
        "samples": sum(r.samples for r in results.values()),
        "tokens": round(engine.busy),
        "search_wave": (search_wave or DEFAULT_WAVE_SIZE) if stage == "search" else None,
        "driver_cpu_us_per_probe": round(1e6 * cpu / probes, 1),
        "wall_s": round(wall, 2),
        "verdicts": sum(r.fallback for r in results.values()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slots", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--stages", nargs="+", default=["curate", "search"])
    ap.add_argument("--modes", nargs="+", default=["batch-256", "batch-16x", "stream-4x"])
    ap.add_argument("--per-slot", type=float, default=1.0,
                    help="problems per slot (at least 512; half that at 16,384 slots)")
    ap.add_argument("--search-wave", type=int, nargs="+", default=[None],
                    help=f"samples per wave of the search's probes (bisect-seq, n = 8; default "
                         f"{DEFAULT_WAVE_SIZE}); several values run side by side")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    stream_module.grade_results = fast_grade
    rows = []
    print("| stage | slots | driver | search wave | window | problems | utilisation | samples | "
          "tokens | engine steps | driver CPU/probe (us) | wall s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for stage in args.stages:
        for slots in args.slots:
            per = args.per_slot * (0.5 if slots >= 16384 else 1)
            problems = max(512, int(slots * per))
            verdicts = set()
            for wave in args.search_wave if stage == "search" else [None]:
                for mode in args.modes:
                    r = run(stage, slots, mode, problems, wave)
                    rows.append(r)
                    verdicts.add(r["verdicts"])
                    print(f"| {stage} | {slots} | {mode} | {r['search_wave'] or '-'} | "
                          f"{r['window']} | {problems} | {r['utilisation']:.3f} | "
                          f"{r['samples']} | {r['tokens']} | {r['sim_steps']} | "
                          f"{r['driver_cpu_us_per_probe']} | "
                          f"{r['wall_s']} |", flush=True)
            # Sample j of a prefix is the same sample whatever the driver or the wave size, so
            # the fallbacks (and every i*) are the same in every row of a stage and size.
            assert len(verdicts) == 1, f"verdicts differ between drivers: {verdicts}"
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
