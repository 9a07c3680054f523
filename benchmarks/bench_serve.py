"""Serving throughput: N concurrent streaming clients against `gptlab serve`'s app on loopback.

    python benchmarks/bench_serve.py                       # runs/tiny/base + runs/tiny/tokenizer
    python benchmarks/bench_serve.py --from runs/x/chat --clients 1 2 4 8 --seconds 10 --repeats 3

The server runs in a child process (its own interpreter and GIL, as in production); the clients
are asyncio + httpx in this one. Each client loops: send a streaming chat request, read it to the
end, repeat, until the time is up (the request in flight then finishes). Every answer runs to
max_tokens (the engine is built with no end-of-turn ids), so every request asks for the same work.
Reported per client count (median over repeats): total and per-client tokens/s, p50/p95 time to
first token, errors, and the server's RSS at start and end. Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve_child(stage: str, tokenizer: str | None, port: int, max_batch: int, threads: int) -> None:
    """The server process: the same create_app + EngineWorker as `gptlab serve`, no end-of-turn ids."""
    import torch
    import uvicorn

    from gptlab.infer.engine import Engine
    from gptlab.infer.loading import load_for_inference
    from gptlab.serve.api import create_app
    from gptlab.serve.schemas import Limits
    from gptlab.serve.worker import EngineWorker

    torch.set_num_threads(threads)
    model, tok = load_for_inference(stage, device="cpu", tokenizer=tokenizer)
    worker = EngineWorker(Engine(model, eos_ids=set(), max_batch=max_batch))
    app = create_app(worker, tok, model_name="bench", limits=Limits(max_tokens=4096))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def run_clients(url: str, n: int, seconds: float, max_tokens: int) -> dict:
    import httpx

    body = {"model": "bench", "messages": [{"role": "user", "content": "Tell me a story about the sea."}],
            "max_tokens": max_tokens, "temperature": 1.0, "stream": True,
            "stream_options": {"include_usage": True}}
    ttfts: list[float] = []
    tokens = [0] * n
    errors = 0
    requests = 0
    stop_at = time.perf_counter() + seconds

    async def client(i: int, c: httpx.AsyncClient) -> None:
        nonlocal errors, requests
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            first = None
            try:
                async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        errors += 1
                        await r.aread()
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            errors += 1
                        elif chunk.get("usage"):
                            tokens[i] += chunk["usage"]["completion_tokens"]
                        elif first is None and chunk["choices"] and "role" not in chunk["choices"][0]["delta"]:
                            first = time.perf_counter() - t0
                requests += 1
                if first is not None:
                    ttfts.append(first)
            except httpx.HTTPError:
                errors += 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=64)) as c:
        await asyncio.gather(*[client(i, c) for i in range(n)])
    elapsed = time.perf_counter() - t0
    return {"clients": n, "seconds": round(elapsed, 3), "requests": requests, "errors": errors,
            "tokens": sum(tokens), "total_tok_s": sum(tokens) / elapsed,
            "per_client_tok_s": [t / elapsed for t in tokens],
            "ttft_p50_s": percentile(ttfts, 0.5), "ttft_p95_s": percentile(ttfts, 0.95)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="stage", default=str(ROOT / "runs/tiny/base"), help="stage folder to serve")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default <stage>/../tokenizer)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent clients to try")
    p.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per client count (median reported)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens per answer")
    p.add_argument("--max-batch", type=int, default=16, help="engine slots")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="torch threads in the server (default: gptlab serve's, one core left to HTTP)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/serve.json"))
    p.add_argument("--serve-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_child is not None:
        serve_child(args.stage, args.tokenizer, args.serve_child, args.max_batch, args.threads)
        return 0

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, __file__, "--from", args.stage, "--serve-child", str(port),
           "--max-batch", str(args.max_batch), "--threads", str(args.threads)]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    server = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        asyncio.run(run_clients(url, 1, 2.0, args.max_tokens))  # warm-up
        rss_start = rss_mb(server.pid)
        load_before = os.getloadavg()
        results = []
        for n in args.clients:
            runs = [asyncio.run(run_clients(url, n, args.seconds, args.max_tokens)) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs)
                   for k in ("total_tok_s", "ttft_p50_s", "ttft_p95_s", "requests")}
            row = {"clients": n, **{k: round(v, 4) for k, v in med.items()},
                   "per_client_tok_s_median": round(statistics.median(
                       x for r in runs for x in r["per_client_tok_s"]), 2),
                   "errors": sum(r["errors"] for r in runs), "runs": runs}
            results.append(row)
            print(f"clients {n}: {row['total_tok_s']:.1f} tok/s total, {row['per_client_tok_s_median']:.1f} "
                  f"per client, TTFT p50 {row['ttft_p50_s'] * 1000:.0f} ms p95 {row['ttft_p95_s'] * 1000:.0f} ms, "
                  f"errors {row['errors']}", flush=True)
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    base = next((r["total_tok_s"] for r in results if r["clients"] == 1), None)
    out = {
        "benchmark": "serve", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "stage": args.stage, "max_tokens": args.max_tokens, "max_batch": args.max_batch,
        "seconds": args.seconds, "repeats": args.repeats, "threads": args.threads,
        "cpus": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_end, 1),
        "speedup_vs_1_client": {r["clients"]: round(r["total_tok_s"] / base, 2) for r in results} if base else None,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from gptlab.fileio import atomic_write_json

    atomic_write_json(args.out, out)
    print(f"speedup vs 1 client: {out['speedup_vs_1_client']}; RSS {rss_start:.0f} -> {rss_end:.0f} MB; "
          f"load {load_before} -> {out['load_avg_after']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
