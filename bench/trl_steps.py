"""Throughput of the TRL backend on this machine: GRPO steps/s and generated tokens/s, bundled tiny model.

python bench/trl_steps.py --steps 3 --max-completion-length 64 --prompts-per-step 2
  writes bench/trl_steps.json (one record per run) and prints a summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from pope_data.export import PrefixChoice, write_export
from pope_data.synthetic import generate_synthetic
from pope_train.backends.trl.backend import TrlConfig, plan_trl, train
from pope_train.backends.trl.metrics import read_metrics


def small_export(root: Path, problems: int) -> Path:
    """`problems` synthetic hard problems, guided by half of their solution steps."""
    hard = generate_synthetic(problems, seed=0, difficulty=2)
    prefixes = {}
    for p in hard:
        steps = p.solution.splitlines()
        i = len(steps) // 2
        prefixes[p.id] = PrefixChoice(p.id, len(steps), i, i, i / len(steps),
                                      "\n".join(steps[:i]), False, 1, 8, 0)
    write_export(root, hard, prefixes, validation_fraction=0.0)
    return root / "export"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="pope")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--num-generations", type=int, default=8)
    ap.add_argument("--max-completion-length", type=int, default=64)
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("trl_steps.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        export = small_export(Path(tmp) / "data", args.problems)
        cfg = TrlConfig(config=args.config, model=args.model, export_dir=str(export),
                        out_dir=str(Path(tmp) / "run"), max_steps=args.steps,
                        prompts_per_step=args.prompts_per_step,
                        num_generations=args.num_generations,
                        max_completion_length=args.max_completion_length,
                        save_steps=args.steps)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        result = train(plan_trl(cfg))
        wall = time.perf_counter() - start
        records = read_metrics(result.metrics)
    rollouts = args.prompts_per_step * args.num_generations
    step_times = [r["step_time"] for r in records if r["step_time"] is not None]
    tokens = sum(r["response_length"] * rollouts for r in records)
    record = {
        "config": args.config, "model": args.model, "steps": len(records),
        "prompts_per_step": args.prompts_per_step, "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "wall_s_incl_load_and_save": round(wall, 1),
        "step_s_mean": round(sum(step_times) / len(step_times), 2),
        "steps_per_s": round(len(step_times) / sum(step_times), 4),
        "generated_tokens": round(tokens),
        "generated_tokens_per_s": round(tokens / sum(step_times), 1),
        "mean_response_length": round(tokens / rollouts / len(records), 1),
        "reward_per_step": [r["reward"] for r in records],
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "python": platform.python_version(), "command": " ".join(["python", *sys.argv]),
    }
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps(runs + [record], indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
