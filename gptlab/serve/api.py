"""The OpenAI-compatible HTTP API (FastAPI) in front of one `EngineWorker`, and the chat page.

    app = create_app(EngineWorker(engine), tok, model_name="tiny-chat")
    # POST /v1/chat/completions, POST /v1/completions (both with "stream": true for SSE),
    # GET /v1/models, GET /health, GET / (the chat page)

Design decisions:
- Every error is an OpenAI-style body with a 4xx status (`gptlab.serve.guards`).
- A request's `model` must name the served model (the one `/v1/models` lists), else 404
  `model_not_found`, as OpenAI and vLLM answer; an omitted `model` means the served one.
- Tool use runs on the server (the engine forces tool results in), so it is not OpenAI's
  client-side `tool_calls`: the reply's `content` is its text, and the extension field `parts`
  (streaming: `delta.tool`) shows the calls and results, per the chat contract.
- RAG (extension `"rag": true`, the default when the server has an index): the last user message
  is the query; passages go into the prompt through `build_rag_messages`, and `citations`
  (file, line, snippet) come back in the response, or in the final streamed chunk.
- A disconnected client cancels its request, so its slot serves someone else at the next step.

Layout: `create_app` wires one `Served` (what every route needs) into small route groups; the
token -> text reading is `gptlab.serve.reply`, the SSE stream both routes share `gptlab.serve.sse`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from gptlab.rag.retrieve import build_rag_messages, citations
from gptlab.serve.guards import BodyLimit, install_error_handlers, key_check, sampling_params
from gptlab.serve.reply import collect_reply, reply_events, reply_text
from gptlab.serve.schemas import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    Limits,
    check_chat,
    check_completion,
    content_text,
    messages_as_dicts,
)
from gptlab.serve.sse import (
    ChatChunks,
    CompletionChunks,
    completion_choice,
    event_stream,
    sse_stream,
    usage,
)
from gptlab.serve.worker import EngineWorker

STATIC = Path(__file__).parent / "static"


@dataclass
class Served:
    """What the routes share: the engine's worker, the tokenizer, the limits and the options."""

    worker: EngineWorker
    tok: Any
    model_name: str
    limits: Limits
    retriever: Any  # a gptlab.rag.retrieve.Retriever, or None
    rag_k: int
    created: int = field(default_factory=lambda: int(time.time()))

    def check_model(self, name: str | None) -> None:
        """404 unless `name` is the served model (or omitted), as OpenAI and vLLM answer."""
        if name is not None and name != self.model_name:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {self.model_name!r} "
                           "(GET /v1/models)", "model", "model_not_found")

    def params(self, req, max_new: int, prompt_len: int):
        return sampling_params(req, max_new, prompt_len, self.worker.engine.max_len)

    async def retrieve(self, req: ChatRequest, messages: list[dict]) -> tuple[list[dict], list[dict] | None]:
        """The messages with retrieved passages put in, and their citations (None without RAG)."""
        use = req.rag if req.rag is not None else self.retriever is not None
        if not use:
            return messages, None
        if self.retriever is None:
            raise ApiError(400, "this server has no RAG index (start it with --rag INDEX_DIR)", "rag")
        question = content_text(req.messages[-1].content)
        passages = await asyncio.to_thread(self.retriever.search, question, self.rag_k)
        return build_rag_messages(question, passages, messages[:-1]), citations(passages)


def create_app(
    worker: EngineWorker,
    tok,
    model_name: str = "gptlab",
    limits: Limits | None = None,
    api_key: str | None = None,
    retriever: Any = None,
    rag_k: int = 4,
) -> FastAPI:
    """The FastAPI app. The caller owns `worker` (it starts on the first request; call
    `worker.stop()` at shutdown). `retriever`: a `gptlab.rag.retrieve.Retriever` or None."""
    served = Served(worker, tok, model_name, limits or Limits(), retriever, rag_k)
    app = FastAPI(title="gptlab", version="1", summary="OpenAI-compatible chat API for a gptlab model")
    app.add_middleware(BodyLimit, max_bytes=served.limits.max_request_bytes)
    install_error_handlers(app)
    auth = [Depends(key_check(api_key))]
    add_info_routes(app, served, auth)  # the order of the routes is the order of the OpenAPI paths
    add_chat_route(app, served, auth)
    add_completion_route(app, served, auth)
    add_chat_page(app)
    return app


def add_info_routes(app: FastAPI, served: Served, auth: list) -> None:
    """GET /health (open) and GET /v1/models (behind the key)."""

    @app.get("/health")
    async def health() -> dict:
        """Liveness and load: requests decoding now and waiting for a slot."""
        worker = served.worker
        return {"status": "ok", "model": served.model_name, "active": worker.active, "waiting": worker.waiting,
                "slots": worker.engine.cache.n_slots, "steps": worker.steps, "tokens": worker.tokens,
                "rag": served.retriever is not None}

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict:
        return {"object": "list", "data": [
            {"id": served.model_name, "object": "model", "created": served.created, "owned_by": "gptlab"}]}


def add_chat_route(app: FastAPI, served: Served, auth: list) -> None:
    """POST /v1/chat/completions: the chat template, tools, RAG; streamed or whole."""

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat(req: ChatRequest, http: Request):
        served.check_model(req.model)
        max_new, stops = check_chat(req, served.limits)
        messages, cites = await served.retrieve(req, messages_as_dicts(req.messages))
        try:
            prompt_ids = served.tok.render_prompt(messages)
        except ValueError as e:
            raise ApiError(400, str(e), "messages") from None
        params = served.params(req, max_new, len(prompt_ids))
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": served.model_name}
        job = served.worker.submit(prompt_ids, params)
        if req.stream:
            events = reply_events(served.tok, None, job, stops)
            return event_stream(sse_stream(events, job, ChatChunks(head, cites), len(prompt_ids),
                                           include_usage(req)))
        parts, finish, n = await whole_reply(served, http, job, stops)
        message: dict[str, Any] = {"role": "assistant", "content": reply_text(parts)}
        if any(p["type"] != "text" for p in parts):
            message["parts"] = parts
        body: dict[str, Any] = {**head, "object": "chat.completion",
                                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                "usage": usage(len(prompt_ids), n)}
        if cites is not None:
            body["citations"] = cites
        return body


def add_completion_route(app: FastAPI, served: Served, auth: list) -> None:
    """POST /v1/completions: raw text after <|endoftext|>, as in pretraining; streamed or whole."""

    @app.post("/v1/completions", dependencies=auth)
    async def complete(req: CompletionRequest, http: Request):
        served.check_model(req.model)
        tok = served.tok
        prompt, max_new, stops = check_completion(req, served.limits)
        prompt_ids = [tok.eot_id] + tok.encode(prompt)
        params = served.params(req, max_new, len(prompt_ids))
        rid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": served.model_name}
        job = served.worker.submit(prompt_ids, params)
        if req.stream:
            events = reply_events(tok, None, job, stops)
            return event_stream(sse_stream(events, job, CompletionChunks(head, prompt, bool(req.echo)),
                                           len(prompt_ids), include_usage(req)))
        parts, finish, n = await whole_reply(served, http, job, stops)
        text = (prompt if req.echo else "") + reply_text(parts)
        return {**head, "choices": [completion_choice(text, finish)], "usage": usage(len(prompt_ids), n)}


async def whole_reply(served: Served, http: Request, job, stops: list[str]) -> tuple[list[dict], str, int]:
    """A reply read to its end (parts, finish reason, tokens); a client that leaves cancels it."""
    try:
        return await collect_reply(reply_events(served.tok, http, job, stops))
    finally:
        job.cancel()


def include_usage(req: ChatRequest | CompletionRequest) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


def add_chat_page(app: FastAPI, static: Path = STATIC) -> None:
    """GET / (the chat page, left out of the OpenAPI schema) and its files under /static."""
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")
