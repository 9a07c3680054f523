"""Render conversations to token ids with a loss mask, and parse the model's replies back.

Layout (special tokens from `special.py`; one conversation, no spaces added anywhere):

    <|endoftext|><|system|>Be brief.<|end|><|user|>What is 12*7?<|end|>
    <|assistant|>Let me check.<|tool_call|>calculator: 12*7<|tool_call_end|>
    <|tool_result|>84<|tool_result_end|>It is 84.<|end|>

Design decisions:
- The mask is 1 on what the assistant writes: its text, its tool calls (with their two framing
  tokens) and its closing `<|end|>` (or the model never learns to stop). It is 0 on BOS,
  system and user turns, the `<|assistant|>` header (the engine writes it) and the tool-result
  span (the engine forces it in; the model must not be trained to invent results).
- Message text is encoded as plain text: a user typing "<|end|>" gets bytes, never the control
  token, so data cannot forge turns.
- Each stretch of text between two special tokens is encoded on its own, and adjacent text parts
  are joined first. That is exactly what a Hugging Face tokenizer does with the string our Jinja
  `chat_template()` renders (it splits on added tokens first), so both give the same ids.
- Messages are validated (roles, order, content types) and bad ones raise ValueError; readers of
  files wrap it into InputError with the file and line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gptlab.tokenizer.chat_template import chat_template  # noqa: F401 (public here too)
from gptlab.tokenizer.special import (
    ASSISTANT,
    END,
    ENDOFTEXT,
    REWARD,
    SYSTEM,
    TOOL_CALL,
    TOOL_CALL_END,
    TOOL_RESULT,
    TOOL_RESULT_END,
    USER,
)

if TYPE_CHECKING:
    from gptlab.tokenizer.protocol import TokenizerLike as Tokenizer  # either backend

ROLES = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
PART_TYPES = ("text", "tool_call", "tool_result")

# A segment is (special token or None for text, text, mask value).
Segment = tuple[str | None, str, int]


# ---------------------------------------------------------------------------- validation


def validate_messages(messages: Any) -> None:
    """Raise ValueError (one clear sentence) unless `messages` is a well-formed conversation.

    Rules: a non-empty list of {"role", "content"} dicts; roles system/user/assistant; system
    only first; then user and assistant alternate, starting with user. Content is a str or a
    list of parts {"type": "text"|"tool_call"|"tool_result", "text": str}; tool parts only in
    assistant messages.

    >>> validate_messages([{"role": "user", "content": "hi"}, {"role": "user", "content": "?"}])
    Traceback (most recent call last):
    ...
    ValueError: message 1: two user messages in a row (user and assistant must alternate)
    """
    # ValueError for every kind of malformed input (type errors included): readers catch one type
    if not isinstance(messages, list):
        raise ValueError(  # noqa: TRY004
            f"a conversation must be a list of messages, not a {type(messages).__name__}"
        )
    if not messages:
        raise ValueError("empty conversation")
    prev = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {i} is a {type(m).__name__}, not an object")  # noqa: TRY004
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(
                f"message {i}: unknown role {role!r} (expected system, user or assistant)"
            )
        if "content" not in m:
            raise ValueError(f"message {i} ({role}) has no content")
        _validate_content(m["content"], role, i)
        if role == "system":
            if i != 0:
                raise ValueError(f"message {i}: a system message may only come first")
        elif prev == role:
            raise ValueError(
                f"message {i}: two {role} messages in a row (user and assistant must alternate)"
            )
        elif prev in (None, "system") and role != "user":
            raise ValueError(
                f"message {i}: the first message after any system message must be user, not {role}"
            )
        prev = role
    if prev == "system":
        raise ValueError("conversation has only a system message")


def _validate_content(content: Any, role: str, i: int) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ValueError(  # noqa: TRY004
            f"message {i} ({role}): content must be a string or a list of parts, "
            f"not {type(content).__name__}"
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            raise ValueError(
                f"message {i} ({role}) part {j}: expected {{'type': one of "
                f"{', '.join(PART_TYPES)}, 'text': ...}}"
            )
        if not isinstance(part.get("text"), str):
            msg = f"message {i} ({role}) part {j}: 'text' must be a string"
            raise ValueError(msg)  # noqa: TRY004
        if part["type"] != "text" and role != "assistant":
            raise ValueError(
                f"message {i} ({role}) part {j}: {part['type']} parts belong to assistant messages"
            )


# ---------------------------------------------------------------------------- rendering


def _segments(messages: list[dict]) -> list[Segment]:
    """The conversation as (special, text, mask) pieces, before encoding; see the module doc."""
    segs: list[Segment] = [(ENDOFTEXT, "", 0)]
    for m in messages:
        role, content = m["role"], m["content"]
        bot = 1 if role == "assistant" else 0
        segs.append((ROLES[role], "", 0))  # the header is written by the engine, never learned
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            kind, text = part["type"], part["text"]
            if kind == "text":
                segs.append((None, text, bot))
            elif kind == "tool_call":
                segs += [(TOOL_CALL, "", 1), (None, text, 1), (TOOL_CALL_END, "", 1)]
            else:  # tool_result: forced in by the engine, so never a training target
                segs += [(TOOL_RESULT, "", 0), (None, text, 0), (TOOL_RESULT_END, "", 0)]
        segs.append((END, "", bot))
    return segs


def _encode(tok: Tokenizer, segs: list[Segment]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    mask: list[int] = []
    pending, pending_mask = "", 0
    for special, text, m in segs + [(ENDOFTEXT, "", 0)]:  # a sentinel flushes the last text
        if special is None:
            # adjacent text parts are one stretch, as in the template's string (see module doc)
            pending, pending_mask = pending + text, m
            continue
        if pending:
            piece = tok.encode(pending)
            ids += piece
            mask += [pending_mask] * len(piece)
            pending = ""
        ids.append(tok.token_id(special))
        mask.append(m)
    return ids[:-1], mask[:-1]  # drop the sentinel


def render_conversation(
    tok: Tokenizer, messages: list[dict], max_tokens: int | None = None
) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of a whole conversation, cut to the first `max_tokens` tokens.

    >>> ids, mask = render_conversation(tok, [{"role": "user", "content": "hi"},
    ...     {"role": "assistant", "content": "hello"}])  # doctest: +SKIP
    >>> [tok.decode([i]) for i in ids]  # doctest: +SKIP
    ['<|endoftext|>', '<|user|>', 'hi', '<|end|>', '<|assistant|>', 'hello', '<|end|>']
    >>> mask  # doctest: +SKIP
    [0, 0, 0, 0, 0, 1, 1]
    """
    validate_messages(messages)
    ids, mask = _encode(tok, _segments(messages))
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return ids, mask


def render_prompt(tok: Tokenizer, messages: list[dict]) -> list[int]:
    """Ids of the conversation so far (it must end with a user message) + `<|assistant|>`,
    ready for the model to write the reply."""
    validate_messages(messages)
    if messages[-1]["role"] != "user":
        raise ValueError(f"a prompt must end with a user message, not {messages[-1]['role']}")
    ids, _ = _encode(tok, _segments(messages))
    return ids + [tok.token_id(ASSISTANT)]


def render_for_reward(tok: Tokenizer, messages: list[dict]) -> list[int]:
    """Ids of a full conversation (ending with an assistant turn and its `<|end|>`) +
    `<|reward|>`, the position where the reward model reads its scalar."""
    validate_messages(messages)
    if messages[-1]["role"] != "assistant":
        raise ValueError(
            "a conversation to score must end with an assistant message, "
            f"not {messages[-1]['role']}"
        )
    ids, _ = _encode(tok, _segments(messages))
    return ids + [tok.token_id(REWARD)]


# ---------------------------------------------------------------------------- parsing replies


def parse_assistant(tok: Tokenizer, ids: list[int]) -> list[dict]:
    """Generated ids (after the assistant header) -> content parts, stopping at `<|end|>` (or an
    imported model's end-of-turn token).

    Any other turn-level special token (`<|endoftext|>`, `<|user|>`, ...) also ends the reply:
    a model that writes one has left its turn. A span cut off before its closing token keeps
    its type (a half-written tool call is still a tool call). Empty text parts are dropped.

    >>> parse_assistant(tok, tok.encode("It is<|tool_call|>calculator: 2+2<|tool_call_end|>"
    ...                                 "<|tool_result|>4<|tool_result_end|> 4.<|end|>junk",
    ...                                 allowed_special="all"))  # doctest: +SKIP
    [{'type': 'text', 'text': 'It is'}, {'type': 'tool_call', 'text': 'calculator: 2+2'},
     {'type': 'tool_result', 'text': '4'}, {'type': 'text', 'text': ' 4.'}]
    """
    specials = tok.special_ids  # a tokenizer without tool tokens simply has no tool spans
    opens = {specials[k]: v for k, v in ((TOOL_CALL, "tool_call"), (TOOL_RESULT, "tool_result")) if k in specials}
    closes = {specials[k] for k in (TOOL_CALL_END, TOOL_RESULT_END) if k in specials}
    parts: list[dict] = []
    kind, buf = "text", []

    def flush() -> None:
        text = tok.decode(buf)
        if text or kind != "text":
            parts.append({"type": kind, "text": text})
        buf.clear()

    for i in ids:
        if i in opens:
            flush()
            kind = opens[i]
        elif i in closes:
            flush()
            kind = "text"
        elif tok.is_special(i):
            break  # <|end|>, or a token that starts another turn
        else:
            buf.append(i)
    if buf or kind != "text":
        flush()
    return parts
