"""The Hugging Face backend: a model's own `tokenizer.json`, behind gptlab's tokenizer interface.

An imported model brings its tokenizer as `tokenizer.json` (the `tokenizers` format),
`tokenizer_config.json` (named special tokens, `chat_template`) and `special_tokens_map.json`.
`HFTokenizer` answers the same calls as gptlab's BPE `Tokenizer` (`protocol.TokenizerLike`), so a
stage never asks where a model came from.

Design decisions:
- Ids are the `tokenizers` library's, with `add_special_tokens=False`: exactly what
  `transformers.PreTrainedTokenizerFast(...).encode(text, add_special_tokens=False)` gives.
  Callers add BOS/EOS themselves, as they do with gptlab's BPE.
- Special-token text in ordinary input is encoded as plain text unless allowed ("all" or a set),
  as in gptlab's BPE (`encode_special_tokens` on a second copy of the tokenizer): data can't forge
  control tokens. Chat rendering matches them, as the template's own text must.
- `special_ids` are the added tokens marked special; `eot_id` is the model's `eos_token` (for an
  instruct model, its end-of-turn token, e.g. `<|im_end|>`).
- `token_byte_lengths()`: the bytes each id stands for, 0 for special tokens, so bits per byte
  means the same for both backends. Byte-level BPE vocabularies are written in GPT-2's byte
  alphabet and are mapped back to bytes; SentencePiece-style ones count `▁` as a space and a
  byte-fallback token `<0x0A>` as one byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import tokenizers

from gptlab.errors import InputError
from gptlab.fileio import read_json
from gptlab.tokenizer import chat, template_chat
from gptlab.tokenizer.hf_export import byte_to_unicode
from gptlab.tokenizer.protocol import SpecialTokenLookup
from gptlab.tokenizer.special import PAD, REWARD
from gptlab.tokenizer.template_chat import TEMPLATE_TOKEN_NAMES, ChatTemplate, compile_template

HF_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"
TEMPLATE_FILE = "chat_template.jinja"  # where newer transformers save the template instead
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_EOS_FALLBACKS = ("<|endoftext|>", "</s>", "<|end_of_text|>")


class HFTokenizer(SpecialTokenLookup):
    """A Hugging Face `tokenizers` tokenizer with its named special tokens and chat template."""

    def __init__(
        self, spec: str, named_tokens: dict[str, str] | None = None,
        chat_template: str | None = None, path: str | None = None,
    ):
        self.path = path  # the folder it was loaded from, as given (None if built in memory)
        self._native = tokenizers.Tokenizer.from_str(spec)  # matches special-token text
        self._plain = tokenizers.Tokenizer.from_str(spec)  # encodes special-token text as text
        self._plain.encode_special_tokens = True
        for t in (self._native, self._plain):
            # With add_special_tokens=False a post-processor adds no ids, but it can trim
            # whitespace out of the offsets that the chat loss mask is computed from.
            t.post_processor = None
        self._spec = json.loads(spec)
        self._added = self._native.get_added_tokens_decoder()  # id -> AddedToken
        self.special_ids: dict[str, int] = {
            t.content: i for i, t in sorted(self._added.items()) if t.special
        }
        self._special_set = frozenset(self.special_ids.values())
        self.vocab_size: int = max(self._native.get_vocab(with_added_tokens=True).values()) + 1
        self.named_tokens = dict(named_tokens or {})
        self.eot_id: int = self._eos_id()
        self.chat_template = ChatTemplate(chat_template, self.named_tokens) if chat_template else None
        self._byte_lengths: list[int] | None = None
        self._token_bytes: list[bytes] | None = None
        self.pad_id: int = self._pad_id()
        self.end_of_turn_id: int = self._end_of_turn_id()
        fallbacks = {i for t in _EOS_FALLBACKS if (i := self._native.token_to_id(t)) is not None}
        self.stop_ids = frozenset({self.eot_id, self.end_of_turn_id} | fallbacks)

    @classmethod
    def load(cls, folder: str | Path) -> HFTokenizer:
        """Read tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) from `folder`."""
        root = Path(folder)
        if not (root / HF_FILE).exists():
            what = "no such folder" if not root.exists() else f"no {HF_FILE} in it"
            raise InputError(folder, f"not a Hugging Face tokenizer folder ({what})")
        spec = (root / HF_FILE).read_text(encoding="utf-8")
        named: dict[str, str] = {}
        config: dict[str, Any] = {}
        for name in (SPECIAL_MAP_FILE, CONFIG_FILE):  # the config's values win
            if (root / name).exists():
                data = read_json(root / name)
                if not isinstance(data, dict):
                    raise InputError(root / name, "expected a JSON object")
                named |= _named_tokens(data, root / name)
                config = data if name == CONFIG_FILE else config
        template = _template_source(root, config)
        if template is not None:
            try:
                compile_template(template)
            except jinja2.TemplateSyntaxError as e:
                where = root / (TEMPLATE_FILE if (root / TEMPLATE_FILE).exists() else CONFIG_FILE)
                raise InputError(where, f"chat_template is not valid Jinja: {e}") from None
        try:
            return cls(spec, named, template, path=str(folder))
        except Exception as e:  # tokenizers raises plain Exception on a malformed file
            if isinstance(e, InputError):
                raise
            raise InputError(root / HF_FILE, f"not a Hugging Face tokenizer file: {e}") from None

    def _eos_id(self) -> int:
        eos = self.named_tokens.get("eos_token")
        candidates = [eos] if eos else list(_EOS_FALLBACKS)
        for text in candidates:
            i = self._native.token_to_id(text)
            if i is not None:
                return i
        where = Path(self.path) / CONFIG_FILE if self.path else None
        if eos:
            raise InputError(where, f"eos_token {eos!r} is not in the vocabulary")
        raise InputError(where, "no eos_token, and none of " + ", ".join(_EOS_FALLBACKS))

    def _pad_id(self) -> int:
        """gptlab's `<|pad|>` (added on import), else the model's pad_token, else eos."""
        for text in (PAD, self.named_tokens.get("pad_token")):
            i = self._native.token_to_id(text) if text else None
            if i is not None:
                return i
        return self.eot_id

    def _end_of_turn_id(self) -> int:
        """The last special token of a rendered reply (`<|im_end|>`, `<|eot_id|>`), else eos.
        The engine stops on it, with eos and the end-of-text tokens a model may drift into."""
        if self.chat_template is None:
            return self.eot_id
        probe = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        try:
            got, mask = self.render_conversation(probe)
        except (ValueError, jinja2.TemplateError):
            return self.eot_id  # a template that cannot render a plain turn: eos
        ends = [i for i, m in zip(got, mask) if m and self.is_special(i)]
        return ends[-1] if ends else self.eot_id

    # ---------------------------------------------------------------- encode / decode
    def encode(self, text: str, allowed_special: str | AbstractSet[str] = frozenset()) -> list[int]:
        """Text -> ids. Special-token text becomes a special id only if allowed ("all" or a set)."""
        if not allowed_special:
            return self._plain.encode(text, add_special_tokens=False).ids
        if allowed_special == "all":
            return self._native.encode(text, add_special_tokens=False).ids
        ids: list[int] = []
        names = sorted(allowed_special, key=len, reverse=True)  # longest first, like a tokenizer
        for piece in re.split("(" + "|".join(map(re.escape, names)) + ")", text):
            if piece in allowed_special:
                ids.append(self.token_id(piece))
            elif piece:
                ids += self._plain.encode(piece, add_special_tokens=False).ids
        return ids

    def encode_batch(
        self, texts: list[str], num_threads: int = 0,
        allowed_special: str | AbstractSet[str] = frozenset(),
    ) -> list[list[int]]:
        """encode() on many texts; `tokenizers` spreads a batch over its own threads (set
        RAYON_NUM_THREADS to limit them), so `num_threads` is accepted for the shared signature."""
        del num_threads
        if allowed_special and allowed_special != "all":
            return [self.encode(t, allowed_special) for t in texts]
        backend = self._native if allowed_special else self._plain
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of a rendered chat (special-token text matched) and each token's character span."""
        enc = self._native.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text, special tokens written out; a cut multi-byte character becomes U+FFFD."""
        return self._native.decode(list(ids), skip_special_tokens=False)

    def is_special(self, i: int) -> bool:
        return i in self._special_set

    def token_byte_lengths(self) -> list[int]:
        """Bytes per id, 0 for specials: the denominator of bits-per-byte (see the module doc)."""
        if self._byte_lengths is None:
            table = self._bytes_table()
            self._byte_lengths = [0 if self.is_special(i) else len(b) for i, b in enumerate(table)]
        return list(self._byte_lengths)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes ids stand for (special tokens as their text): streaming decodes these
        incrementally, so a character split over two tokens is printed once it is whole."""
        table = self._bytes_table()
        return b"".join(table[i] for i in ids)

    def _bytes_table(self) -> list[bytes]:
        if self._token_bytes is None:
            byte_level = _mentions(self._spec.get("pre_tokenizer"), "ByteLevel") or _mentions(
                self._spec.get("decoder"), "ByteLevel")
            fallback = bool((self._spec.get("model") or {}).get("byte_fallback"))
            table = [b""] * self.vocab_size
            for token, i in self._native.get_vocab(with_added_tokens=True).items():
                if i in self._added:
                    table[i] = self._added[i].content.encode("utf-8")
                else:
                    table[i] = _token_bytes(token, byte_level, fallback)
            self._token_bytes = table
        return self._token_bytes

    # ---------------------------------------------------------------- chat
    def render_conversation(
        self, messages: list[dict], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        """(ids, loss mask) with the model's own chat template; see `template_chat`."""
        return template_chat.render_conversation(self, self._template(), messages, max_tokens)

    def render_prompt(self, messages: list[dict]) -> list[int]:
        """Ids of the conversation so far + the template's generation prompt."""
        return template_chat.render_prompt(self, self._template(), messages)

    def render_for_reward(self, messages: list[dict]) -> list[int]:
        """The conversation up to the end of its last reply (its end-of-turn token) + `<|reward|>`,
        the position the reward model reads (added to the vocabulary by `gptlab import`)."""
        ids, mask = self.render_conversation(messages)  # validates the messages first
        if messages[-1]["role"] != "assistant":
            raise ValueError(
                f"a conversation to score must end with an assistant message, not {messages[-1]['role']}"
            )
        last = max(i for i, m in enumerate(mask) if m) if any(mask) else len(ids) - 1
        return ids[: last + 1] + [self.token_id(REWARD)]

    def parse_assistant(self, ids: list[int]) -> list[dict]:
        """Reply ids -> content parts (`chat.parse_assistant`: tool spans by their tokens)."""
        return chat.parse_assistant(self, ids)

    def _template(self) -> ChatTemplate:
        if self.chat_template is None:
            where = Path(self.path) / CONFIG_FILE if self.path else None
            raise InputError(where, "no chat_template: this tokenizer cannot render conversations")
        return self.chat_template

    def __repr__(self) -> str:
        return f"HFTokenizer(vocab_size={self.vocab_size}, path={self.path!r})"


def _named_tokens(data: dict[str, Any], path: Path) -> dict[str, str]:
    """{bos_token: text, ...} from a config; a value may be a string or {"content": text}."""
    out = {}
    for name in TEMPLATE_TOKEN_NAMES:
        value = data.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(path, f"{name} must be a string or {{'content': ...}}")
        out[name] = value
    return out


def _template_source(root: Path, config: dict[str, Any]) -> str | None:
    """The chat template: chat_template.jinja, else tokenizer_config.json's (a string, or a list
    of named templates of which "default" is the one `apply_chat_template` uses)."""
    if (root / TEMPLATE_FILE).exists():
        return (root / TEMPLATE_FILE).read_text(encoding="utf-8")
    source = config.get("chat_template")
    if isinstance(source, list):
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default")
    if source is not None and not isinstance(source, str):
        raise InputError(root / CONFIG_FILE, "chat_template must be a string")
    return source


def _mentions(component: Any, kind: str) -> bool:
    """Whether a tokenizer.json component (possibly a Sequence of them) has type `kind`."""
    if isinstance(component, dict):
        return component.get("type") == kind or any(_mentions(v, kind) for v in component.values())
    if isinstance(component, list):
        return any(_mentions(v, kind) for v in component)
    return False


def _token_bytes(token: str, byte_level: bool, byte_fallback: bool) -> bytes:
    """The bytes one vocabulary entry stands for.

    >>> _token_bytes("Ġthe", True, False), len(_token_bytes("â½", True, False))
    (b' the', 2)
    >>> _token_bytes("▁the", False, True), _token_bytes("<0x0A>", False, True)
    (b' the', b'\\n')
    """
    if byte_level:
        to_byte = _unicode_to_byte()
        if all(c in to_byte for c in token):
            return bytes(to_byte[c] for c in token)  # one alphabet character per byte
    if byte_fallback and _BYTE_TOKEN.fullmatch(token):
        return bytes([int(token[3:5], 16)])
    return token.replace("▁", " ").encode("utf-8")


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_unicode().items()}
