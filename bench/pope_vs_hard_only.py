"""POPE vs hard-only in miniature: same base model, steps and seed; unguided pass@k on held-out hard problems.

Run `python bench/pope_vs_hard_only.py --build OUT --work DIR [--steps 8 --n 8 --max-tokens 128
--temperature 0.5 --learning-rate 1e-5]` on a finished `pope-data build` folder whose validation
split holds hard problems (e.g. the default demo with `--validation-fraction 0.5`). Rollouts and the
evaluation use the same temperature and token limit (by default the demo build's, at which the
prefixes were found). Writes DIR/results.json and DIR/pope_vs_hard_only.png and prints markdown
tables: unguided pass@k per model, and the training signal per config from its metrics.jsonl
(results in bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from pope_data.config import DEMO_SAMPLING  # noqa: E402
from pope_eval.engines import EngineConfig, Sampling  # noqa: E402
from pope_eval.evaluate import PassAtKConfig, run_pass_at_k  # noqa: E402
from pope_eval.report import plot_curves  # noqa: E402
from pope_train.backends.trl.metrics import read_metrics  # noqa: E402


def held_out_hard(build: Path, dest: Path) -> Path:
    """The hard problems of the export's validation split (never trained on), as a jsonl."""
    ids = set(pl.read_parquet(build / "export" / "hard" / "validation.parquet")["extra_info"]
              .struct.field("problem_id").to_list())
    if not ids:
        raise SystemExit(f"{build}: no hard problems in the validation split; build with a larger "
                         "--validation-fraction")
    problems = pl.read_parquet(build / "problems.parquet").filter(pl.col("id").is_in(list(ids)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(json.dumps({"id": r["id"], "problem": r["problem"],
                                        "answer": r["answer"]}) + "\n"
                            for r in problems.iter_rows(named=True)))
    return dest


def evaluate(model: str, data: Path, out: Path, args: argparse.Namespace) -> dict:
    return run_pass_at_k(PassAtKConfig(
        data=str(data), out=str(out), n=args.n,
        sampling=Sampling(max_tokens=args.max_tokens, temperature=args.temperature, top_p=1.0,
                          seed=args.seed),
        engine=EngineConfig(engine="transformers", model=model, seed=args.seed)))


def training_signal(metrics: Path) -> dict:
    """Per-config summary of metrics.jsonl: mean rewards, steps with any reward, solvable rate."""
    rows = read_metrics(metrics)

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    return {"steps": len(rows),
            "steps_with_reward": sum(1 for r in rows if (r.get("reward") or 0) > 0),
            **{key: mean(key) for key in ("reward", "reward_guided", "reward_unguided",
                                          "solvable", "entropy", "response_length",
                                          "step_time")}}


def main(argv: list[str] | None = None) -> int:
    from pope_train.backends.trl.backend import TrlConfig, plan_trl, train

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--n", type=int, default=8, help="samples per held-out problem")
    ap.add_argument("--max-tokens", type=int, default=DEMO_SAMPLING.max_tokens,
                    help="rollout and evaluation token limit (default: the demo build's)")
    ap.add_argument("--temperature", type=float, default=DEMO_SAMPLING.temperature,
                    help="rollout and evaluation temperature (default: the demo build's)")
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = held_out_hard(args.build, args.work / "held_out_hard.jsonl")
    runs: dict[str, dict] = {}
    t = time.perf_counter()
    runs["base"] = evaluate(args.model, data, args.work / "eval-base", args)
    signal: dict[str, dict] = {}
    for config in ("pope", "hard_only"):
        result = train(plan_trl(TrlConfig(
            config=config, model=args.model, export_dir=str(args.build / "export"),
            out_dir=str(args.work / f"train-{config}"), max_steps=args.steps, seed=args.seed,
            max_completion_length=args.max_tokens, save_steps=args.steps,
            learning_rate=args.learning_rate, temperature=args.temperature)))
        signal[config] = training_signal(result.metrics)
        runs[config] = evaluate(str(result.final_model), data, args.work / f"eval-{config}", args)
    ks = [k for k in runs["base"]["ks"]]
    print(f"{len(data.read_text().splitlines())} held-out hard problems, n = {args.n}, "
          f"{args.steps} GRPO steps per config (lr {args.learning_rate:g}), "
          f"T = {args.temperature:g}, {args.max_tokens} tokens, seed {args.seed}, "
          f"{time.perf_counter() - t:.0f} s in all\n")
    print("| model | " + " | ".join(f"pass@{k}" for k in ks) + " |")
    print("|---|" + "---:|" * len(ks))
    for name, s in runs.items():
        print(f"| {name} | " + " | ".join(f"{s['pass_at_k'][str(k)]['estimate']:.3f}"
                                          for k in ks) + " |")
    keys = list(signal["pope"])
    print("\n| config | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, sig in signal.items():
        print(f"| {name} | " + " | ".join("-" if sig[k] is None else f"{sig[k]:.3g}"
                                          for k in keys) + " |")
    plot_curves(list(runs.items()), args.work / "pope_vs_hard_only.png",
                title="unguided pass@k on held-out hard problems")
    (args.work / "results.json").write_text(json.dumps(
        {"settings": {k: str(v) for k, v in vars(args).items()},
         "pass_at_k": {name: s["pass_at_k"] for name, s in runs.items()},
         "training": signal}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
