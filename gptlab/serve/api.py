"""The OpenAI-compatible HTTP API (FastAPI) in front of one `EngineWorker`, and the chat page.

    app = create_app(EngineWorker(engine), tok, model_name="tiny-chat")
    # POST /v1/chat/completions, POST /v1/completions (both with "stream": true for SSE),
    # GET /v1/models, GET /health, GET / (the chat page)

Design decisions:
- Every error is an OpenAI-style body `{"error": {"message", "type", "param", "code"}}` with a 4xx
  status: validation failures are 400 (as OpenAI), a wrong key 401, a body over the cap 413.
  Nothing a client sends should give a 500; the schema fuzzing test holds us to it.
- Tool use runs on the server (the engine forces tool results in), so it is not OpenAI's
  client-side `tool_calls`: the reply's `content` is its text, and the extension field `parts`
  (streaming: `delta.tool`) shows the calls and results, per the chat contract.
- RAG (extension `"rag": true`, the default when the server has an index): the last user message
  is the query; passages go into the prompt through `build_rag_messages`, and `citations`
  (file, line, snippet) come back in the response, or in the final streamed chunk.
- A disconnected client cancels its request, so its slot serves someone else at the next step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptlab.infer.engine import SamplingParams
from gptlab.infer.stream import TextStream
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
from gptlab.serve.worker import EngineWorker
from gptlab.serve.worker import Request as Job
from gptlab.tokenizer.special import TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END

STATIC = Path(__file__).parent / "static"


# ---------------------------------------------------------------------------- token -> text


class ReplyDecoder:
    """Generated ids -> events: ("text", str) as soon as UTF-8 allows, and ("tool_call" |
    "tool_result", text) when a tool span closes. Other special tokens (<|end|>) are not text."""

    def __init__(self, tok):
        self.tok = tok
        self.opens = {tok.token_id(TOOL_CALL): "tool_call", tok.token_id(TOOL_RESULT): "tool_result"}
        self.closes = {tok.token_id(TOOL_CALL_END), tok.token_id(TOOL_RESULT_END)}
        self.text = TextStream(tok)
        self.span: str | None = None  # inside a tool span: its kind
        self.span_ids: list[int] = []

    def push(self, i: int) -> list[tuple[str, str]]:
        if i in self.opens:
            out = self._flush_text()
            self.span, self.span_ids = self.opens[i], []
            return out
        if i in self.closes and self.span is not None:
            out = [(self.span, self.tok.decode(self.span_ids))]
            self.span = None
            return out
        if self.tok.is_special(i):
            return []
        if self.span is not None:
            self.span_ids.append(i)
            return []
        s = self.text.push(i)
        return [("text", s)] if s else []

    def _flush_text(self) -> list[tuple[str, str]]:
        s = self.text.flush()
        return [("text", s)] if s else []

    def finish(self) -> list[tuple[str, str]]:
        out = self._flush_text()
        if self.span is not None:  # cut off inside a span: still show it
            out.append((self.span, self.tok.decode(self.span_ids)))
            self.span = None
        return out


class StopMatcher:
    """Holds back just enough text to catch a stop string split across tokens.

    m = StopMatcher(["\\n\\n"]); m.feed("ab\\n") -> ("ab", False); m.feed("\\nc") -> ("", True)
    """

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.keep = max((len(s) for s in stops), default=1) - 1
        self.buf = ""

    def feed(self, s: str) -> tuple[str, bool]:
        if not self.stops:
            return s, False
        self.buf += s
        hits = [i for i in (self.buf.find(st) for st in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[: min(hits)], ""
            return out, True
        # keep only the longest tail that could still grow into a stop string
        cut = len(self.buf)
        for n in range(min(self.keep, len(self.buf)), 0, -1):
            if any(st.startswith(self.buf[-n:]) for st in self.stops):
                cut = len(self.buf) - n
                break
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


# ---------------------------------------------------------------------------- the app


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           type: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(ApiError(status, message, param, code, type).body(), status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before any parsing."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        too_big = _error(413, f"request body over {self.max_bytes} bytes", code="request_too_large")
        if declared > self.max_bytes:
            return await too_big(scope, receive, send)
        # Read the body here (bounded), then replay it: a chunked upload can't sneak past the cap.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await too_big(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls: wait for http.disconnect

        return await self.app(scope, replay, send)


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
    limits = limits or Limits()
    app = FastAPI(title="gptlab", version="1", summary="OpenAI-compatible chat API for a gptlab model")
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    bearer = HTTPBearer(auto_error=False)
    created = int(time.time())
    max_len = worker.engine.max_len

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        err = (e.errors() or [{}])[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        return _error(400, f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid request')}",
                      param=".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return _error(e.status_code, str(e.detail), code=code)

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:  # a bug, reported in the same shape
        return _error(500, f"internal error: {type(e).__name__}", type="server_error")

    async def check_key(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if api_key is None:
            return
        given = cred.credentials if cred is not None else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                           code="invalid_api_key", type="authentication_error")

    # ----- helpers -----
    def params_for(req, max_new: int, prompt_len: int) -> SamplingParams:
        room = max_len - prompt_len - 1
        if room < 1:
            raise ApiError(400, f"the prompt has {prompt_len} tokens; this model's context is {max_len}",
                           "messages", "context_length_exceeded")
        # A temperature this small is greedy anyway, and logits / 1e-40 overflow float32 to inf.
        temperature = 0.0 if req.temperature < 1e-6 else req.temperature
        return SamplingParams(min(max_new, room), temperature, req.top_k,
                              None if req.top_p >= 1.0 else req.top_p, req.seed)

    async def generate(http: Request | None, job: Job, stops: list[str]) -> AsyncIterator[tuple[str, Any]]:
        """Yields ("text", s), ("tool_call" | "tool_result", s), then ("end", (finish, n_tokens)).

        The caller cancels `job` in a `finally`, so a client that leaves frees its slot. A
        non-streaming handler passes `http` to poll for a disconnect; a streaming one passes None:
        Starlette's StreamingResponse already listens for it (and cancels us), and a second
        reader of the same ASGI receive channel would steal its disconnect message.
        """
        dec, stop = ReplyDecoder(tok), StopMatcher(stops)
        n, checked = 0, time.monotonic()
        try:
            while True:
                try:
                    batch = [await asyncio.wait_for(job.events.get(), timeout=0.5)]
                except asyncio.TimeoutError:
                    batch = []
                if time.monotonic() - checked > 0.25:  # tokens may never pause: check by the clock
                    checked = time.monotonic()
                    if http is not None and await http.is_disconnected():
                        return
                # Coalesce: when this reader lags behind the engine, send what is queued as one
                # delta instead of one chunk per token (per-chunk JSON + send dominate at 8 clients).
                while not job.events.empty():
                    batch.append(job.events.get_nowait())
                text = ""
                for event in batch:
                    if event[0] == "error":
                        raise ApiError(503, event[1], code="engine_error", type="server_error")
                    if event[0] == "done":
                        tail, _ = stop.feed("".join(s for k, s in dec.finish() if k == "text"))
                        text += tail + stop.flush()
                        if text:
                            yield "text", text
                        yield "end", ("stop" if event[1] in ("stop", "cancelled") else event[1], n)
                        return
                    n += 1
                    for kind, s in dec.push(event[1]):
                        if kind != "text":
                            if text:
                                yield "text", text
                                text = ""
                            yield kind, s
                            continue
                        s, hit = stop.feed(s)
                        text += s
                        if hit:
                            job.cancel()
                            if text:
                                yield "text", text
                            yield "end", ("stop", n)
                            return
                if text:
                    yield "text", text
        finally:
            job.cancel()  # no-op when done; frees the slot when the client left or a stop matched

    def sse(obj: dict) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    async def retrieve(req: ChatRequest, messages: list[dict]) -> tuple[list[dict], list[dict] | None]:
        use = req.rag if req.rag is not None else retriever is not None
        if not use:
            return messages, None
        if retriever is None:
            raise ApiError(400, "this server has no RAG index (start it with --rag INDEX_DIR)", "rag")
        from gptlab.rag.retrieve import build_rag_messages, citations

        question = content_text(req.messages[-1].content)
        passages = await asyncio.to_thread(retriever.search, question, rag_k)
        return build_rag_messages(question, passages, messages[:-1]), citations(passages)

    # ----- routes -----
    @app.get("/health")
    async def health() -> dict:
        """Liveness and load: requests decoding now and waiting for a slot."""
        return {"status": "ok", "model": model_name, "active": worker.active, "waiting": worker.waiting,
                "slots": worker.engine.cache.n_slots, "steps": worker.steps, "tokens": worker.tokens,
                "rag": retriever is not None}

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    async def models() -> dict:
        return {"object": "list", "data": [
            {"id": model_name, "object": "model", "created": created, "owned_by": "gptlab"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat(req: ChatRequest, http: Request):
        from gptlab.tokenizer.chat import render_prompt

        max_new, stops = check_chat(req, limits)
        messages, cites = await retrieve(req, messages_as_dicts(req.messages))
        try:
            prompt_ids = render_prompt(tok, messages)
        except ValueError as e:
            raise ApiError(400, str(e), "messages") from None
        params = params_for(req, max_new, len(prompt_ids))
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name}

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            job = worker.submit(prompt_ids, params)

            async def events() -> AsyncIterator[str]:
                yield sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                "finish_reason": None}]})
                try:
                    async for kind, s in generate(None, job, stops):
                        if kind == "end":
                            finish, n = s
                            last = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
                            if cites is not None:
                                last["citations"] = cites
                            yield sse(last)
                            if include_usage:
                                yield sse({**head, "choices": [], "usage": _usage(len(prompt_ids), n)})
                        else:
                            delta = {"content": s} if kind == "text" else {"tool": {"type": kind, "text": s}}
                            yield sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                except ApiError as e:
                    yield sse(e.body())
                finally:
                    job.cancel()
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        parts: list[dict] = []
        finish, n = "stop", 0
        job = worker.submit(prompt_ids, params)
        try:
            async for kind, s in generate(http, job, stops):
                if kind == "end":
                    finish, n = s
                elif parts and parts[-1]["type"] == kind == "text":
                    parts[-1]["text"] += s
                else:
                    parts.append({"type": kind, "text": s})
        finally:
            job.cancel()
        message: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(p["text"] for p in parts if p["type"] == "text")}
        if any(p["type"] != "text" for p in parts):
            message["parts"] = parts
        body: dict[str, Any] = {"id": rid, "object": "chat.completion", "created": now, "model": model_name,
                                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                "usage": _usage(len(prompt_ids), n)}
        if cites is not None:
            body["citations"] = cites
        return body

    @app.post("/v1/completions", dependencies=[Depends(check_key)])
    async def complete(req: CompletionRequest, http: Request):
        prompt, max_new, stops = check_completion(req, limits)
        prompt_ids = [tok.eot_id] + tok.encode(prompt)
        params = params_for(req, max_new, len(prompt_ids))
        rid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": model_name}

        def choice(text: str, finish: str | None) -> dict:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            job = worker.submit(prompt_ids, params)

            async def events() -> AsyncIterator[str]:
                if req.echo:
                    yield sse({**head, "choices": [choice(prompt, None)]})
                try:
                    async for kind, s in generate(None, job, stops):
                        if kind == "end":
                            yield sse({**head, "choices": [choice("", s[0])]})
                            if include_usage:
                                yield sse({**head, "choices": [], "usage": _usage(len(prompt_ids), s[1])})
                        elif kind == "text":
                            yield sse({**head, "choices": [choice(s, None)]})
                except ApiError as e:
                    yield sse(e.body())
                finally:
                    job.cancel()
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        text, finish, n = prompt if req.echo else "", "stop", 0
        job = worker.submit(prompt_ids, params)
        try:
            async for kind, s in generate(http, job, stops):
                if kind == "end":
                    finish, n = s
                elif kind == "text":
                    text += s
        finally:
            job.cancel()
        return {**head, "choices": [choice(text, finish)], "usage": _usage(len(prompt_ids), n)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
