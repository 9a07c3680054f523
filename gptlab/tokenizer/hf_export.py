"""Hugging Face files for a gptlab tokenizer: `tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`, so `AutoTokenizer.from_pretrained(folder)` gives the same ids as ours.

How the tiktoken ranks become a `tokenizers` BPE model:
- Vocabulary: each token's bytes written in GPT-2's byte-to-unicode alphabet (byte 0x20 ' ' is
  'Ġ', and so on), which is what the ByteLevel pre-tokenizer feeds the model.
- Merges: tiktoken never looks at merges; it repeatedly joins the adjacent pair of parts whose
  concatenation has the lowest rank. To give a merges-driven BPE the same choices, every split
  of a token into two tokens (l, r) becomes a merge, ranked by the token's rank; so "abc" gets
  both (ab, c) and (a, bc) if both halves exist. `ignore_merges=True` mirrors tiktoken's
  shortcut of taking a whole regex piece that is itself a token.
- Pre-tokenizer: our split regex (isolated), then ByteLevel without its own regex or prefix
  space; decoder: ByteLevel. Special tokens are added tokens with our ids.

Two known differences: (1) Hugging Face always matches special-token text in the input (ours
only when allowed), so compare on text without it or encode ours with allowed_special="all";
(2) if two different merges yielding the same token are candidates at once (parts [ab, a, ba]
both make "aba"), tiktoken takes the leftmost and Hugging Face the one listed first. Such a
state needs a very particular vocabulary; tests and the Shakespeare benchmark find none.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from gptlab.fileio import atomic_write_json, atomic_write_text
from gptlab.tokenizer.chat_template import chat_template
from gptlab.tokenizer.special import ENDOFTEXT, PAD
from gptlab.tokenizer.vocab import Vocab

if TYPE_CHECKING:
    import tokenizers

DEFAULT_MODEL_MAX_LENGTH = 2048


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map: printable Latin-1 bytes map to
    themselves, the other 68 to U+0100 onwards (0 -> 'Ā', 32 ' ' -> 'Ġ', 10 '\\n' -> 'Ċ')."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def to_unicode(token: bytes) -> str:
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) for a `tokenizers` BPE model, ordered so it picks what tiktoken picks.

    >>> ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"bc": 257, b"abc": 258}
    >>> vocab_and_merges(ranks)[1]
    [('a', 'b'), ('b', 'c'), ('a', 'bc'), ('ab', 'c')]
    """
    vocab = {to_unicode(tok): rank for tok, rank in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for tok, rank in ranks.items():
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return vocab, [(to_unicode(left), to_unicode(right)) for *_, left, right in merges]


def build_hf_tokenizer(tok: Vocab) -> tokenizers.Tokenizer:
    """A `tokenizers.Tokenizer` that encodes and decodes exactly like `tok` (see module doc)."""
    # optional dependency (the `hf` extra): imported only when the Hugging Face files are written
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab, merges = vocab_and_merges(tok.mergeable_ranks)
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
    ])
    hf.decoder = decoders.ByteLevel()
    specials = sorted(tok.special_ids, key=tok.special_ids.get)
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    for s in specials:  # added tokens take the next free ids: check they landed on ours
        if hf.token_to_id(s) != tok.special_ids[s]:
            raise RuntimeError(f"{s} got id {hf.token_to_id(s)}, expected {tok.special_ids[s]}")
    return hf


def save_hf(
    tok: Vocab, folder: str | Path, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH
) -> list[Path]:
    """Write the three Hugging Face files into `folder` (atomically); returns their paths.

    `model_max_length` is only a default: `gptlab export` should set the model's context length.
    """
    folder = Path(folder)
    specials = sorted(tok.special_ids, key=tok.special_ids.get)
    extra = [s for s in specials if s not in (ENDOFTEXT, PAD)]
    hf = build_hf_tokenizer(tok)
    paths = [folder / "tokenizer.json", folder / "tokenizer_config.json",
             folder / "special_tokens_map.json"]
    atomic_write_text(paths[0], hf.to_str(pretty=True))
    # Documents start with <|endoftext|> (it is our BOS as well as the document delimiter), but
    # the fast tokenizer adds nothing by itself: callers (and our own code) insert it.
    atomic_write_json(paths[1], {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": ENDOFTEXT,
        "eos_token": ENDOFTEXT,
        "pad_token": PAD if PAD in tok.special_ids else ENDOFTEXT,
        "additional_special_tokens": extra,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # else decode() rewrites " ." to "."
        "model_max_length": model_max_length,
        # the same layout as gptlab.tokenizer.chat.render_conversation (a test checks the ids)
        "chat_template": chat_template(),
        "added_tokens_decoder": {
            str(tok.special_ids[s]): {"content": s, "special": True, "normalized": False,
                                      "lstrip": False, "rstrip": False, "single_word": False}
            for s in specials
        },
    })
    atomic_write_json(paths[2], {
        "bos_token": ENDOFTEXT,
        "eos_token": ENDOFTEXT,
        "pad_token": PAD if PAD in tok.special_ids else ENDOFTEXT,
        "additional_special_tokens": extra,
    })
    return paths
