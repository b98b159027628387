"""Oracle solutions for answer-only sources (DAPO): a stronger model writes them, math-verify keeps the right ones.

`solve(problems, service, n=4)` runs the journaled "solve" stage through the search service and returns
the problems with a verified solution attached, plus the ids it could not solve.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from pope_data.records import Problem
from pope_data.search import make_strategy
from pope_data.service import SearchService, SearchTask

log = logging.getLogger(__name__)

STAGE = "solve"


def solve(problems: list[Problem], service: SearchService, *,
          n: int = 4) -> tuple[list[Problem], list[str]]:
    """Sample n solutions per problem with the service's (oracle) engine; keep the first whose
    final answer verifies against the gold. Resumable: finished problems come from the journal."""
    tasks = [SearchTask(p, make_strategy("once", problem_id=p.id, min_prefix=0, max_prefix=0,
                                         n=n)) for p in problems]
    service.run(STAGE, tasks)
    first_correct: dict[str, str] = {}
    for row in service.journal.rows(STAGE, with_texts=True):
        if row.problem_id in first_correct:
            continue
        for text, status in zip(row.texts, row.statuses):
            if status == "correct" and text.strip():
                first_correct[row.problem_id] = text.strip()
                break
    solved, failed = [], []
    for p in problems:
        if p.id in first_correct:
            solved.append(replace(p, solution=first_correct[p.id]))
        else:
            failed.append(p.id)
    if failed:
        log.warning("oracle: no verified solution for %d of %d problems", len(failed),
                    len(problems))
    return solved, failed
