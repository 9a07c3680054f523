"""A multi-turn chat on top of the engine: holds the messages, streams each reply as text.

    session = ChatSession(engine, tok, system="Be brief.", temperature=0.8, seed=0)
    for piece in session.send("What is 12*7?"):
        print(piece, end="", flush=True)     # "Let me check. [calculator: 12*7 -> 84] It is 84."
    session.messages[-1]                     # the assistant message, tool parts included

Design decisions:
- The history's assistant message is built by `tokenizer.chat.parse_assistant` from the ids the
  engine produced: one source of truth for ids -> parts, shared with eval and the server. The
  streamed text is only a view of the same ids (tool spans shown as `[call -> result]`), and
  `format_parts(parts)` of the stored message equals what was streamed.
- The model's context is finite: before each reply, the oldest user/assistant turns are dropped
  until the prompt leaves room for the answer; the system prompt and few-shot examples are kept.
  Each drop is reported through `on_note` (the CLI prints it to stderr) and kept in `notes`.
- An answer stopped early (Ctrl-C: the caller closes the generator) is kept in the history as
  far as it got, because the user saw it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from gptlab.errors import InputError
from gptlab.infer.stream import TextStream

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike

# Builds the messages to render from (history, new user text); the RAG path puts documents here.
Framer = Callable[[list[dict], str], list[dict]]


def format_parts(parts: list[dict] | str) -> str:
    """Assistant content as display text: tool spans become readable markers.

    >>> format_parts([{"type": "text", "text": "It is "},
    ...               {"type": "tool_call", "text": "calculator: 2+3"},
    ...               {"type": "tool_result", "text": "5"}, {"type": "text", "text": " 5."}])
    'It is [calculator: 2+3 -> 5] 5.'
    """
    if isinstance(parts, str):
        return parts
    out: list[str] = []
    for i, p in enumerate(parts):
        prev = parts[i - 1]["type"] if i else None
        nxt = parts[i + 1]["type"] if i + 1 < len(parts) else None
        if p["type"] == "text":
            out.append(p["text"])
        elif p["type"] == "tool_call":
            out.append(f"[{p['text']}" + ("" if nxt == "tool_result" else "]"))
        else:  # a result closes the marker its call opened
            out.append((" -> " if prev == "tool_call" else "[-> ") + p["text"] + "]")
    return "".join(out)


def reply_text(parts: list[dict] | str) -> str:
    """The reply as a task scores it: text and tool results, without the call syntax.

    >>> reply_text([{"type": "text", "text": "It is "}, {"type": "tool_call", "text": "calculator: 2+3"},
    ...             {"type": "tool_result", "text": "5"}])
    'It is 5'
    """
    if isinstance(parts, str):
        return parts
    return "".join(p["text"] for p in parts if p["type"] != "tool_call")


def _content(parts: list[dict]) -> str | list[dict]:
    """Plain text stays a string (the common case); tool use keeps its parts."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


class ChatSession:
    def __init__(
        self,
        engine: Engine,
        tok: TokenizerLike,
        system: str | None = None,
        few_shot: list[dict] | None = None,
        temperature: float = 0.8,
        top_k: int | None = 50,
        top_p: float | None = None,
        max_new_tokens: int = 256,
        seed: int | None = None,
        on_note: Callable[[str], None] | None = None,
    ):
        self.engine, self.tok = engine, tok
        self.system = system or None
        self.few_shot = list(few_shot or [])  # user/assistant pairs kept ahead of the conversation
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.on_note = on_note
        self.turns: list[dict] = []  # the conversation proper: user, assistant, user, ...
        self.notes: list[str] = []
        self._replies = 0  # seed + replies so far: each reply samples differently, reproducibly
        specials = tok.special_ids
        self._call, self._call_end = specials["<|tool_call|>"], specials["<|tool_call_end|>"]
        self._result, self._result_end = (
            specials["<|tool_result|>"],
            specials["<|tool_result_end|>"],
        )
        self._tool_ids = {self._call, self._call_end, self._result, self._result_end}

    # ----- history -----
    @property
    def messages(self) -> list[dict]:
        """The whole conversation as rendered: system, few-shot examples, then the turns."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.few_shot + self.turns

    def reset(self) -> None:
        """Forget the conversation; the system prompt and few-shot examples stay."""
        self.turns = []

    def set_system(self, text: str | None) -> None:
        self.system = text or None

    def _note(self, text: str) -> None:
        self.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    def _prompt(self, user_text: str, frame: Framer | None) -> list[int]:
        """Render history + the new user turn, dropping the oldest turns until the reply fits."""
        budget = self.engine.max_len - min(self.max_new_tokens, self.engine.max_len // 2)
        dropped = 0
        while True:
            head = [{"role": "system", "content": self.system}] if self.system else []
            history = head + self.few_shot + self.turns
            messages = (
                frame(history, user_text)
                if frame
                else history + [{"role": "user", "content": user_text}]
            )
            try:
                ids = self.tok.render_prompt(messages)
            except ValueError as e:
                raise InputError(None, f"cannot render the conversation: {e}") from None
            if len(ids) <= budget:
                break
            if not self.turns:
                raise InputError(
                    None,
                    f"the message needs {len(ids)} tokens but the context holds {self.engine.max_len} "
                    f"with {self.engine.max_len - budget} kept for the answer: shorten it "
                    "(or the system prompt / few-shot examples)",
                )
            self.turns = self.turns[2:]  # the oldest user turn and its answer
            dropped += 1
        if dropped:
            self._note(f"[context full: dropped the {dropped} oldest turn(s) of the conversation]")
        return ids

    # ----- one reply -----
    def send(self, user_text: str, frame: Framer | None = None) -> Iterator[str]:
        """Stream the reply to `user_text` as text pieces; the turn pair is added to the history.

        `frame(history, user_text) -> messages` replaces the plain user turn in the prompt (RAG
        puts the retrieved documents there); the history keeps the plain `user_text`.
        """
        prompt = self._prompt(user_text, frame)
        self.turns.append({"role": "user", "content": user_text})
        seed = None if self.seed is None else self.seed + self._replies
        self._replies += 1
        ids: list[int] = []
        rows = self.engine.generate(
            [prompt],
            self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            seed=seed,
        )
        try:
            yield from self._stream(rows, ids)
        finally:
            rows.close()  # frees the engine's slot even when the caller stopped early
            self.turns.append(
                {"role": "assistant", "content": _content(self.tok.parse_assistant(ids))}
            )

    def _stream(self, rows: Iterator[list[int | None]], ids: list[int]) -> Iterator[str]:
        """Text of the ids as they come; a tool span is shown once complete, as a marker."""
        text = TextStream(self.tok)
        span: list[int] = []  # ids of the tool span being read (call, then its result)
        for row in rows:
            t = row[0]
            if t is None:
                continue
            if span and span[-1] == self._call_end and t != self._result:
                yield format_parts(self.tok.parse_assistant(span))  # a call no tool answered
                span = []
            if self.tok.is_special(t) and t not in self._tool_ids:
                break  # <|end|> or the start of another turn: parse_assistant stops here too
            ids.append(t)
            if not span and t in (self._call_end, self._result_end):
                continue  # a stray closing token: parse_assistant ignores it too
            if span or t in (self._call, self._result):
                if not span:
                    yield text.flush()
                span.append(t)
                if t == self._result_end:
                    yield format_parts(self.tok.parse_assistant(span))
                    span = []
                continue
            yield text.push(t)
        if span:  # the reply ended inside a tool span (or right after a call nobody ran)
            yield format_parts(self.tok.parse_assistant(span))
        else:
            yield text.flush()
