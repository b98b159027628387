"""Prefix-search cost simulator: every strategy on the same problems with known success curves p(i).

Run `python bench/search_cost.py [--problems 2000] [--json FILE]`; prints markdown tables of tokens and
samples relative to `sweep` and agreement of i* with `sweep` (results in bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.records import ProbeOutcome  # noqa: E402
from pope_data.search import DEFAULT_STRATEGY, make_strategy, strategy_names  # noqa: E402

MAX_TOKENS = 4096


@dataclass(frozen=True)
class SimProblem:
    pid: str
    kind: str
    m: int  # candidates 1..m
    p: tuple[float, ...]  # p[i] for i in 0..m
    true_i: int | None  # the designed threshold (None: unsolvable)


def _u(*key) -> float:
    """Common random numbers: the same (problem, prefix, sample) draws the same uniform for
    every strategy, so strategies differ only in what they choose to look at."""
    h = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2**64


def _tokens(pid: str, i: int, j: int, correct: bool) -> int:
    # Rollouts: lognormal lengths, wrong ones longer (rambling, truncated at max tokens).
    z = math.sqrt(-2 * math.log(max(_u("t1", pid, i, j), 1e-12))) * math.cos(
        2 * math.pi * _u("t2", pid, i, j))
    mu = math.log(900 if correct else 1800)
    return int(min(MAX_TOKENS, max(16, math.exp(mu + 0.6 * z))))


def make_problems(count: int, seed: int) -> list[SimProblem]:
    rng = random.Random(seed)
    out = []
    for k in range(count):
        m = rng.randint(16, 32)
        kind = ["step", "logistic", "noisy", "unsolvable"][k % 4]
        t = rng.randint(1, m)
        if kind == "step":
            hi = rng.uniform(0.3, 0.9)
            p = [0.0 if i < t else hi for i in range(m + 1)]
        elif kind == "logistic":
            w = rng.uniform(0.3, 1.0)
            top = rng.uniform(0.5, 0.95)
            p = [top / (1 + math.exp(-(i - t) / w)) for i in range(m + 1)]
        elif kind == "noisy":
            base = [0.0 if i < t else rng.uniform(0.2, 0.8) for i in range(m + 1)]
            # Non-monotone: random bumps before t and dips after it.
            p = [min(1.0, b + (rng.uniform(0.1, 0.4) if rng.random() < 0.15 else 0.0))
                 if i < t else (0.0 if rng.random() < 0.2 else b) for i, b in enumerate(base)]
        else:
            p = [0.0] * (m + 1)
            t = None
        out.append(SimProblem(f"sim-{seed}-{k}", kind, m, tuple(p), t))
    return out


def run(strategy: str, prob: SimProblem, n: int, wave: int | None):
    s = make_strategy(strategy, problem_id=prob.pid, min_prefix=1, max_prefix=prob.m, n=n,
                      wave_size=wave)
    drawn: dict[int, int] = {}
    while True:
        probes = s.next_probes()
        if not probes:
            if s.done:
                return s.result()
            raise RuntimeError("strategy stalled")
        for pr in probes:
            start = drawn.get(pr.prefix_segments, 0)
            correct = tokens = 0
            for j in range(start, start + pr.n):
                ok = _u("c", prob.pid, pr.prefix_segments, j) < prob.p[pr.prefix_segments]
                correct += ok
                tokens += _tokens(prob.pid, pr.prefix_segments, j, ok)
            drawn[pr.prefix_segments] = start + pr.n
            s.update(ProbeOutcome(pr, pr.n, correct, tokens))


def table(problems, names, n, wave):
    base = {p.pid: run("sweep", p, n, wave) for p in problems}
    rows = {}
    for name in names:
        res = {p.pid: run(name, p, n, wave) for p in problems}
        tok = sum(r.tokens for r in res.values()) / sum(r.tokens for r in base.values())
        smp = sum(r.samples for r in res.values()) / sum(r.samples for r in base.values())
        exact = within = 0
        for pid, r in res.items():
            b = base[pid]
            if r.i_star == b.i_star:
                exact += 1
                within += 1
            elif r.i_star is not None and b.i_star is not None and abs(r.i_star - b.i_star) <= 1:
                within += 1
        rows[name] = {"tokens_vs_sweep": tok, "samples_vs_sweep": smp,
                      "agree_exact": exact / len(res), "agree_within_1": within / len(res)}
    return rows


def buckets(problems, name, n, wave):
    out = {}
    for lo, hi in [(1, 4), (5, 8), (9, 16), (17, 32)]:
        sub = [p for p in problems if p.true_i is not None and lo <= p.true_i <= hi]
        if sub:
            out[f"{lo}-{hi}"] = table(sub, [name], n, wave)[name]
    return out


def markdown(rows, title):
    lines = [f"#### {title}", "", "| strategy | tokens vs sweep | samples vs sweep | i* exact | i* within 1 |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['tokens_vs_sweep']:.3f} | {r['samples_vs_sweep']:.3f} | "
                     f"{r['agree_exact']:.1%} | {r['agree_within_1']:.1%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", type=int, default=2000)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--wave", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    probs = make_problems(args.problems, args.seed)
    names = strategy_names()
    mono = [p for p in probs if p.kind in ("step", "logistic")]
    nonmono = [p for p in probs if p.kind == "noisy"]
    unsolv = [p for p in probs if p.kind == "unsolvable"]
    main_rows = table(mono, names, args.n, args.wave)
    non_rows = table(nonmono, names, args.n, args.wave)
    uns_rows = table(unsolv, names, args.n, args.wave)
    print(f"n = {args.n}, wave = {args.wave}, {len(mono)} monotone (step + logistic), "
          f"{len(nonmono)} non-monotone, {len(unsolv)} unsolvable problems, 16-32 candidates, "
          f"i* uniform; default = {DEFAULT_STRATEGY}\n")
    print(markdown(main_rows, "Monotone curves"), "\n")
    print(markdown(non_rows, "Non-monotone (noisy) curves"), "\n")
    print(markdown(uns_rows, "Unsolvable problems (fallback)"), "\n")
    print(markdown(buckets(mono, DEFAULT_STRATEGY, args.n, args.wave),
                   f"{DEFAULT_STRATEGY} by designed i* bucket (monotone)"))
    if args.json:
        args.json.write_text(json.dumps({"default": DEFAULT_STRATEGY, "strategies": main_rows,
                                         "non_monotone": non_rows, "unsolvable": uns_rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
