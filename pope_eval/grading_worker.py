"""The math-verify worker process: JSON chunks of [gold, answer] pairs in, one status per line out.

Started by `pope_eval.grading` as `python -m pope_eval.grading_worker LIMIT`, so it never depends on
the caller's `__main__` (a script fed on standard input, a notebook, verl's or TRL's workers).
`pope_eval.grading` imports this module (READY), never the other way round.
"""

from __future__ import annotations

import json
import sys

READY = "ready"


def wrap_gold(gold: str) -> str:
    """Gold answers are parsed boxed, so math-verify reads them as one LaTeX answer."""
    g = str(gold).strip()
    if g.startswith("\\boxed") or (g.startswith("$") and g.endswith("$")):
        return g
    return f"\\boxed{{{g}}}"


def verify_one(gold: str, answer: str, limit: int) -> str:
    """Status of one extracted answer against its gold (runs in the worker process)."""
    from math_verify import parse, verify

    stage = "bad_gold"  # the status an unexpected error maps to, by the step that raised it
    try:
        gold_parsed = parse(wrap_gold(gold), parsing_timeout=limit, raise_on_error=True)
        if not gold_parsed:
            return "bad_gold"
        stage = "no_answer"
        pred_parsed = parse(f"\\boxed{{{answer}}}", parsing_timeout=limit, raise_on_error=True)
        if not pred_parsed:
            return "no_answer"
        stage = "wrong"
        ok = verify(gold_parsed, pred_parsed, timeout_seconds=limit, raise_on_error=True)
        return "correct" if ok else "wrong"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # math-verify's TimeoutException derives from BaseException
        if "timeout" in type(exc).__name__.lower():
            return "timeout"
        return stage


def main() -> None:
    limit = int(sys.argv[1])
    import math_verify  # noqa: F401  (import once, before the first task)

    out = sys.stdout
    out.write(READY + "\n")
    out.flush()
    for line in sys.stdin:
        chunk = json.loads(line)
        if chunk is None:
            return
        for gold, answer in chunk:
            out.write(json.dumps(verify_one(gold, answer, limit)) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
