"""`gptlab serve`: an OpenAI-compatible HTTP server and a chat page for a trained model.

    gptlab serve --from runs/tiny/chat                 # http://127.0.0.1:8000/  (the chat page)
    gptlab serve --from runs/tiny/chat --rag runs/tiny/rag --api-key s3cret

Then any OpenAI client works against it:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="s3cret")
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gptlab.serve.schemas import Limits

DEFAULTS = Limits()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab serve",
        description="Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, "
        "/v1/completions, /v1/models, /health) with a chat page at /.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", default="tiny", help="run name: the default model is runs/<run>/chat")
    p.add_argument("--from", dest="stage", default=None,
                   help="stage folder to serve (model.safetensors + config.json, or a LoRA adapter); "
                   "default: the first of runs/<run>/{chat,grpo,rl,sft} that exists")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: <stage>/../tokenizer)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; 0.0.0.0 exposes the server to the network (set --api-key then)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--model-name", default=None, help="name shown in /v1/models (default: the run name)")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="torch threads for the engine; one core is left to the HTTP loop (measured: on 2 cores, "
                   "1 thread serves 2.5x the tokens/s of 2, see docs/benchmarks.md)")
    p.add_argument("--max-batch", type=int, default=16,
                   help="sequences decoded together (engine slots); more requests wait in a queue")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1 routes (default: $GPTLAB_API_KEY, else none)")
    p.add_argument("--rag", default=None, metavar="INDEX_DIR",
                   help="a `gptlab rag index` folder: chat requests retrieve passages and get citations "
                   "(a request may turn it off with \"rag\": false)")
    p.add_argument("--rag-k", type=int, default=4, help="passages retrieved per question")
    p.add_argument("--no-tools", action="store_true", help="do not run the calculator on tool calls")
    p.add_argument("--python", action="store_true", help="also run the sandboxed python tool")
    p.add_argument("--max-messages", type=int, default=DEFAULTS.max_messages, help="messages per request")
    p.add_argument("--max-chars", type=int, default=DEFAULTS.max_chars, help="characters of input per request")
    p.add_argument("--max-tokens", type=int, default=DEFAULTS.max_tokens, help="largest max_tokens a request may ask")
    p.add_argument("--default-max-tokens", type=int, default=DEFAULTS.default_max_tokens,
                   help="max_tokens when a request gives none")
    p.add_argument("--max-request-bytes", type=int, default=DEFAULTS.max_request_bytes,
                   help="HTTP body size cap (larger bodies get 413)")
    p.add_argument("--log-level", default="info", help="uvicorn log level (warning to keep quiet)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn

    from gptlab.common import run_dir
    from gptlab.errors import InputError
    from gptlab.infer.loading import load_for_inference, make_engine
    from gptlab.serve.api import create_app
    from gptlab.serve.worker import EngineWorker

    for flag in ("max_batch", "rag_k", "max_messages", "max_chars", "max_tokens", "default_max_tokens",
                 "max_request_bytes"):
        if getattr(args, flag) < 1:
            raise InputError(None, f"--{flag.replace('_', '-')} must be at least 1")
    if args.threads < 1:
        raise InputError(None, "--threads must be at least 1")
    import torch

    torch.set_num_threads(args.threads)
    if args.stage:
        stage = Path(args.stage)
    else:  # the most aligned stage the run has
        candidates = [run_dir(args.run, s) for s in ("chat", "grpo", "rl", "sft")]
        stage = next((c for c in candidates if c.is_dir()), candidates[0])
    retriever = None
    if args.rag:
        from gptlab.rag.retrieve import Retriever

        retriever = Retriever.load(args.rag)
    model, tok = load_for_inference(stage, device=args.device, tokenizer=args.tokenizer)
    engine = make_engine(model, tok, tools=not args.no_tools, python=args.python, max_batch=args.max_batch)
    limits = Limits(max_messages=args.max_messages, max_chars=args.max_chars, max_tokens=args.max_tokens,
                    default_max_tokens=min(args.default_max_tokens, args.max_tokens),
                    max_request_bytes=args.max_request_bytes)
    api_key = args.api_key or os.environ.get("GPTLAB_API_KEY") or None
    name = args.model_name or (args.run if not args.stage else stage.resolve().parent.name)
    worker = EngineWorker(engine).start()
    app = create_app(worker, tok, model_name=name, limits=limits, api_key=api_key, retriever=retriever,
                     rag_k=args.rag_k)
    print(f"serving {stage} as {name!r} on http://{args.host}:{args.port}/ "
          f"(max batch {args.max_batch}, api key {'on' if api_key else 'off'}, "
          f"rag {'on: ' + str(args.rag) if retriever else 'off'})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        worker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
