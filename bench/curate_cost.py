"""Curate-stage cost simulator: early-stopping wave schedules vs all-at-once vs the floor, at k = 128.

Run `python bench/curate_cost.py [--problems 2000] [--json bench/curate_cost.json]`; prints markdown
tables (tokens, samples, engine rounds and calls per schedule and difficulty mix) for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.records import Probe, ProbeOutcome  # noqa: E402
from pope_data.search import DEFAULT_CURATE_SCHEDULE, DEFAULT_CURATE_WAVE_SIZE, make_strategy  # noqa: E402

MAX_TOKENS = 32768
# Lognormal rollout lengths: correct ones median 4k tokens, wrong ones 10k (rambling, often
# truncated at 32k), sigma 0.8. An assumption in the spirit of bench/search_cost.py, scaled to the
# paper's 32k budget.
MEDIAN_CORRECT, MEDIAN_WRONG, SIGMA = 4000, 10000, 0.8


@dataclass(frozen=True)
class Mix:
    """Difficulty mix: a fraction `hard` with p = 0, the rest p ~ Beta(a, b)."""

    hard: float
    a: float
    b: float

    @property
    def name(self) -> str:
        return f"{self.hard:.0%} hard + Beta({self.a:g}, {self.b:g})"


@dataclass
class Problems:
    """The common random numbers: the k-sample sequence of every problem, shared by all schedules."""

    correct: np.ndarray  # (N, k) bool
    tokens: np.ndarray  # (N, k) int

    @property
    def first(self) -> np.ndarray:
        """Index of the first correct sample, k where none is (hard)."""
        k = self.correct.shape[1]
        return np.where(self.correct.any(1), self.correct.argmax(1), k)


def make_problems(mix: Mix, count: int, k: int, seed: int) -> Problems:
    rng = np.random.default_rng(seed)
    # Draw p and the per-sample uniforms independently of the mix's hard fraction, so mixes
    # differ only in which problems are made hard.
    p = rng.beta(mix.a, mix.b, count)
    p[rng.random(count) < mix.hard] = 0.0
    u = rng.random((count, k))
    correct = u < p[:, None]
    z = rng.standard_normal((count, k))
    median = np.where(correct, MEDIAN_CORRECT, MEDIAN_WRONG)
    tokens = np.clip(np.exp(np.log(median) + SIGMA * z), 16, MAX_TOKENS).astype(np.int64)
    return Problems(correct, tokens)


def schedules(k: int) -> dict[str, tuple[str, int]]:
    out = {"all-at-once": ("all", k)}
    for w in (1, 4, 8, 16, 32):
        out[f"fixed {w}" if w > 1 else "one at a time"] = ("fixed", w)
    for cap in (8, 16, 32, 64):
        out[f"growing 1-1-2-4..{cap}"] = ("growing", cap)
    return out


def simulate(probs: Problems, schedule: str, wave: int, batch: int) -> dict:
    """Drive the real `curate` state machines through the service's batching rule: ready probes
    sorted by (problem, prefix, wave), handed to the engine in calls of up to `batch` samples;
    each finished call updates its strategies and queues their next probes."""
    n_probs, k = probs.correct.shape
    strats = {f"c{i:06d}": make_strategy("curate", problem_id=f"c{i:06d}", min_prefix=0,
                                         max_prefix=0, n=k, wave_size=wave, schedule=schedule)
              for i in range(n_probs)}
    ready: list[Probe] = [pr for s in strats.values() for pr in s.next_probes()]
    calls = steps = 0
    fills = []
    while ready:
        ready.sort(key=lambda p: (p.problem_id, p.prefix_segments, p.wave))
        taken, total = [], 0
        for pr in ready:
            if taken and total + pr.n > batch:
                break
            taken.append(pr)
            total += pr.n
        ready = ready[len(taken):]
        longest = all_tokens = 0
        for pr in taken:
            i = int(pr.problem_id[1:])
            sl = slice(pr.offset, pr.offset + pr.n)
            tok = probs.tokens[i, sl]
            longest = max(longest, int(tok.max()))
            all_tokens += int(tok.sum())
            s = strats[pr.problem_id]
            s.update(ProbeOutcome(pr, pr.n, int(probs.correct[i, sl].sum()), int(tok.sum())))
            ready.extend(s.next_probes())
        calls += 1
        fills.append(total / batch)
        # A generate() call returns when its longest sample ends, and cannot decode more than
        # `batch` sequences per step: its decode steps are at least both bounds.
        steps += max(longest, -(-all_tokens // batch))
    results = [s.result() for s in strats.values()]
    return {
        "hard": [r.i_star is None for r in results],
        "tokens": sum(r.tokens for r in results),
        "samples": sum(r.samples for r in results),
        "rounds": max(r.probes for r in results),
        "calls": calls,
        "mean_fill": float(np.mean(fills)),
        "decode_steps": steps,
    }


def floor(probs: Problems) -> tuple[int, int]:
    """No method beats this: a hard problem (no correct of k) must draw all k samples, an easy
    one at least one sample (counted as its first correct sample's tokens)."""
    k = probs.correct.shape[1]
    first = probs.first
    hard = first == k
    idx = np.minimum(first, k - 1)
    tok = np.where(hard, probs.tokens.sum(1), probs.tokens[np.arange(len(first)), idx])
    return int(tok.sum()), int(np.where(hard, k, 1).sum())


def evaluate(mix: Mix, count: int, k: int, seed: int, batch: int) -> dict:
    probs = make_problems(mix, count, k, seed)
    f_tok, f_smp = floor(probs)
    truth = list(probs.first == k)
    rows = {}
    base = None
    for name, (schedule, wave) in schedules(k).items():
        r = simulate(probs, schedule, wave, batch)
        if r.pop("hard") != truth:
            raise AssertionError(f"{name}: hard set differs from all-at-once on {mix.name}")
        base = base or r
        rows[name] = {**r, "tokens_vs_floor": r["tokens"] / f_tok,
                      "tokens_vs_all": r["tokens"] / base["tokens"],
                      "samples_vs_floor": r["samples"] / f_smp,
                      "samples_vs_all": r["samples"] / base["samples"],
                      "steps_vs_all": r["decode_steps"] / base["decode_steps"]}
    return {"mix": mix.name, "hard_fraction_realised": float(np.mean(truth)),
            "floor_tokens": f_tok, "floor_samples": f_smp, "schedules": rows}


def markdown(res: dict) -> str:
    lines = [f"#### {res['mix']} (hard: {res['hard_fraction_realised']:.1%} of problems)", "",
             "| schedule | tokens vs floor | tokens vs all | samples vs floor | samples vs all | "
             "rounds | engine calls | mean fill | decode steps vs all |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in res["schedules"].items():
        lines.append(f"| {name} | {r['tokens_vs_floor']:.3f} | {r['tokens_vs_all']:.3f} | "
                     f"{r['samples_vs_floor']:.3f} | {r['samples_vs_all']:.3f} | {r['rounds']} | "
                     f"{r['calls']} | {r['mean_fill']:.0%} | {r['steps_vs_all']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", type=int, default=2000)
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--batch", type=int, default=256, help="samples per engine call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    main_beta = (0.5, 0.5)
    mixes = [Mix(h, *main_beta) for h in (0.3, 0.1, 0.5)]
    # Sensitivity to the assumed Beta, at the 30%-hard target case.
    mixes += [Mix(0.3, a, b) for a, b in ((1.0, 1.0), (0.3, 1.0), (0.2, 2.0), (2.0, 1.0))]
    print(f"k = {args.k}, {args.problems} problems per mix, {args.batch} samples per engine call; "
          f"default = {DEFAULT_CURATE_SCHEDULE} (wave {DEFAULT_CURATE_WAVE_SIZE})\n")
    out = []
    for mix in mixes:
        res = evaluate(mix, args.problems, args.k, args.seed, args.batch)
        out.append(res)
        print(markdown(res), "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"k": args.k, "problems": args.problems,
                                         "batch": args.batch, "default": [
                                             DEFAULT_CURATE_SCHEDULE, DEFAULT_CURATE_WAVE_SIZE],
                                         "mixes": out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
