"""sweep-seq vs bisect-seq on the same hard problems with a real model, through `pope-data build`.

Run `python bench/search_real.py --out OUT [--limit 16 --k 4 --n 8 --max-tokens 128 --temperature
0.5 --rate-samples 16 --rate-all]` (the default demo's settings); builds each strategy into
OUT/<strategy> (a finished build there is resumed), compares prefixes.parquet side by side,
estimates the success rate at both chosen prefixes and one segment below each with fresh samples
where they disagree (`--rate-all`: for every problem), and prints markdown (results in
bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.config import BuildConfig  # noqa: E402
from pope_data.segments import segment  # noqa: E402
from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine  # noqa: E402
from pope_eval.grading import grade_many  # noqa: E402
from pope_eval.prompts import guided_messages  # noqa: E402
from pope_eval.seeds import stable_int  # noqa: E402

STRATEGIES = ("sweep-seq", "bisect-seq")
# The default demo's settings are this script's defaults, read from the build's own defaults.
DEMO = BuildConfig()
TOP_P = DEMO.sampling.top_p  # the rates are those the search saw


def build(strategy: str, args: argparse.Namespace) -> tuple[Path, float]:
    out = args.out / strategy
    cmd = [str(Path(sys.executable).parent / "pope-data"), "build", "--engine", args.engine,
           "--strategy", strategy, "--limit", str(args.limit), "--k", str(args.k),
           "--n", str(args.n), "--max-tokens", str(args.max_tokens), "--seed", str(args.seed),
           "--temperature", str(args.temperature), "--top-p", str(TOP_P),
           "--out", str(out)]
    started = time.monotonic()
    # The CLI's console output goes to a log next to the build, not into this script's tables.
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{strategy}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return out, time.monotonic() - started


def success_rates(problems: dict[str, dict], asks: list[tuple[str, int]], args) -> dict:
    """Rate of correct samples out of `--rate-samples` at prefix i of each (problem, i)."""
    engine = make_engine(EngineConfig(engine=args.engine, model="smollm2-135m",
                                      seed=args.seed))
    try:
        sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=TOP_P,
                            seed=args.seed)
        reqs = []
        for pid, i in asks:
            p = problems[pid]
            prefix = segment(p["solution"], "steps").prefix(i) if i else ""
            reqs.append(GenerationRequest(
                messages=tuple(guided_messages(p["problem"], prefix)), n=args.rate_samples,
                sampling=sampling, seed=stable_int(f"rate:{args.seed}:{pid}:{i}", 4),
                tag=(pid, i)))
        results = engine.generate(reqs)
    finally:
        engine.close()
    texts = [s.text for r in results for s in r.samples]
    golds = [problems[r.request.tag[0]]["answer"] for r in results for _ in r.samples]
    grades = iter(grade_many(texts, golds))
    return {r.request.tag: sum(next(grades).status == "correct" for _ in r.samples)
            / len(r.samples) for r in results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("search-real-out"))
    ap.add_argument("--engine", default="transformers", help="transformers or vllm")
    ap.add_argument("--limit", type=int, default=DEMO.fingerprint()["limit"])
    ap.add_argument("--k", type=int, default=DEMO.k)
    ap.add_argument("--n", type=int, default=DEMO.n)
    ap.add_argument("--max-tokens", type=int, default=DEMO.sampling.max_tokens)
    ap.add_argument("--temperature", type=float, default=DEMO.sampling.temperature)
    ap.add_argument("--seed", type=int, default=DEMO.sampling.seed)
    ap.add_argument("--rate-samples", type=int, default=16)
    ap.add_argument("--rate-all", action="store_true",
                    help="estimate the rate at i* and i* - 1 for every problem with a minimal "
                         "prefix, not only where the strategies disagree")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    tables, walls = {}, {}
    for s in STRATEGIES:
        out, walls[s] = build(s, args)
        tables[s] = {r["problem_id"]: r for r in pq.read_table(out / "prefixes.parquet").to_pylist()}
    problems = {r["id"]: r for r in
                pq.read_table(args.out / STRATEGIES[0] / "problems.parquet").to_pylist()}
    sw, bi = (tables[s] for s in STRATEGIES)
    if set(sw) != set(bi):
        raise SystemExit(f"hard sets differ: {sorted(set(sw) ^ set(bi))}")

    lines = ["| problem | segments | sweep-seq i* | bisect-seq i* | sweep-seq tokens | "
             "bisect-seq tokens |", "|---|---:|---:|---:|---:|---:|"]
    asks = set()
    for pid in sorted(sw):
        a, b = sw[pid], bi[pid]
        lines.append(f"| {pid} | {a['num_segments']} | {a['i_star']} | {b['i_star']} | "
                     f"{a['tokens']} | {b['tokens']} |")
        if a["i_star"] != b["i_star"] or args.rate_all:
            # Both choices, and the prefix just below each: is the choice a threshold or luck?
            for i in (a["i_star"], b["i_star"]):
                if i is not None:
                    asks.update({(pid, i), (pid, i - 1)})
    rates = success_rates(problems, sorted(asks), args) if asks else {}

    tok = {s: sum(r["tokens"] for r in tables[s].values()) for s in STRATEGIES}
    exact = sum(sw[p]["i_star"] == bi[p]["i_star"] for p in sw)
    within = sum(sw[p]["i_star"] is not None and bi[p]["i_star"] is not None
                 and abs(sw[p]["i_star"] - bi[p]["i_star"]) <= 1 or sw[p]["i_star"] ==
                 bi[p]["i_star"] for p in sw)
    print(f"{len(sw)} hard problems (limit {args.limit}, k = {args.k}, n = {args.n}, max tokens "
          f"{args.max_tokens}, T = {args.temperature}, seed {args.seed}); prefix-stage tokens: sweep-seq {tok['sweep-seq']}, "
          f"bisect-seq {tok['bisect-seq']} ({tok['bisect-seq'] / max(tok['sweep-seq'], 1):.2f}x); "
          f"i* agree exactly on {exact}/{len(sw)}, within one segment on {within}/{len(sw)}; "
          f"build wall time sweep-seq {walls['sweep-seq']:.0f} s, bisect-seq "
          f"{walls['bisect-seq']:.0f} s\n")
    print("\n".join(lines), "\n")
    if rates:
        which = "every" if args.rate_all else "each disagreeing"
        print(f"Success rate ({args.rate_samples} fresh samples) at {which} choice and the "
              "prefix below it:\n")
        print("| problem | strategy | i* | rate at i* - 1 | rate at i* |\n|---|---|---:|---:|---:|")
        for pid in sorted({p for p, _ in asks}):
            for s in STRATEGIES:
                i = tables[s][pid]["i_star"]
                if i is not None:
                    print(f"| {pid} | {s} | {i} | {rates[(pid, i - 1)]:.2f} | "
                          f"{rates[(pid, i)]:.2f} |")
                else:
                    print(f"| {pid} | {s} | none | | |")
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "tokens": tok, "wall_s": walls,
            "agree_exact": exact, "agree_within_1": within, "problems": len(sw),
            "prefixes": {s: tables[s] for s in STRATEGIES},
            "rates": [[pid, i, r] for (pid, i), r in sorted(rates.items())]}, indent=2))
    if rates:
        chosen = [rates[(p, bi[p]["i_star"])] for p in bi if bi[p]["i_star"] is not None
                  and (p, bi[p]["i_star"]) in rates]
        below = [rates[(p, bi[p]["i_star"] - 1)] for p in bi if bi[p]["i_star"] is not None
                 and (p, bi[p]["i_star"] - 1) in rates]
        if chosen:
            print(f"\nbisect-seq's i*: mean rate {sum(chosen) / len(chosen):.3f} at i*, "
                  f"{sum(below) / max(len(below), 1):.3f} at i* - 1 ({len(chosen)} problems)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
