"""The search service against the raw engine on the same probes, plus the cost of resuming.

`python bench/service.py [--engine transformers|vllm] [--problems 32 --k 8 --max-tokens 128]`:
tokens/s of `engine.generate` on the curate probes vs `SearchService.run` (grading and journal
included), the vLLM prefix-cache hit rate, and the tokens a finished build generates on rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.build import run_build  # noqa: E402
from pope_data.config import BuildConfig  # noqa: E402
from pope_data.journal import Journal  # noqa: E402
from pope_data.search import make_strategy  # noqa: E402
from pope_data.service import SearchService, SearchTask, probe_seed  # noqa: E402
from pope_data.synthetic import generate_synthetic  # noqa: E402
from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine  # noqa: E402
from pope_eval.prompts import problem_messages  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--engine", default="transformers")
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    problems = generate_synthetic(args.problems, seed=21)
    engine = make_engine(EngineConfig(engine=args.engine, max_batch_size=128))
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.8, top_p=0.95)
    # Warm-up outside the timings.
    engine.generate([GenerationRequest(prompt="Warm up.", n=2, sampling=Sampling(max_tokens=8))])

    reqs = []
    for p in problems:
        probe = make_strategy("once", problem_id=p.id, min_prefix=0, max_prefix=0,
                              n=args.k).next_probes()[0]
        reqs.append(GenerationRequest(messages=tuple(problem_messages(p.problem)), n=args.k,
                                      sampling=sampling, seed=probe_seed(0, "curate", probe)))
    t = time.perf_counter()
    raw = engine.generate(reqs)
    raw_s = time.perf_counter() - t
    raw_tokens = sum(r.generated_tokens for r in raw)

    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.open(Path(tmp) / "j.sqlite", {})
        service = SearchService(engine, journal, sampling=sampling,
                                samples_per_batch=args.problems * args.k)
        tasks = [SearchTask(p, make_strategy("once", problem_id=p.id, min_prefix=0,
                                             max_prefix=0, n=args.k)) for p in problems]
        t = time.perf_counter()
        service.run("curate", tasks)
        svc_s = time.perf_counter() - t
        svc_tokens = journal.tokens()
        cache = getattr(engine, "prefix_cache_stats", lambda: None)()

        # Resume cost: a small finished build, run again.
        cfg = BuildConfig(out=str(Path(tmp) / "build"), limit=6, k=2, n=2,
                          sampling=Sampling(max_tokens=32, temperature=0.8, top_p=0.95),
                          engine=EngineConfig(engine=args.engine))
        run_build(cfg, engine=engine)
        before = Journal.open(Path(tmp) / "build" / "journal.sqlite", cfg.fingerprint()).tokens()
        t = time.perf_counter()
        run_build(cfg, engine=engine)
        resume_s = time.perf_counter() - t
        after = Journal.open(Path(tmp) / "build" / "journal.sqlite", cfg.fingerprint()).tokens()
    engine.close()
    res = {
        "engine": args.engine, "problems": args.problems, "k": args.k,
        "raw_tok_per_s": round(raw_tokens / raw_s, 1),
        "service_tok_per_s": round(svc_tokens / svc_s, 1),
        "ratio": round((svc_tokens / svc_s) / (raw_tokens / raw_s), 3),
        "prefix_cache": cache, "resume_generated_tokens": after - before,
        "resume_seconds": round(resume_s, 2),
    }
    print(f"{args.problems} synthetic problems x k = {args.k}, max {args.max_tokens} tokens, "
          f"engine {args.engine}\n")
    print("| measure | value |\n|---|---:|")
    for key in ("raw_tok_per_s", "service_tok_per_s", "ratio", "resume_generated_tokens",
                "resume_seconds"):
        print(f"| {key} | {res[key]} |")
    if cache:
        print(f"| prefix-cache hit rate | {cache['hit_rate']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
