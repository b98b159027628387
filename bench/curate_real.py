"""Curate stage on the real bundled model: early-stopping waves vs all k at once, same problems and seed.

Run `python bench/curate_real.py [--path tests/data/math500.jsonl --difficulty-max 2 --limit 16 --k 8
--max-tokens 160]`.
Each schedule runs the build's own curate state machines through `SearchService` (one journal
each, under --work), on the transformers engine (per-sample seeds, so sample j of a problem is the
same sample under both schedules). Prints a markdown table (results in bench/RESULTS.md) and
writes --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.journal import Journal  # noqa: E402
from pope_data.search import make_strategy  # noqa: E402
from pope_data.service import SearchService, SearchTask  # noqa: E402
from pope_data.sources import load_problems  # noqa: E402
from pope_eval.engines import EngineConfig, Sampling, make_engine  # noqa: E402

SCHEDULES = ("all", "growing")


def run_schedule(schedule: str, problems, engine, sampling: Sampling, k: int, wave: int,
                 work: Path) -> dict:
    journal = Journal.open(work / f"{schedule}.sqlite", {"bench": "curate_real", "schedule": schedule})
    service = SearchService(engine, journal, sampling=sampling, retention="none")
    t = time.perf_counter()
    results = service.run("curate", [
        SearchTask(p, make_strategy("curate", problem_id=p.id, min_prefix=0, max_prefix=0, n=k,
                                    wave_size=wave, schedule=schedule)) for p in problems])
    seconds = time.perf_counter() - t
    drawn = journal.sample_counts("curate")
    correct = journal.correct_counts("curate")
    batches = len({row.started for row in journal.rows("curate")})  # probes of one call share it
    return {"schedule": schedule, "seconds": round(seconds, 1), "tokens": journal.tokens("curate"),
            "samples": sum(drawn.values()), "engine_calls": batches,
            "hard": sorted(p.id for p in problems if results[p.id].i_star is None),
            "correct": {p.id: correct.get(p.id, 0) for p in problems}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", default="generic")
    ap.add_argument("--path", default="tests/data/math500.jsonl")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--difficulty-max", type=float, default=2,
                    help="MATH level cap: the tiny model solves some level 1-2 problems")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--wave", type=int, default=32, help="cap of the growing waves")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    problems = load_problems(args.source, path=args.path, limit=args.limit, seed=args.seed,
                             difficulty=(None, args.difficulty_max))
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.8, top_p=0.95, seed=args.seed)
    engine = make_engine(EngineConfig(engine="transformers", model=args.model, seed=args.seed))
    work = args.work or Path(tempfile.mkdtemp(prefix="curate-real-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = {s: run_schedule(s, problems, engine, sampling, args.k, args.wave, work)
            for s in SCHEDULES}
    base = runs["all"]
    hard = set(base["hard"])
    # The floor: every hard problem draws all k; every other one stops at its first correct
    # sample (its tokens are not known without the sample lengths, so the floor is in samples).
    floor_samples = len(hard) * args.k + (len(problems) - len(hard))
    print(f"{len(problems)} problems from {args.path} (level <= {args.difficulty_max:g}), k = {args.k}, max_tokens {args.max_tokens}, "
          f"T = {sampling.temperature:g}, top_p {sampling.top_p:g}, seed {args.seed}, transformers "
          f"engine; hard (0 of k) under "
          f"all-at-once: {len(hard)}; sample floor {floor_samples}\n")
    print("| schedule | samples | tokens | vs all (tokens) | engine calls | seconds | "
          "hard set equal to all |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for s, r in runs.items():
        print(f"| {s} | {r['samples']} | {r['tokens']} | {r['tokens'] / base['tokens']:.2f}x | "
              f"{r['engine_calls']} | {r['seconds']} | {set(r['hard']) == hard} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "floor_samples": floor_samples, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
