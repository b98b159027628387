"""verl reward functions for POPE rows: one math-verify grading path (`pope_eval.grading`).

Point verl at them with `reward.custom_reward_function.path=pkg://pope_train.reward` and
`name=compute_score` (per sample), `compute_score_async` (coalesces verl 0.9's concurrent
per-sample calls into one `grade_many` batch) or `compute_score_batch` (verl's batch manager).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from pope_eval.grading import GradeResult, grade_many

log = logging.getLogger(__name__)

GRADE_TIMEOUT_S = 5.0
# How long the async path waits for more concurrent calls before grading what it holds; verl's
# reward loop decodes responses in threads, so calls of one batch arrive a few ms apart.
COALESCE_WINDOW_S = 0.01
MAX_COALESCED = 512


def _is_guided(extra_info: Mapping[str, Any] | None) -> bool:
    if not extra_info:
        return False
    return bool(extra_info.get("guided", False))


def _result(grade: GradeResult, extra_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """verl logs every key: `score` is the reward, `acc` the accuracy verl's validation reduces
    to mean@n / best@n per data source, `pred` enables its maj@n; `status` is kept as text."""
    score = 1.0 if grade.correct else 0.0
    return {
        "score": score,
        "acc": score,
        "guided": _is_guided(extra_info),
        "status": grade.status,
        "pred": grade.extracted or "",
    }


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl's custom-reward signature: 1.0 when the response's final answer matches the gold."""
    grade = grade_many([solution_str], [ground_truth], timeout=GRADE_TIMEOUT_S)[0]
    return _result(grade, extra_info)


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[str],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """verl's batch reward signature (`reward_manager.name=batch`): one grading call per batch."""
    n = len(solution_strs)
    if len(ground_truths) != n or len(data_sources) != n:
        raise ValueError(
            f"compute_score_batch: {n} responses, {len(ground_truths)} ground truths and "
            f"{len(data_sources)} data sources; they must match"
        )
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    grades = grade_many(list(solution_strs), list(ground_truths), timeout=GRADE_TIMEOUT_S)
    return [_result(g, info) for g, info in zip(grades, infos)]


def _grade_batch(predictions: list[str], golds: list[str]) -> list[GradeResult]:
    return grade_many(predictions, golds, timeout=GRADE_TIMEOUT_S)


class _Coalescer:
    """Collects concurrent async calls on one event loop and grades them in one batch."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str, asyncio.Future]] = []
        self.flushing = False

    async def submit(self, prediction: str, gold: str) -> GradeResult:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((prediction, gold, fut))
        if not self.flushing:
            self.flushing = True
            loop.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                await asyncio.sleep(COALESCE_WINDOW_S)
                batch, self.pending = self.pending[:MAX_COALESCED], self.pending[MAX_COALESCED:]
                preds = [p for p, _, _ in batch]
                golds = [g for _, g, _ in batch]
                try:
                    grades = await loop.run_in_executor(None, _grade_batch, preds, golds)
                except Exception as exc:  # hand the error to every waiting call
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, _, fut), grade in zip(batch, grades):
                    if not fut.done():
                        fut.set_result(grade)
        finally:
            self.flushing = False


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Coalescer] = (
    weakref.WeakKeyDictionary()
)


async def compute_score_async(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Async variant of `compute_score` for verl's reward loop: calls made concurrently on one
    event loop are graded together in one `grade_many` call, off the loop's thread."""
    loop = asyncio.get_running_loop()
    coalescer = _coalescers.get(loop)
    if coalescer is None:
        coalescer = _coalescers[loop] = _Coalescer()
    grade = await coalescer.submit(solution_str, ground_truth)
    return _result(grade, extra_info)
