"""vLLM with and without torch.compile: start-up time and generation throughput on one load.

`python bench/vllm_compile.py [--legs off,on,off --prompts 64 --samples 1 --max-tokens 256]
[--json bench/vllm_compile.json]`. Each leg starts a fresh in-process engine
(`--vllm-compile off|on`) in its own process, so every start pays what a user's start pays, then
generates the same requests. Legs run one after another, never side by side; the first leg is
repeated last to show the drift of the machine over the run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def child(choice: str, prompts: int, samples: int, max_tokens: int) -> dict:
    from bench.engines import requests
    from pope_eval.engines import EngineConfig, make_engine

    t0 = time.perf_counter()
    engine = make_engine(EngineConfig(engine="vllm", model="smollm2-135m", seed=0,
                                      vllm_compile=choice))
    started = time.perf_counter() - t0
    try:
        eager = bool(engine.llm.llm_engine.vllm_config.model_config.enforce_eager)
        t1 = time.perf_counter()
        results = engine.generate(requests(prompts, samples, max_tokens))
        seconds = time.perf_counter() - t1
    finally:
        engine.close()
    tokens = sum(r.generated_tokens for r in results)
    return {"vllm_compile": choice, "enforce_eager": eager, "start_s": round(started, 1),
            "generate_s": round(seconds, 1), "tokens": tokens,
            "tok_per_s": round(tokens / seconds, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--legs", default="off,on,off")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.prompts, args.samples,
                                           args.max_tokens)), flush=True)
        return 0
    legs = [x.strip() for x in args.legs.split(",") if x.strip()]
    bad = [x for x in legs if x not in ("auto", "on", "off")]
    if bad:
        ap.error(f"--legs: unknown {', '.join(bad)}; choose from auto, on, off")
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    rows = []
    for leg in legs:
        res = subprocess.run([sys.executable, __file__, "--child", leg, "--prompts",
                              str(args.prompts), "--samples", str(args.samples),
                              "--max-tokens", str(args.max_tokens)],
                             capture_output=True, text=True, env=env)
        line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
        if res.returncode != 0 or not line:
            print(res.stdout[-2000:] + res.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(line[-1][len("RESULT "):])
        row["load_1min"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| leg | eager | start s | generate s | tokens | tok/s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['vllm_compile']} | {r['enforce_eager']} | {r['start_s']} | "
              f"{r['generate_s']} | {r['tokens']} | {r['tok_per_s']} |")
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python bench/vllm_compile.py " + " ".join(argv or sys.argv[1:]),
            "load": {"prompts": args.prompts, "samples": args.samples,
                     "max_tokens": args.max_tokens},
            "legs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
