"""The OpenAI client's window in flight during a real build, batch barrier vs streaming, against a stand-in server.

`python bench/stream_window.py [--problems 1000 --concurrency 64] [--json bench/stream_window.json]`:
a stand-in OpenAI-compatible server (its own process, long-tailed reply times) answers a full
`run_build` (curate and prefix search); the share of the window in flight is measured at the server.
"""

from __future__ import annotations

import argparse
import http.server
import json
import random
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.build import run_build  # noqa: E402
from pope_data.config import BuildConfig  # noqa: E402
from pope_data.synthetic import generate_synthetic  # noqa: E402
from pope_eval.engines import Engine, EngineConfig, Sampling, make_engine  # noqa: E402

PARTIAL = re.compile(r"<partial_solution>\n(.*)\n</partial_solution>", re.DOTALL)


def serve(port: int, script: Path, spans_out: Path, nagle: bool = False) -> None:
    """The stand-in: a reply after 0.05 s + lognormal (median 0.15 s, capped at 2 s); right with
    probability 0.6 once the prompt shows `need` solution lines (0.3 unguided for easy problems,
    never for hard ones). Writes (start, end, guided) of every request to `spans_out` at stdin EOF."""
    table = json.loads(script.read_text())
    by_text = {text: (answer, need) for text, answer, need in table}
    lengths = sorted({len(text) for text in by_text}, reverse=True)
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # http.server sends the headers and the body in two writes: with Nagle's algorithm on,
        # the body waits for the client's delayed ACK (~40 ms on Linux) on every keep-alive
        # reply. Real servers (uvicorn under `vllm serve`) set TCP_NODELAY; --server-nagle
        # keeps the stall, as the stand-in of the first runs had it.
        disable_nagle_algorithm = not nagle

        def do_POST(self):  # noqa: N802
            start = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            user = body["messages"][-1]["content"]
            answer, need = next(by_text[user[:n]] for n in lengths if user[:n] in by_text)
            m = PARTIAL.search(user)
            shown = len(m.group(1).splitlines()) if m else 0
            rng = random.Random(body.get("seed", 0))
            p = (0.3 if need == 0 else 0.0) if shown == 0 else (0.6 if shown >= need else 0.02)
            time.sleep(min(2.0, 0.05 + rng.lognormvariate(-1.9, 0.9)))
            text = "\\boxed{%s}" % (answer if rng.random() < p else -1)
            reply = json.dumps({"choices": [{"index": 0, "message": {"content": text},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 20}})
            reply = reply.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            with lock:
                spans.append((start, time.monotonic(), shown > 0))

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024  # the default 5 resets connections under 64 in flight

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # the driver closes our stdin when done
    with lock:
        spans_out.write_text(json.dumps(spans))


class BatchOnly(Engine):
    """The engine behind the old batch barrier: no stream of its own, so the service hands it
    --batch-samples samples per generate() call and waits for the last one."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.name, self.model = inner, inner.name, inner.model

    def _generate(self, requests, progress):
        return self.inner.generate(requests, progress)

    def describe(self):
        return self.inner.describe()


def share(spans: list[tuple[float, float]], window: int, t0: float | None = None,
          t1: float | None = None) -> tuple[float, float]:
    """Mean share of the window in flight from the first request to the last one's start (or
    over [t0, t1]), and that period in seconds."""
    t0 = min(s for s, _ in spans) if t0 is None else t0
    t1 = max(s for s, _ in spans) if t1 is None else t1
    busy = sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in spans)
    return busy / (window * (t1 - t0)), t1 - t0


def phases(spans: list[tuple[float, float, bool]], window: int) -> dict:
    """Where the window is not full: the share during the curate requests (first to last
    unguided start), between the stages (last curate start to the first guided one: the curate
    tail and the stage barrier), and during the prefix search (first to last guided start)."""
    cur = [(s, e) for s, e, guided in spans if not guided]
    pre = [(s, e) for s, e, guided in spans if guided]
    both = [(s, e) for s, e, _ in spans]
    c0, c1 = min(s for s, _ in cur), max(s for s, _ in cur)
    out = {"curate_share": round(share(both, window, c0, c1)[0], 3),
           "curate_s": round(c1 - c0, 1)}
    if pre:
        p0, p1 = min(s for s, _ in pre), max(s for s, _ in pre)
        if p0 > c1:
            out["between_share"] = round(share(both, window, c1, p0)[0], 3)
            out["between_s"] = round(p0 - c1, 1)
        out["prefix_share"] = round(share(both, window, p0, p1)[0], 3)
        out["prefix_s"] = round(p1 - p0, 1)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(mode: str, problems_file: Path, script: Path, tmp: Path, concurrency: int,
        batch_samples: int, nagle: bool = False) -> dict:
    port = free_port()
    spans_file = tmp / f"spans-{mode}.json"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(script),
                               str(spans_file), "nagle" if nagle else "nodelay"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert server.stdout.readline().strip() == "ready"
    url = f"http://127.0.0.1:{port}/v1"
    engine_config = EngineConfig(engine="openai", model="m", endpoints=(url,),
                                 concurrency=concurrency)
    engine = make_engine(engine_config)
    config = BuildConfig(out=str(tmp / mode), source="generic", path=str(problems_file), k=8,
                         n=4, sampling=Sampling(max_tokens=64, temperature=1.0),
                         engine=engine_config, decontaminate=False,
                         samples_per_batch=batch_samples)
    t = time.perf_counter()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    summary = run_build(config, engine=engine if mode == "stream" else BatchOnly(engine))
    wall = time.perf_counter() - t
    end = resource.getrusage(resource.RUSAGE_SELF)
    # The driver process's own CPU (every thread: service, event loop, grading threads, journal);
    # the math-verify worker processes and the stand-in server are not in it.
    driver_cpu = (end.ru_utime - cpu.ru_utime) + (end.ru_stime - cpu.ru_stime)
    server.stdin.close()
    server.wait(timeout=60)
    spans = json.loads(spans_file.read_text())
    mean, period = share([(s, e) for s, e, _ in spans], concurrency)
    return {"mode": mode, "requests": len(spans), "window_share": round(mean, 3),
            "until_last_start_s": round(period, 1), "requests_per_s": round(len(spans) / period, 1),
            "build_s": round(wall, 1), "driver_cpu_ms_per_request":
            round(1e3 * driver_cpu / len(spans), 2), **phases(spans, concurrency),
            "hard": summary.hard, "easy": summary.easy}


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "nagle")
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch-samples", type=int, default=256)
    ap.add_argument("--modes", nargs="+", default=["batch", "stream"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--server-nagle", action="store_true",
                    help="the stand-in replies with Nagle's algorithm on (the first runs' server)")
    args = ap.parse_args(argv)
    problems = generate_synthetic(args.problems, seed=11)
    rng = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        problems_file = tmp / "problems.jsonl"
        problems_file.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
        script = tmp / "script.json"
        # 40% easy (solved unguided), the rest need 1-4 solution lines.
        script.write_text(json.dumps([(p.problem, p.answer,
                                       0 if rng.random() < 0.4 else rng.randint(1, 4))
                                      for p in problems]))
        print(f"{args.problems} problems, window {args.concurrency} requests, --batch-samples "
              f"{args.batch_samples}\n")
        print("| driver | requests | mean share of the window in flight | curate / between / "
              "prefix | s to the last request | requests/s | driver CPU ms/request | build s | "
              "hard |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for mode in args.modes:
            r = run(mode, problems_file, script, tmp, args.concurrency, args.batch_samples,
                    nagle=args.server_nagle)
            r["server"] = "nagle" if args.server_nagle else "nodelay"
            rows.append(r)
            print(f"| {mode} | {r['requests']} | {r['window_share']:.3f} | "
                  f"{r['curate_share']} / {r.get('between_share', '-')} / "
                  f"{r.get('prefix_share', '-')} | {r['until_last_start_s']} | "
                  f"{r['requests_per_s']} | {r['driver_cpu_ms_per_request']} | {r['build_s']} | "
                  f"{r['hard']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
