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
