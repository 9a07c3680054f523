"""From the engine's token ids to what a client reads: text as soon as UTF-8 allows, tool spans,
stop strings, and the end of a reply with its finish reason and token count.

`reply_events` is the one reader of a job's event queue; the chat and completion routes, streamed
or not, all consume it (streaming in `gptlab.serve.sse`, whole replies through `collect_reply`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from gptlab.infer.stream import TextStream
from gptlab.serve.schemas import ApiError
from gptlab.serve.worker import Request as Job
from gptlab.tokenizer.special import TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END


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


async def reply_events(
    tok, http: Request | None, job: Job, stops: list[str]
) -> AsyncIterator[tuple[str, Any]]:
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


async def collect_reply(events: AsyncIterator[tuple[str, Any]]) -> tuple[list[dict], str, int]:
    """A whole reply: its parts ({"type": "text" | "tool_call" | "tool_result", "text"}, runs of
    text merged), the finish reason and the number of generated tokens."""
    parts: list[dict] = []
    finish, n = "stop", 0
    async for kind, s in events:
        if kind == "end":
            finish, n = s
        elif parts and parts[-1]["type"] == kind == "text":
            parts[-1]["text"] += s
        else:
            parts.append({"type": kind, "text": s})
    return parts, finish, n


def reply_text(parts: list[dict]) -> str:
    """The text parts of a reply, joined (tool spans left out)."""
    return "".join(p["text"] for p in parts if p["type"] == "text")
