"""`gptlab serve`: an OpenAI-compatible HTTP server and a chat page for a trained model.

    gptlab serve --from runs/tiny/chat                 # http://127.0.0.1:8000/  (the chat page)
    gptlab serve --from runs/tiny/chat --rag runs/tiny/rag --api-key s3cret

Then any OpenAI client works against it:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="s3cret")
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.infer.cli_args import DecodeArgs, ModelArgs, ToolArgs
from gptlab.infer.loading import load_for_inference
from gptlab.rag.retrieve import Retriever
from gptlab.serve.schemas import Limits
from gptlab.serve.worker import EngineWorker

DEFAULTS = Limits()
STAGES = ("chat", "grpo", "rl", "sft")  # the default model: the most aligned stage the run has


@dataclass
class ServeConfig(DecodeArgs, ToolArgs, ModelArgs):
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
    /v1/models, /health) with a chat page at /. --from defaults to the first of
    runs/<run>/{chat,grpo,rl,sft} that exists."""

    host: str = "127.0.0.1"  # address to bind; 0.0.0.0 exposes the server to the network (set --api-key then)
    port: int = 8000  # TCP port
    model_name: str | None = None  # name shown in /v1/models (None: the run name, or the --from folder's run)
    threads: int = max(1, (os.cpu_count() or 2) - 1)  # torch threads for the engine; one core is left to the HTTP loop (measured: on 2 cores, 1 thread serves 2.5x the tokens/s of 2, see docs/benchmarks.md)
    max_batch: int = 16  # sequences decoded together (engine slots); more requests wait in a queue
    api_key: str | None = None  # require 'Authorization: Bearer KEY' on /v1 routes (None: $GPTLAB_API_KEY, else no key)
    rag: Path | None = None  # a `gptlab rag index` folder: chat requests retrieve passages and get citations (a request may turn it off with "rag": false)
    rag_k: int = 4  # passages retrieved per question
    max_messages: int = DEFAULTS.max_messages  # messages per request
    max_chars: int = DEFAULTS.max_chars  # characters of input per request
    max_tokens: int = DEFAULTS.max_tokens  # largest max_tokens a request may ask
    default_max_tokens: int = DEFAULTS.default_max_tokens  # max_tokens when a request gives none
    max_request_bytes: int = DEFAULTS.max_request_bytes  # HTTP body size cap (larger bodies get 413)
    log_level: str = "info"  # uvicorn log level (warning to keep quiet)


def check(cfg: ServeConfig) -> None:
    """InputError on a limit below 1, before anything loads."""
    for flag in ("max_batch", "rag_k", "max_messages", "max_chars", "max_tokens", "default_max_tokens",
                 "max_request_bytes", "threads"):
        if getattr(cfg, flag) < 1:
            raise InputError(None, f"--{flag.replace('_', '-')} must be at least 1")


def limits_of(cfg: ServeConfig) -> Limits:
    return Limits(max_messages=cfg.max_messages, max_chars=cfg.max_chars, max_tokens=cfg.max_tokens,
                  default_max_tokens=min(cfg.default_max_tokens, cfg.max_tokens),
                  max_request_bytes=cfg.max_request_bytes)


def stage_of(cfg: ServeConfig) -> Path:
    """--from, else the first of runs/<run>/{chat,grpo,rl,sft} that exists (else .../chat)."""
    if cfg.from_ is not None:
        return Path(cfg.from_)
    candidates = [cfg.model_dir(s) for s in STAGES]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def run(cfg: ServeConfig) -> int:
    # fastapi and uvicorn load only when serving, so `gptlab serve --help` stays cheap.
    import uvicorn

    from gptlab.serve.api import create_app

    check(cfg)
    torch.set_num_threads(cfg.threads)
    stage = stage_of(cfg)
    retriever = Retriever.load(cfg.rag) if cfg.rag else None
    model, tok = load_for_inference(stage, device=cfg.device, tokenizer=cfg.tokenizer)
    engine = cfg.make_engine(model, tok, tools=not cfg.no_tools, python=cfg.python, max_batch=cfg.max_batch)
    api_key = cfg.api_key or os.environ.get("GPTLAB_API_KEY") or None
    name = cfg.model_name or (cfg.run if cfg.from_ is None else stage.resolve().parent.name)
    worker = EngineWorker(engine).start()
    app = create_app(worker, tok, model_name=name, limits=limits_of(cfg), api_key=api_key,
                     retriever=retriever, rag_k=cfg.rag_k)
    print(f"serving {stage} as {name!r} on http://{cfg.host}:{cfg.port}/ "
          f"(max batch {cfg.max_batch}, api key {'on' if api_key else 'off'}, "
          f"rag {'on: ' + str(cfg.rag) if retriever else 'off'})", flush=True)
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    finally:
        worker.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ServeConfig, argv, "gptlab serve"))


if __name__ == "__main__":
    raise SystemExit(main())
