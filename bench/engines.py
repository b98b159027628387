"""Generation throughput on the same load: the engines (transformers, vLLM, openai->vllm serve) and
transformers' own `model.generate` (row `generate`).

`python bench/engines.py [--prompts 64 --samples 8 --max-tokens 256] [--json FILE]`; prints a markdown
table of generated tokens/s and ratios (results in bench/RESULTS.md).
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

from pope_data.synthetic import generate_synthetic  # noqa: E402
from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine  # noqa: E402
from pope_eval.prompts import problem_messages  # noqa: E402


def requests(count: int, samples: int, max_tokens: int) -> list[GenerationRequest]:
    problems = generate_synthetic(count, seed=11, difficulty=3)
    return [GenerationRequest(messages=tuple(problem_messages(p.problem)), n=samples,
                              sampling=Sampling(max_tokens=max_tokens, temperature=0.8, top_p=0.95),
                              seed=i)
            for i, p in enumerate(problems)]


def timed(engine, reqs) -> dict:
    t = time.perf_counter()
    results = engine.generate(reqs)
    dt = time.perf_counter() - t
    tokens = sum(r.generated_tokens for r in results)
    return {"tokens": tokens, "seconds": round(dt, 1), "tok_per_s": round(tokens / dt, 1)}


def timed_generate(reqs: list[GenerationRequest], max_batch_size: int) -> dict:
    """transformers' own `model.generate` on the same load: the prompts in padded batches of
    `max_batch_size` sequences (num_return_sequences = n), sampling with the same T and top_p."""
    import torch
    import transformers

    from pope_eval.models import resolve_model
    from pope_eval.prompts import render

    path = resolve_model("smollm2-135m").path
    tok = transformers.AutoTokenizer.from_pretrained(path, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.manual_seed(0)
    per_batch = max(1, max_batch_size // reqs[0].n)

    def run(batch: list[GenerationRequest]) -> int:
        prompts = [render(r.messages, tok) for r in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        sp = batch[0].sampling
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=sp.temperature,
                                 top_p=sp.top_p, max_new_tokens=sp.max_tokens,
                                 num_return_sequences=batch[0].n,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        # Tokens generated before each sequence's end (padding after EOS does not count).
        ended = (new == tok.eos_token_id).int()
        first_eos = torch.where(ended.any(-1), ended.argmax(-1) + 1, new.shape[1])
        return int(first_eos.sum())

    run(reqs[:1])  # warm-up
    t = time.perf_counter()
    tokens = sum(run(reqs[i:i + per_batch]) for i in range(0, len(reqs), per_batch))
    dt = time.perf_counter() - t
    return {"tokens": tokens, "seconds": round(dt, 1), "tok_per_s": round(tokens / dt, 1)}


def wait_healthy(port: int, proc, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("vllm server exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError("vllm server did not start")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--engines", default="transformers,generate,vllm,openai",
                    help="comma list; 'generate' = transformers' own model.generate")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    reqs = requests(args.prompts, args.samples, args.max_tokens)
    names = args.engines.split(",")
    rows: dict[str, dict] = {}
    for name in names:
        if name == "generate":
            rows[name] = timed_generate(reqs, max_batch_size=128)
        elif name == "openai":
            from pope_eval.engines.vllm_engine import server_command

            env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=f"0-{(os.cpu_count() or 1) - 1}")
            proc = subprocess.Popen(server_command("smollm2-135m", port=args.port),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            try:
                wait_healthy(args.port, proc)
                engine = make_engine(EngineConfig(engine="openai", model="smollm2-135m",
                                                  endpoints=(f"http://127.0.0.1:{args.port}/v1",),
                                                  send_seed=False, concurrency=64))
                rows[name] = timed(engine, reqs)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        else:
            engine = make_engine(EngineConfig(engine=name, model="smollm2-135m",
                                              max_batch_size=128))
            timed(engine, reqs[:2])  # warm-up (compilation, first allocations)
            rows[name] = timed(engine, reqs)
            engine.close()
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    print(f"{args.prompts} prompts x {args.samples} samples, max {args.max_tokens} tokens, "
          f"T=0.8, fp32, {os.cpu_count()} cores\n")
    print("| engine | generated tokens | seconds | tokens/s | vs transformers | vs vllm |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        vs_hf = r["tok_per_s"] / rows["transformers"]["tok_per_s"] if "transformers" in rows else None
        vs_vl = r["tok_per_s"] / rows["vllm"]["tok_per_s"] if "vllm" in rows else None
        print(f"| {name} | {r['tokens']} | {r['seconds']} | {r['tok_per_s']} | "
              f"{f'{vs_hf:.2f}x' if vs_hf else '-'} | {f'{vs_vl:.2f}x' if vs_vl else '-'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
