"""Grading throughput with 1 vs 2 worker processes on real (gold, prediction) pairs from MATH-500.

`python bench/grading.py [--data FILE] [--json FILE]`: the predictions are the MATH-500 reference
solutions (\\boxed{} answers) and, for every other row, a wrong answer. The default data is the
150-row subset in tests/data; the figures in bench/RESULTS.md before it used all 500 rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_eval.grading import Grader  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "math500.jsonl"


def pairs(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(x) for x in path.read_text().splitlines()][:500]
    preds = [r["solution"] if i % 2 == 0 else f"So the answer is \\boxed{{{i}7}}."
             for i, r in enumerate(rows)]
    return preds, [r["answer"] for r in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    preds, golds = pairs(args.data)
    rows = {}
    for workers in (1, 2):
        times = []
        for _ in range(args.repeats):
            # Fresh workers each time: sympy caches parses, a second pass would measure the cache.
            with Grader(workers=workers, timeout=5.0) as g:
                g.grade_many(["\\boxed{1}"] * workers * 8, ["1"] * workers * 8)  # start workers
                t = time.perf_counter()
                res = g.grade_many(preds, golds)
                times.append(time.perf_counter() - t)
        dt = min(times)  # best of N: noise on a 2-core machine only slows a run down
        counts = {s: sum(r.status == s for r in res) for s in {r.status for r in res}}
        rows[workers] = {"seconds": round(dt, 2), "samples_per_s": round(len(res) / dt, 1),
                         "statuses": counts}
    speedup = rows[2]["samples_per_s"] / rows[1]["samples_per_s"]
    print(f"{len(preds)} MATH-500 pairs from {args.data} (every other prediction wrong), "
          f"best of {args.repeats}\n")
    print("| workers | seconds | samples/s | statuses |")
    print("|---:|---:|---:|---|")
    for w, r in rows.items():
        print(f"| {w} | {r['seconds']} | {r['samples_per_s']} | {r['statuses']} |")
    print(f"\nspeed-up with 2 workers: {speedup:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "speedup": speedup}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
