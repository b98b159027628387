"""Driver CPU per request of an async HTTP client keeping a window of requests open: httpx vs aiohttp vs the openai engine.

`python bench/stream_client.py [--requests 1500 --concurrency 64] [--json out.json]`: each client
sends the same requests to one stand-in server (its own process, a fixed 0.2 s reply), side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPLY_S = 0.2
BODY = {"model": "m", "messages": [{"role": "user", "content": "x" * 200}], "n": 1}


def serve(port: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as uvicorn (bench/stream_window.py says why)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(REPLY_S)
            reply = json.dumps({"choices": [{"index": 0, "message": {"content": "\\boxed{1}"},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 20}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


async def with_httpx(url: str, concurrency: int, n: int) -> None:
    """One shared httpx pool of `concurrency` connections, as the openai engine had it."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one() -> None:
            async with gate:
                (await client.post(url + "/chat/completions", json=BODY)).json()

        await asyncio.gather(*[one() for _ in range(n)])


async def with_aiohttp(url: str, concurrency: int, n: int) -> None:
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def one() -> None:
            async with gate, s.post(url + "/chat/completions", json=BODY) as resp:
                await resp.json()

        await asyncio.gather(*[one() for _ in range(n)])


def with_engine(url: str, concurrency: int, n: int) -> None:
    """The openai engine's own stream (slots, retries, per-request futures), unseeded."""
    from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine

    engine = make_engine(EngineConfig(engine="openai", model="m", endpoints=(url,),
                                      concurrency=concurrency, send_seed=False))
    requests = [GenerationRequest(messages=tuple(BODY["messages"]), sampling=Sampling())
                for _ in range(n)]
    assert len(engine.generate(requests)) == n


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--clients", nargs="+", default=["httpx", "aiohttp", "engine"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        assert server.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}/v1"
        print(f"{args.requests} requests, {args.concurrency} in flight, replies after "
              f"{REPLY_S} s (at most {args.concurrency / REPLY_S:.0f} requests/s)\n")
        print("| client | requests/s | client CPU ms/request |")
        print("|---|---:|---:|")
        for name in args.clients:
            t, cpu = time.perf_counter(), time.process_time()
            if name == "httpx":
                asyncio.run(with_httpx(url, args.concurrency, args.requests))
            elif name == "aiohttp":
                asyncio.run(with_aiohttp(url, args.concurrency, args.requests))
            else:
                with_engine(url, args.concurrency, args.requests)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            rows.append({"client": name, "requests": args.requests,
                         "concurrency": args.concurrency,
                         "requests_per_s": round(args.requests / wall, 1),
                         "cpu_ms_per_request": round(1e3 * cpu / args.requests, 2)})
            print(f"| {name} | {rows[-1]['requests_per_s']} | "
                  f"{rows[-1]['cpu_ms_per_request']} |", flush=True)
    finally:
        server.kill()
        server.wait()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
