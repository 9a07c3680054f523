"""What stands between a client and the engine: the body-size cap, the API key, the sampling
limits, and the one error shape every failure is reported in.

Every error is an OpenAI-style body `{"error": {"message", "type", "param", "code"}}` with a 4xx
status: validation failures are 400 (as OpenAI), a wrong key 401, a body over the cap 413.
Nothing a client sends should give a 500; the schema fuzzing test holds us to it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptlab.infer.engine import SamplingParams
from gptlab.serve.schemas import ApiError


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
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
        too_big = error_response(413, f"request body over {self.max_bytes} bytes", code="request_too_large")
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


def install_error_handlers(app: FastAPI) -> None:
    """Every exception, ours, FastAPI's or a bug's, answered in the OpenAI error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        err = (e.errors() or [{}])[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        return error_response(400, f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid request')}",
                              param=".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return error_response(e.status_code, str(e.detail), code=code)

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:  # a bug, reported in the same shape
        return error_response(500, f"internal error: {type(e).__name__}", type="server_error")


def key_check(api_key: str | None) -> Callable[..., Awaitable[None]]:
    """A route dependency: 401 unless the request carries `Authorization: Bearer <api_key>`
    (compared in constant time); lets everything through when `api_key` is None."""
    bearer = HTTPBearer(auto_error=False)

    async def check_key(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if api_key is None:
            return
        given = cred.credentials if cred is not None else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                           code="invalid_api_key", type="authentication_error")

    return check_key


def sampling_params(req, max_new: int, prompt_len: int, max_len: int) -> SamplingParams:
    """The engine's settings for a chat or completion request; 400 when the prompt leaves no room
    in the model's context of `max_len` tokens."""
    room = max_len - prompt_len - 1
    if room < 1:
        raise ApiError(400, f"the prompt has {prompt_len} tokens; this model's context is {max_len}",
                       "messages", "context_length_exceeded")
    # A temperature this small is greedy anyway, and logits / 1e-40 overflow float32 to inf.
    temperature = 0.0 if req.temperature < 1e-6 else req.temperature
    return SamplingParams(min(max_new, room), temperature, req.top_k,
                          None if req.top_p >= 1.0 else req.top_p, req.seed)
