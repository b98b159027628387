"""Grade generation results with math-verify: results + golds -> counted, graded results.

`grade_results(results, golds)` is the grading step of the streaming loop (`pope_eval.stream`,
behind pass@k runs and the prefix-search service); `generate_and_grade` is the one-batch form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pope_eval.engines.base import Engine, GenerationRequest, GenerationResult, ProgressFn
from pope_eval.grading import GradeResult, grade_many


@dataclass(frozen=True)
class GradedResult:
    """One request's samples with their verdicts, in sample order."""

    result: GenerationResult
    grades: tuple[GradeResult, ...]

    @property
    def correct(self) -> int:
        return sum(g.correct for g in self.grades)

    @property
    def statuses(self) -> list[str]:
        return [g.status for g in self.grades]


def generate_and_grade(
    engine: Engine, requests: Sequence[GenerationRequest], golds: Sequence[str], *,
    timeout: float = 5.0, progress: ProgressFn | None = None,
) -> list[GradedResult]:
    """Generate every request, then grade all samples in one `grade_many` call; `golds[i]` is
    the reference answer of `requests[i]`. Results come back in input order."""
    if len(golds) != len(requests):
        raise ValueError(f"generate_and_grade: {len(requests)} requests but {len(golds)} golds")
    return grade_results(engine.generate(requests, progress), golds, timeout=timeout)


def grade_results(results: Sequence[GenerationResult], golds: Sequence[str], *,
                  timeout: float = 5.0) -> list[GradedResult]:
    """Grade every sample of `results[i]` against `golds[i]` in one `grade_many` call."""
    if len(golds) != len(results):
        raise ValueError(f"grade_results: {len(results)} results but {len(golds)} golds")
    texts = [s.text for r in results for s in r.samples]
    per_sample_golds = [g for g, r in zip(golds, results) for _ in r.samples]
    grades = iter(grade_many(texts, per_sample_golds, timeout=timeout))
    return [GradedResult(r, tuple(next(grades) for _ in r.samples)) for r in results]
