"""OpenAI-style server-sent events: one stream loop for chat and completions, and the chunk
shapes that differ between them.

A stream is: the opening chunks, one chunk per delta, the final chunk with the finish reason,
a usage chunk when asked (`stream_options.include_usage`), then `data: [DONE]`. An engine error
mid-stream is sent as an error body before [DONE] (the status line is long gone by then).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi.responses import StreamingResponse

from gptlab.serve.schemas import ApiError
from gptlab.serve.worker import Request as Job

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class ChunkShape(Protocol):
    """What differs between the chat and the completion stream: the chunks themselves."""

    head: dict  # id, object, created, model: in every chunk

    def opening(self) -> list[dict]: ...

    def delta(self, kind: str, text: str) -> dict | None: ...  # None: nothing to send for this event

    def final(self, finish: str) -> dict: ...


@dataclass
class ChatChunks:
    """`chat.completion.chunk`s: a role delta first, `delta.content` for text, the extension
    `delta.tool` for tool spans, and `citations` (RAG) in the final chunk."""

    head: dict
    citations: list[dict] | None = None

    def opening(self) -> list[dict]:
        return [{**self.head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]}]

    def delta(self, kind: str, text: str) -> dict | None:
        delta = {"content": text} if kind == "text" else {"tool": {"type": kind, "text": text}}
        return {**self.head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    def final(self, finish: str) -> dict:
        last = {**self.head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if self.citations is not None:
            last["citations"] = self.citations
        return last


@dataclass
class CompletionChunks:
    """`text_completion` chunks: the prompt first when `echo`, text only (tool spans are left out)."""

    head: dict
    prompt: str
    echo: bool = False

    def opening(self) -> list[dict]:
        return [{**self.head, "choices": [completion_choice(self.prompt, None)]}] if self.echo else []

    def delta(self, kind: str, text: str) -> dict | None:
        return {**self.head, "choices": [completion_choice(text, None)]} if kind == "text" else None

    def final(self, finish: str) -> dict:
        return {**self.head, "choices": [completion_choice("", finish)]}


def completion_choice(text: str, finish: str | None) -> dict:
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}


async def sse_stream(events: AsyncIterator[tuple[str, Any]], job: Job, shape: ChunkShape,
                     prompt_len: int, include_usage: bool) -> AsyncIterator[str]:
    """The SSE lines for one reply; the job is cancelled however the stream ends."""
    for obj in shape.opening():
        yield sse(obj)
    try:
        async for kind, s in events:
            if kind == "end":
                finish, n = s
                yield sse(shape.final(finish))
                if include_usage:
                    yield sse({**shape.head, "choices": [], "usage": usage(prompt_len, n)})
            elif (chunk := shape.delta(kind, s)) is not None:
                yield sse(chunk)
    except ApiError as e:
        yield sse(e.body())
    finally:
        job.cancel()
    yield "data: [DONE]\n\n"


def event_stream(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(lines, media_type="text/event-stream", headers=SSE_HEADERS)
