"""Byte-level BPE: train with rustbpe, encode and decode with tiktoken.

Design decisions:
- Training is rustbpe (Rust, GPT-4-style regex split, exact pair counts, ties broken towards the
  smaller pair of ids); encoding is tiktoken (fast, releases the GIL for batches). Both are
  well-kept libraries; this module only glues them together and owns the file format.
- Ids: 0..255 are the 256 single bytes (so any byte sequence can be encoded), then the learned
  merges in the order they were learned, then the special tokens of `special.SPECIAL_TOKENS` at
  the end. `vocab_size` counts everything, specials included: `train(texts, 4096)` learns
  4096 - 256 - 11 = 3829 merges.
- Split pattern: GPT-4's (`\\p{N}{1,3}`: numbers in groups of up to three digits), which is also
  rustbpe's default. nanochat uses `\\p{N}{1,2}` to spend fewer of a small vocab's slots on
  numbers; it is available as `NANOCHAT_PATTERN` (`gptlab tokenizer train --pattern nanochat`).
- Special-token text in ordinary input (a user typing "<|endoftext|>") is encoded as plain bytes,
  never as the special id, unless the caller allows it: data can't forge control tokens.
- Files (no pickle): `tokenizer.tiktoken` (tiktoken's "base64(bytes) rank" lines) and
  `gptlab_tokenizer.json` (pattern, special ids, training stats); `hf_export` adds the Hugging
  Face files beside them.

Worked example (the slide's `aaabdaaabac`, one regex piece): the merges learned are
aa -> 256, then ab -> 257 (ties with (256, a) and the smaller pair wins), then (256, 257) -> 258,
so the text encodes as [258, 100, 258, 97, 99] ("XdXac").
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import rustbpe
import tiktoken

from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json, atomic_write_text, read_json
from gptlab.tokenizer import chat
from gptlab.tokenizer.hf_export import save_hf
from gptlab.tokenizer.protocol import SpecialTokenLookup
from gptlab.tokenizer.special import END, ENDOFTEXT, PAD, SPECIAL_TOKENS
from gptlab.tokenizer.vocab import GPT4_PATTERN, NANOCHAT_PATTERN, PATTERNS  # noqa: F401 (public here too)

TIKTOKEN_FILE = "tokenizer.tiktoken"
META_FILE = "gptlab_tokenizer.json"
FORMAT = "gptlab-tokenizer-v1"


class Tokenizer(SpecialTokenLookup):
    """A trained byte-level BPE tokenizer: `mergeable_ranks` (bytes -> id) plus special tokens."""

    def __init__(
        self,
        mergeable_ranks: dict[bytes, int],
        pattern: str = GPT4_PATTERN,
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        stats: dict[str, Any] | None = None,
        path: str | None = None,
    ):
        n = len(mergeable_ranks)
        if sorted(mergeable_ranks.values()) != list(range(n)):
            raise ValueError("mergeable ranks must be exactly the ids 0..n-1")
        if any(mergeable_ranks.get(bytes([b])) != b for b in range(256)):
            raise ValueError("ids 0..255 must be the 256 single bytes")
        self.mergeable_ranks = mergeable_ranks
        self.pattern = pattern
        self.special_ids: dict[str, int] = {s: n + i for i, s in enumerate(special_tokens)}
        self.vocab_size: int = n + len(self.special_ids)
        self.eot_id: int = self.special_ids[ENDOFTEXT]
        self.pad_id: int = self.special_ids.get(PAD, self.eot_id)
        # <|end|> ends a turn; <|endoftext|> too, for models that drift past it
        self.end_of_turn_id: int = self.special_ids.get(END, self.eot_id)
        self.stop_ids = frozenset({self.end_of_turn_id, self.eot_id})
        self.stats: dict[str, Any] = dict(stats or {})
        self.path = path  # the folder it was loaded from, as given (None if trained in memory)
        self._enc = tiktoken.Encoding(
            name="gptlab", pat_str=pattern, mergeable_ranks=mergeable_ranks,
            special_tokens=self.special_ids,
        )

    # ---------------------------------------------------------------- training
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, pattern: str = GPT4_PATTERN) -> Tokenizer:
        """Learn `vocab_size - 256 - len(SPECIAL_TOKENS)` merges from `texts` (any iterable of str).

        rustbpe pulls strings from the iterator in buffers of 8192 and splits and counts them on
        all cores. Whole documents are the cheapest unit to feed: one string per line costs
        ~20-40% more on Shakespeare (a copy and a Python call per string). If the text runs out of pairs to merge, the vocabulary comes out smaller than asked
        (`stats["merges"]` < `stats["requested_merges"]`).
        """
        minimum = 256 + len(SPECIAL_TOKENS)
        if vocab_size < minimum:
            raise InputError(
                None, f"vocab size {vocab_size} is too small: it must be at least {minimum} "
                f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens)"
            )
        counter = _Counting(texts)
        t0 = time.perf_counter()
        bpe = rustbpe.Tokenizer()
        bpe.train_from_iterator(counter, vocab_size - len(SPECIAL_TOKENS), pattern=pattern)
        seconds = time.perf_counter() - t0
        ranks = {bytes(b): int(r) for b, r in bpe.get_mergeable_ranks()}
        stats = {
            "train_seconds": round(seconds, 4),
            "documents": counter.docs,
            "characters": counter.chars,
            "requested_vocab_size": vocab_size,
            "requested_merges": vocab_size - minimum,
            "merges": len(ranks) - 256,
            "trainer": "rustbpe",
        }
        return cls(ranks, pattern=pattern, stats=stats)

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, folder: str | Path) -> Tokenizer:
        """Read a folder written by `save`; a clear InputError if it is not one."""
        folder_path = Path(folder)
        meta_path = folder_path / META_FILE
        if not meta_path.exists():
            what = "no such folder" if not folder_path.exists() else f"no {META_FILE} in it"
            raise InputError(
                folder, f"not a tokenizer folder ({what}); train one with `gptlab tokenizer train`"
            )
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(meta_path, f"not a gptlab tokenizer file (expected format {FORMAT!r})")
        ranks = _read_tiktoken(folder_path / TIKTOKEN_FILE)
        specials = meta.get("special_tokens")
        if not isinstance(specials, dict) or not all(isinstance(v, int) for v in specials.values()):
            raise InputError(meta_path, "special_tokens must map token text to id")
        names = sorted(specials, key=specials.get)
        if meta.get("vocab_size") != len(ranks) + len(specials):
            raise InputError(
                meta_path, f"vocab_size {meta.get('vocab_size')} disagrees with {TIKTOKEN_FILE} "
                f"({len(ranks)} ranks + {len(specials)} specials)"
            )
        if [specials[s] for s in names] != list(range(len(ranks), len(ranks) + len(names))):
            raise InputError(meta_path, f"special ids must follow the {len(ranks)} ranks in order")
        if ENDOFTEXT not in specials:
            raise InputError(meta_path, f"special tokens lack {ENDOFTEXT}")
        try:
            return cls(ranks, pattern=meta["pattern"], special_tokens=names,
                       stats=meta.get("stats"), path=str(folder))
        except (ValueError, KeyError) as e:
            raise InputError(folder, f"broken tokenizer: {e}") from None

    def save(self, folder: str | Path, hf: bool | None = None) -> list[Path]:
        """Write the tokenizer files atomically; returns the paths written.

        `hf=None` also writes the Hugging Face files when the `tokenizers` library is installed
        (True: require it, False: skip). The gptlab JSON is written last, so a folder that
        `load` accepts always has a complete `tokenizer.tiktoken` beside it.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{base64.b64encode(tok).decode('ascii')} {rank}\n"
            for tok, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])
        ]
        atomic_write_text(folder / TIKTOKEN_FILE, "".join(lines))
        written = [folder / TIKTOKEN_FILE]
        if hf is None:
            try:  # optional dependency (the `hf` extra): only asked whether it is installed
                import tokenizers  # noqa: F401
            except ImportError:
                hf = False
            else:
                hf = True
        if hf:
            written += save_hf(self, folder)
        atomic_write_json(folder / META_FILE, {
            "format": FORMAT,
            "pattern": self.pattern,
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "special_tokens": self.special_ids,
            "stats": self.stats,
        })
        written.append(folder / META_FILE)
        return written

    # ---------------------------------------------------------------- encode / decode
    def encode(self, text: str, allowed_special: str | AbstractSet[str] = frozenset()) -> list[int]:
        """Text -> ids. Special-token text becomes a special id only if allowed ("all" or a set)."""
        if not allowed_special:
            return self._enc.encode_ordinary(text)
        return self._enc.encode(text, allowed_special=allowed_special, disallowed_special=())

    def encode_batch(
        self, texts: list[str], num_threads: int = 0,
        allowed_special: str | AbstractSet[str] = frozenset(),
    ) -> list[list[int]]:
        """encode() on many texts in parallel threads (tiktoken releases the GIL); 0 = all cores."""
        threads = num_threads or os.cpu_count() or 1
        if threads == 1 or len(texts) <= 1:  # a thread pool of one only adds overhead
            return [self.encode(t, allowed_special) for t in texts]
        if not allowed_special:
            return self._enc.encode_ordinary_batch(texts, num_threads=threads)
        return self._enc.encode_batch(
            texts, num_threads=threads, allowed_special=allowed_special, disallowed_special=()
        )

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; bytes that are not valid UTF-8 (a cut multi-byte char) become U+FFFD."""
        return self._enc.decode(list(ids), errors="replace")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self._enc.decode_bytes(list(ids))

    def token_bytes(self, i: int) -> bytes:
        """The bytes of one id (a special token's bytes are its text)."""
        return self._enc.decode_single_token_bytes(i)

    def token_byte_lengths(self) -> list[int]:
        """Bytes per id, 0 for specials: the denominator of bits-per-byte, independent of vocab."""
        lengths = [0] * self.vocab_size
        for tok, rank in self.mergeable_ranks.items():
            lengths[rank] = len(tok)
        return lengths

    def is_special(self, i: int) -> bool:
        return i >= len(self.mergeable_ranks)

    # ---------------------------------------------------------------- chat (protocol.TokenizerLike)
    def render_conversation(
        self, messages: list[dict], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        """`chat.render_conversation` with this tokenizer: (ids, loss mask)."""
        return chat.render_conversation(self, messages, max_tokens)

    def render_prompt(self, messages: list[dict]) -> list[int]:
        """`chat.render_prompt` with this tokenizer: the ids end with `<|assistant|>`."""
        return chat.render_prompt(self, messages)

    def render_for_reward(self, messages: list[dict]) -> list[int]:
        """`chat.render_for_reward`: the whole conversation + `<|reward|>`."""
        return chat.render_for_reward(self, messages)

    def parse_assistant(self, ids: list[int]) -> list[dict]:
        """Reply ids -> content parts (`chat.parse_assistant`: tool spans by their tokens)."""
        return chat.parse_assistant(self, ids)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, path={self.path!r})"


class _Counting:
    """Wraps the training iterable to count documents and characters as rustbpe pulls them."""

    def __init__(self, texts: Iterable[str]):
        self._it: Iterator[str] = iter(texts)
        self.docs = 0
        self.chars = 0

    def __iter__(self) -> _Counting:
        return self

    def __next__(self) -> str:
        s = next(self._it)
        self.docs += 1
        self.chars += len(s)
        return s


def _read_tiktoken(path: Path) -> dict[bytes, int]:
    """Parse tiktoken's rank file: one `base64(token bytes) rank` per line, ranks 0..n-1."""
    if not path.exists():
        raise InputError(path, "file not found")
    ranks: dict[bytes, int] = {}
    with open(path, encoding="ascii", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    if len(parts) != 2:
                        raise ValueError
                    tok, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
                except ValueError:  # binascii.Error is a ValueError
                    raise InputError(path, "expected `base64 rank`", line=lineno) from None
                if rank != len(ranks) or tok in ranks:
                    raise InputError(path, f"rank {rank} out of order or repeated", line=lineno)
                ranks[tok] = rank
        except UnicodeDecodeError:
            raise InputError(path, "not a tiktoken rank file (non-ASCII content)") from None
    if len(ranks) < 256:
        raise InputError(path, f"only {len(ranks)} ranks; a byte-level BPE has at least 256")
    return ranks
