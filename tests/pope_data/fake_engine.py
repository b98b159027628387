"""A scripted engine for unit tests of the search service (search logic only)."""

from __future__ import annotations

import re

from pope_eval.engines import Engine, GenerationResult, Sample


class ScriptedEngine(Engine):
    """Answers correctly iff the prompt shows at least `need[problem]` solution lines.

    The number of shown lines is read from the partial solution in the prompt, so the engine
    sees exactly what a model would. Counts requests and samples, keeps every user turn it was
    sent (`prompts`); can fail after some calls.
    """

    def __init__(self, answers: dict[str, str], need: dict[str, int], fail_after: int | None = None):
        self.name = "scripted"
        self.model = "scripted"
        self.answers = answers  # problem text -> answer
        self.need = need  # problem text -> lines needed
        self.calls = 0
        self.requests = 0
        self.samples = 0
        self.prompts: list[str] = []
        self.fail_after = fail_after

    def _generate(self, requests, progress):
        from pope_eval.errors import EngineError

        if self.fail_after is not None and self.calls >= self.fail_after:
            raise EngineError("scripted engine: endpoint http://127.0.0.1:9/v1 died")
        self.calls += 1
        out = []
        for r in requests:
            user = r.messages[-1]["content"]
            self.prompts.append(user)
            problem = next(p for p in self.answers if user.startswith(p))
            m = re.search(r"<partial_solution>\n(.*)\n</partial_solution>", user, re.DOTALL)
            shown = len(m.group(1).splitlines()) if m else 0
            ok = shown >= self.need[problem]
            text = f"\\boxed{{{self.answers[problem]}}}" if ok else "\\boxed{-1}"
            self.requests += 1
            self.samples += r.n
            out.append(GenerationResult(r, tuple(Sample(text, 5, "stop") for _ in range(r.n))))
        return out


class SeededScriptedEngine(ScriptedEngine):
    """Like ScriptedEngine, but a sample one line short of `need` is right iff its seed says so
    (sample_seed of the request seed and sample index): verdicts depend on per-sample seeds, as
    a real seeded engine's do, so a different batching or order that changed a seed would show."""

    def _generate(self, requests, progress):
        from pope_eval.engines.base import sample_seed

        out = []
        for r, res in zip(requests, super()._generate(requests, progress)):
            user = r.messages[-1]["content"]
            problem = next(p for p in self.answers if user.startswith(p))
            m = re.search(r"<partial_solution>\n(.*)\n</partial_solution>", user, re.DOTALL)
            shown = len(m.group(1).splitlines()) if m else 0
            samples = []
            for j, _s in enumerate(res.samples):
                lucky = sample_seed(0, r.seed, r.sample_offset + j) % 2 == 0
                ok = shown >= self.need[problem] + 1 or (shown >= self.need[problem] and lucky)
                samples.append(Sample(f"\\boxed{{{self.answers[problem] if ok else -1}}}",
                                      3 + j, "stop"))
            out.append(GenerationResult(r, tuple(samples)))
        return out


class OutOfOrderEngine(SeededScriptedEngine):
    """A streaming engine whose requests finish out of order: each poll returns a random share of
    the requests in flight, shuffled (seeded by `order_seed`). Records the most samples it held at
    once; with `stall_after`, writes `marker` and sleeps after that many results (a kill -9 test)."""

    streams = True

    def __init__(self, answers, need, order_seed=0, stall_after=None, marker=None):
        super().__init__(answers, need)
        self.order_seed = order_seed
        self.stall_after = stall_after
        self.marker = marker
        self.max_in_flight = 0
        self.returned = 0

    def open_stream(self):
        return _OutOfOrderStream(self)


class _OutOfOrderStream:
    def __init__(self, engine):
        import random

        self.engine = engine
        self.rng = random.Random(engine.order_seed)
        self.running = []

    @property
    def in_flight(self):
        return len(self.running)

    def submit(self, key, request):
        self.running.append((key, request))
        self.engine.max_in_flight = max(self.engine.max_in_flight,
                                        sum(r.n for _, r in self.running))

    def poll(self, timeout=None):
        import time

        if not self.running:
            return []
        self.rng.shuffle(self.running)
        take = self.rng.randint(1, len(self.running))
        done, self.running = self.running[:take], self.running[take:]
        out = []
        for key, r in done:
            out.append((key, self.engine.generate([r])[0]))
            self.engine.returned += 1
            if self.engine.stall_after is not None and self.engine.returned >= self.engine.stall_after:
                self.engine.marker.write_text("stalled")
                time.sleep(600)
        return out

    def close(self):
        self.running = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
