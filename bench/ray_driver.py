"""RayEngine driver cost: probes/s one driver sustains with many instant fake replicas, and 1 vs 2 real replicas.

`python bench/ray_driver.py [--replicas 1,2,4,8,16] [--real] [--json FILE]`; prints markdown tables
(results in bench/RESULTS.md). Fake replicas answer at once, so the time measured is the driver's
own: chunking, pickling requests and results, `ray.wait`, reassembly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from pope_data.synthetic import generate_synthetic  # noqa: E402
from pope_eval.engines import (  # noqa: E402
    Engine,
    EngineConfig,
    GenerationRequest,
    GenerationResult,
    Sample,
    Sampling,
)
from pope_eval.engines.ray_engine import RayEngine  # noqa: E402
from pope_eval.prompts import problem_messages  # noqa: E402


@dataclass
class InstantEngine(Engine):
    """Answers every sample at once with `chars` characters of text (a finished completion)."""

    chars: int = 2000

    def _generate(self, requests, progress):
        text = "x" * self.chars
        return [GenerationResult(r, tuple(Sample(text, self.chars // 4, "length")
                                          for _ in range(r.n))) for r in requests]


def probe_requests(count: int, n: int, max_tokens: int) -> list[GenerationRequest]:
    problems = generate_synthetic(count, seed=11, difficulty=3)
    return [GenerationRequest(messages=tuple(problem_messages(p.problem)), n=n,
                              sampling=Sampling(max_tokens=max_tokens, temperature=0.8, top_p=0.95),
                              seed=i, tag=(p.id, 0, 0))
            for i, p in enumerate(problems)]


def driver_leg(replicas: int, batches: int, probes: int, n: int, chars: int) -> dict:
    """Many service-sized batches through `replicas` instant actors; the driver's CPU and memory."""
    me = psutil.Process()
    reqs = probe_requests(probes, n, 256)
    engine = RayEngine.start(partial(InstantEngine, model="instant", chars=chars),
                             replicas=replicas, model="instant")
    try:
        engine.generate(reqs)  # warm: actors up, code shipped
        cpu0, t0 = me.cpu_times(), time.perf_counter()
        for _ in range(batches):
            engine.generate(reqs)
        wall = time.perf_counter() - t0
        cpu1 = me.cpu_times()
        rss = me.memory_info().rss
    finally:
        engine.close()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    done = batches * probes
    return {"replicas": replicas, "probes": done, "samples": done * n, "seconds": round(wall, 2),
            "probes_per_s": round(done / wall, 1),
            "driver_cpu_s": round(cpu, 2),
            "probes_per_driver_cpu_s": round(done / max(cpu, 1e-9), 1),
            "driver_rss_mb": round(rss / 2**20)}


def real_leg(replicas: int, prompts: int, n: int, max_tokens: int) -> dict:
    from pope_eval.engines import make_engine

    engine = make_engine(EngineConfig(engine="transformers", ray_address="local",
                                      replicas=replicas, seed=0))
    reqs = probe_requests(prompts, n, max_tokens)
    try:
        t0 = time.perf_counter()
        results = engine.generate(reqs)
        wall = time.perf_counter() - t0
    finally:
        engine.close()
    tokens = sum(r.generated_tokens for r in results)
    return {"replicas": replicas, "tokens": tokens, "seconds": round(wall, 1),
            "tok_per_s": round(tokens / wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicas", default="1,2,4,8,16", help="fake replica counts")
    ap.add_argument("--batches", type=int, default=20, help="engine calls per fake leg")
    ap.add_argument("--probes", type=int, default=64, help="probes per engine call")
    ap.add_argument("--n", type=int, default=8, help="samples per probe")
    ap.add_argument("--chars", type=int, default=2000, help="characters per fake completion")
    ap.add_argument("--real", action="store_true", help="also 1 vs 2 transformers replicas")
    ap.add_argument("--real-prompts", type=int, default=16)
    ap.add_argument("--real-n", type=int, default=4)
    ap.add_argument("--real-max-tokens", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import ray

    counts = [int(x) for x in args.replicas.split(",")]
    # Logical CPUs: the fake actors only need a process each, not a core.
    ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
    fake = [driver_leg(r, args.batches, args.probes, args.n, args.chars) for r in counts]
    ray.shutdown()
    print(f"\n{os.cpu_count()} CPUs; {args.probes} probes x {args.n} samples x {args.chars} chars "
          f"per engine call, {args.batches} calls\n")
    print("| fake replicas | probes/s | samples/s | driver CPU s | probes per driver CPU s "
          "| driver RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for f in fake:
        print(f"| {f['replicas']} | {f['probes_per_s']} | {round(f['probes_per_s'] * args.n)} | "
              f"{f['driver_cpu_s']} | {f['probes_per_driver_cpu_s']} | {f['driver_rss_mb']} |")
    real = []
    if args.real:
        # The real legs start their own 2-CPU local cluster each (`--ray local`).
        real = [real_leg(r, args.real_prompts, args.real_n, args.real_max_tokens) for r in (1, 2)]
        print("\n| transformers replicas | tokens | seconds | tokens/s |\n|---:|---:|---:|---:|")
        for r in real:
            print(f"| {r['replicas']} | {r['tokens']} | {r['seconds']} | {r['tok_per_s']} |")
    if args.json:
        args.json.write_text(json.dumps({"fake": fake, "real": real, "args": vars(args)},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
