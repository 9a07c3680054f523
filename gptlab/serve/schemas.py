"""Request and response shapes of the OpenAI-compatible API, and the server's limits.

The models follow the OpenAI chat/completions API closely enough that the official `openai`
client works unchanged; fields it sends that we cannot honour (n > 1, logprobs) get a 400, and
unknown fields are ignored as OpenAI ignores them. Extensions, all optional:
`top_k`, `rag` (retrieve passages for the last user message) and, in responses, `parts`
(text / tool_call / tool_result, per the chat contract) and `citations`.

Static bounds (temperature 0..2, top_p in (0, 1], roles) live in the schema, so they appear in
the OpenAPI document; limits an operator sets at start-up (messages, characters, max_tokens)
are checked against `Limits` by `check_chat` / `check_completion`, which raise `ApiError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; `gptlab serve` flags override the defaults."""

    max_messages: int = 64  # messages per chat request
    max_chars: int = 32_000  # characters of all message contents (or the prompt) together
    max_tokens: int = 1024  # largest max_tokens a request may ask for
    default_max_tokens: int = 256  # when a request gives none
    max_request_bytes: int = 1_000_000  # HTTP body size cap (413 above it)
    max_stop: int = 4  # stop strings per request, as OpenAI
    max_stop_chars: int = 64


class ApiError(Exception):
    """A request error to send back as an OpenAI-style body: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ---------------------------------------------------------------------------- requests


class ContentPart(BaseModel):
    """OpenAI's {"type": "text", "text": ...}; assistant history may also carry our tool parts."""

    type: Literal["text", "tool_call", "tool_result"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None  # accepted and ignored, as some clients send it


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model: str | None = None  # the served model's name (GET /v1/models), else 404; omitted: the served model
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)  # extension
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**62), le=2**62)  # torch seeds are 64-bit; room for seed + n
    user: str | None = None
    logprobs: bool | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    rag: bool | None = None  # extension: None = the server's default (on when it has an index)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    echo: bool = False


# ---------------------------------------------------------------------------- checks


def _stops(req: _Sampling, limits: Limits) -> list[str]:
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > limits.max_stop:
        raise ApiError(400, f"at most {limits.max_stop} stop strings", "stop")
    if any(not s or len(s) > limits.max_stop_chars for s in stops):
        raise ApiError(400, f"stop strings must have 1 to {limits.max_stop_chars} characters", "stop")
    return stops


def _common(req: _Sampling, max_tokens: int | None, limits: Limits) -> tuple[int, list[str]]:
    if req.n != 1:
        raise ApiError(400, "only n=1 is supported", "n")
    if req.logprobs:
        raise ApiError(400, "logprobs are not supported", "logprobs")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise ApiError(400, f"max_tokens is {max_tokens}, the limit is {limits.max_tokens}", "max_tokens")
    if req.top_k is not None and req.top_k > 1_000_000:
        raise ApiError(400, "top_k is too large", "top_k")
    return max_tokens or limits.default_max_tokens, _stops(req, limits)


def content_text(content: str | list[ContentPart]) -> str:
    """The plain text of a message (tool parts included, for length limits)."""
    return content if isinstance(content, str) else "".join(p.text for p in content)


def check_chat(req: ChatRequest, limits: Limits) -> tuple[int, list[str]]:
    """Raise ApiError unless the request fits the limits; returns (max_new_tokens, stop strings)."""
    if len(req.messages) > limits.max_messages:
        raise ApiError(400, f"{len(req.messages)} messages; the limit is {limits.max_messages}", "messages")
    chars = sum(len(content_text(m.content)) for m in req.messages)
    if chars > limits.max_chars:
        raise ApiError(400, f"{chars} characters of messages; the limit is {limits.max_chars}", "messages")
    if req.messages[-1].role != "user":
        raise ApiError(400, "the last message must come from the user", "messages")
    return _common(req, req.max_completion_tokens or req.max_tokens, limits)


def check_completion(req: CompletionRequest, limits: Limits) -> tuple[str, int, list[str]]:
    """Like check_chat for /v1/completions; returns (prompt, max_new_tokens, stop strings)."""
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise ApiError(400, "give one prompt (a string or a list of one string)", "prompt")
        prompt = prompt[0]
    if len(prompt) > limits.max_chars:
        raise ApiError(400, f"{len(prompt)} characters of prompt; the limit is {limits.max_chars}", "prompt")
    max_new, stops = _common(req, req.max_tokens, limits)
    return prompt, max_new, stops


def messages_as_dicts(messages: list[ChatMessage]) -> list[dict]:
    """Pydantic messages -> the contract's plain dicts (what the chat renderer takes)."""
    out = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else [p.model_dump() for p in m.content]
        out.append({"role": m.role, "content": content})
    return out
