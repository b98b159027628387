"""The math-verify worker process: JSON chunks of [gold, answer] pairs in, one status per line out.

Started by `pope_eval.grading` as `python -m pope_eval.grading_worker LIMIT`, so it never depends on
the caller's `__main__` (a script fed on standard input, a notebook, verl's or TRL's workers).
"""

from __future__ import annotations

import json
import sys

READY = "ready"


def main() -> None:
    limit = int(sys.argv[1])
    import math_verify  # noqa: F401  (import once, before the first task)

    from pope_eval.grading import verify_one

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
