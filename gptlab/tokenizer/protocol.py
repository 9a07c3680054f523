"""The tokenizer interface every stage uses, whichever backend a model's folder holds.

Two backends satisfy it: gptlab's own byte-level BPE (`bpe.Tokenizer`, the folder has
`tokenizer.tiktoken`) and a model's own Hugging Face tokenizer (`hf_tokenizer.HFTokenizer`, the
folder has `tokenizer.json`); `loading.load_tokenizer(folder)` picks one. Code written against
this Protocol never asks where a model came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol, runtime_checkable


@runtime_checkable
class TokenizerLike(Protocol):
    """Text <-> ids, special tokens, byte accounting and chat rendering."""

    vocab_size: int  # every id, special tokens included (the embedding's minimum rows)
    eot_id: int  # end of text: gptlab's <|endoftext|>, an imported model's eos_token
    special_ids: dict[str, int]  # special token text -> id
    path: str | None  # the folder it was loaded from, as given
    pad_id: int  # what batches are padded with (never a training target)
    stop_ids: frozenset[int]  # ids that end an assistant turn (the engine stops on them)
    end_of_turn_id: int  # the one a finished reply ends with (<|end|>, <|im_end|>): in stop_ids

    def encode(
        self, text: str, allowed_special: str | AbstractSet[str] = ...
    ) -> list[int]: ...  # special-token text stays text unless allowed ("all" or a set)

    def encode_batch(
        self, texts: list[str], num_threads: int = ...,
        allowed_special: str | AbstractSet[str] = ...,
    ) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...  # for streaming text safely

    def token_id(self, special: str) -> int: ...  # KeyError if not a special token

    def is_special(self, i: int) -> bool: ...

    def token_byte_lengths(self) -> list[int]: ...  # bytes per id, 0 for special tokens

    def render_conversation(
        self, messages: list[dict], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]: ...  # (ids, loss mask on the assistant's tokens)

    def render_prompt(self, messages: list[dict]) -> list[int]: ...  # ends with the header

    def render_for_reward(self, messages: list[dict]) -> list[int]: ...  # ends with <|reward|>

    def parse_assistant(self, ids: list[int]) -> list[dict]: ...  # reply ids -> content parts


class SpecialTokenLookup:
    """`token_id` for any tokenizer with a `special_ids` dict: both backends share it."""

    special_ids: dict[str, int]

    def token_id(self, special: str) -> int:
        """The id of a special token, e.g. token_id("<|endoftext|>") or token_id("<|im_end|>")."""
        try:
            return self.special_ids[special]
        except KeyError:
            raise KeyError(f"{special!r} is not a special token of this tokenizer") from None
