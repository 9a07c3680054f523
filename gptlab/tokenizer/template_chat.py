"""Chat rendering with a model's own Jinja `chat_template`, returning gptlab's (ids, loss_mask).

Design decisions:
- The template runs in the same Jinja environment as transformers' `apply_chat_template`:
  a sandbox with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension, the
  `{% generation %}` tag (rendered as its plain body), `tojson` (no HTML escaping, non-ASCII kept),
  `raise_exception`, `strftime_now`, `dict`, `namespace`; its variables are `messages`, `tools`,
  `documents`, `add_generation_prompt` and the named special tokens (`bos_token`, `eos_token`...).
  The rendered string is encoded with special-token text matched, as transformers does
  (`add_special_tokens=False`), so the ids equal `apply_chat_template(..., tokenize=True)`.
- Loss mask, without needing `{% generation %}` in the template: each assistant turn is the text
  it adds, i.e. render(conversation up to and with it) minus render(conversation before it, with
  the generation prompt). The header the generation prompt writes (`<|im_start|>assistant\\n`)
  is never learned (the engine writes it); the turn's text is, up to and including the last
  special token it adds (the end-of-turn token: `<|im_end|>`, `<|eot_id|>`, `</s>`), so the
  template's trailing newline after it is not. A template that rewrites earlier turns once later
  ones come (some reasoning models drop old thoughts) has no such prefixes: a clear ValueError.
- Messages are validated by gptlab's rules (`chat.validate_messages`) so both backends refuse the
  same conversations. Content given as parts is joined into one string. Tool parts are written
  with gptlab's tool tokens (`<|tool_call|>calculator: 2+2<|tool_call_end|><|tool_result|>4
  <|tool_result_end|>`), which `gptlab import` adds to an imported vocabulary: the engine, the
  server and the RL rollouts then handle tool calls by token id for every model. The result span
  is forced in by the engine, so its tokens are masked out like gptlab's own renderer does. A
  tokenizer without the tool tokens refuses tool parts (ValueError).
- Known difference from gptlab's own renderer, shared with transformers: special-token text typed
  inside a message (`<|im_end|>`) becomes the control token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gptlab.tokenizer.chat import validate_messages
from gptlab.tokenizer.special import TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END

# How tool parts are written into a message's text (see the module doc).
TOOL_FRAMES = {"tool_call": (TOOL_CALL, TOOL_CALL_END), "tool_result": (TOOL_RESULT, TOOL_RESULT_END)}
# The named special tokens transformers passes to every template (its SPECIAL_TOKENS_ATTRIBUTES).
TEMPLATE_TOKEN_NAMES = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)


class OffsetEncoder(Protocol):
    """What rendering needs from a tokenizer: ids with character offsets, specials matched."""

    special_ids: dict[str, int]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...
    def is_special(self, i: int) -> bool: ...


# ---------------------------------------------------------------------------- Jinja environment


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` (transformers' assistant-mask marker): its body,
    unchanged. Our mask comes from prefixes, so templates with or without it behave alike."""

    tags = {"generation"}  # noqa: RUF012 (Jinja reads this class attribute)

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


class _Namespace(jinja2.utils.Namespace):
    """Jinja's `namespace` refusing underscore names, like transformers' (no CPython internals)."""

    def __init__(*args: Any, **kwargs: Any):  # no named self: `namespace(self=1)` must work
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


class _TemplateDict:
    """`dict(...)` for templates without exposing the `dict` type itself (as transformers does)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' override: Jinja's own tojson escapes HTML characters
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def compile_template(source: str) -> jinja2.Template:
    """The template compiled in transformers' chat environment (see the module doc)."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env.from_string(source)


# ---------------------------------------------------------------------------- rendering


class ChatTemplate:
    """A model's chat template with the special-token strings it may refer to."""

    def __init__(self, source: str, special_tokens: dict[str, str]):
        self.source = source
        self.special_tokens = {k: v for k, v in special_tokens.items() if k in TEMPLATE_TOKEN_NAMES}
        self._template = compile_template(source)

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The text `apply_chat_template(messages, tokenize=False, ...)` gives."""
        return self._template.render(
            messages=messages, tools=None, documents=None,
            add_generation_prompt=add_generation_prompt, **self.special_tokens,
        )


def template_messages(messages: list[dict], tool_tokens: bool = False) -> list[dict]:
    """Validated plain copies of `messages` as a template expects them: string content, tool
    parts framed by gptlab's tool tokens when the tokenizer has them (`tool_tokens`).

    >>> template_messages([{"role": "user", "content": [{"type": "text", "text": "a"},
    ...                                                  {"type": "text", "text": "b"}]}])
    [{'role': 'user', 'content': 'ab'}]
    """
    validate_messages(messages)
    out = []
    for i, m in enumerate(messages):
        content = m["content"]
        if not isinstance(content, str):
            kinds = {p["type"] for p in content} - {"text"}
            if kinds and not tool_tokens:
                raise ValueError(
                    f"message {i}: {', '.join(sorted(kinds))} parts need gptlab's tool tokens, "
                    "which this tokenizer lacks (`gptlab import` adds them)"
                )
            content = "".join(_part_text(p) for p in content)
        # transformers drops keys whose value is None before rendering
        out.append({k: v for k, v in m.items() if v is not None} | {"content": content})
    return out


def _part_text(part: dict) -> str:
    """A content part as template text: tool spans framed by their special tokens."""
    frame = TOOL_FRAMES.get(part["type"])
    return part["text"] if frame is None else frame[0] + part["text"] + frame[1]


def has_tool_tokens(tok: OffsetEncoder) -> bool:
    return all(t in tok.special_ids for t in (TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END))


def render_prompt(tok: OffsetEncoder, template: ChatTemplate, messages: list[dict]) -> list[int]:
    """Ids of the conversation so far (ending with a user message) + the generation prompt."""
    msgs = template_messages(messages, has_tool_tokens(tok))
    if msgs[-1]["role"] != "user":
        raise ValueError(f"a prompt must end with a user message, not {msgs[-1]['role']}")
    ids, _ = tok.encode_with_offsets(template.render(msgs, add_generation_prompt=True))
    return ids


def render_conversation(
    tok: OffsetEncoder, template: ChatTemplate, messages: list[dict],
    max_tokens: int | None = None,
) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of a whole conversation, cut to the first `max_tokens` tokens; the mask
    is 1 on each assistant reply and its end-of-turn token (see the module doc)."""
    msgs = template_messages(messages, has_tool_tokens(tok))
    text = template.render(msgs)
    ids, offsets = tok.encode_with_offsets(text)
    mask = [0] * len(ids)
    for k, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start = len(_prefix(template, msgs[:k], True, text, k))
        end = len(_prefix(template, msgs[: k + 1], False, text, k))
        _mark_turn(mask, ids, offsets, start, end, tok.is_special)
    if has_tool_tokens(tok):
        _unmask_results(mask, ids, tok.special_ids[TOOL_RESULT], tok.special_ids[TOOL_RESULT_END])
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return ids, mask


def _unmask_results(mask: list[int], ids: list[int], start: int, end: int) -> None:
    """0 on every `<|tool_result|> ... <|tool_result_end|>` span: the engine forces it in."""
    inside = False
    for i, t in enumerate(ids):
        inside = inside or t == start
        if inside:
            mask[i] = 0
        if t == end:
            inside = False


def _prefix(template: ChatTemplate, msgs: list[dict], gen: bool, full: str, k: int) -> str:
    text = template.render(msgs, add_generation_prompt=gen)
    if not full.startswith(text):
        raise ValueError(
            f"message {k}: the chat template renders the conversation before this assistant turn "
            "differently once the turn is added, so its tokens cannot be told apart for the mask"
        )
    return text


def _mark_turn(mask: list[int], ids: list[int], offsets: list[tuple[int, int]],
               start: int, end: int, is_special: Callable[[int], bool]) -> None:
    """Set mask to 1 on the tokens overlapping text[start:end], up to its last special token."""
    inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    specials = [i for i in inside if is_special(ids[i])]
    last = specials[-1] if specials else (inside[-1] if inside else -1)
    for i in inside:
        if i <= last:
            mask[i] = 1
