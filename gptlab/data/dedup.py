"""Duplicate removal: exact (normalised hash), then near duplicates (MinHash LSH); first seen wins.

Exact: the hash of the text with case folded and whitespace collapsed, so re-wrapped or
re-cased copies count as the same document.

Near: each document becomes its set of word 5-grams ("shingles"); MinHash (datasketch, 128
permutations) estimates the Jaccard similarity of two such sets, and LSH banding (our compact
index, lsh.py) finds the candidates above the threshold without comparing all pairs (Broder
1997; the recipe of Gopher, The Pile and FineWeb). The bands favour recall and every candidate
is confirmed with its estimated Jaccard, so the threshold means what it says: a document is a
near duplicate when its estimated similarity to an earlier kept document is at least
`threshold` (default 0.8).

Shingles are hashed with CRC32 rather than datasketch's default SHA-1: both give 32 bits, CRC32
is 4x faster in C, and datasketch's `affine32` scheme mixes its input (murmur3 fmix) before
the permutations, so CRC32's linearity does not leak into the signatures.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np

from gptlab.data.lsh import BandIndex

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Case folded, whitespace collapsed.

    >>> normalize("  To be,\\n  or NOT  to be ")
    'to be, or not to be'
    """
    return " ".join(text.casefold().split())


def exact_key(text: str) -> bytes:
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()


def shingles(text: str, n: int = 5) -> set[bytes]:
    """The set of word n-grams; a text shorter than n words is one shingle.

    >>> sorted(shingles("the cat sat on the mat", n=5))
    [b'cat sat on the mat', b'the cat sat on the']
    >>> shingles("two words", n=5)
    {b'two words'}
    """
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {" ".join(words).encode("utf-8")} if words else set()
    return {g.encode("utf-8") for g in map(" ".join, zip(*(words[i:] for i in range(n))))}


class Deduplicator:
    """Feed documents in order; `check(text)` says "exact", "near" or None (kept and remembered).

    `near_threshold=None` does exact deduplication only.
    """

    def __init__(self, near_threshold: float | None = 0.8, num_perm: int = 128, ngram: int = 5):
        if near_threshold is not None and not 0.0 < near_threshold <= 1.0:
            raise ValueError("near_threshold must be in (0, 1]")
        self.near_threshold = near_threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self._exact: set[bytes] = set()
        self._index: BandIndex | None = None
        self._perms, self._scheme = None, None
        if near_threshold is not None:
            # ~0.5 s to import (scipy): only when near-dedup runs, so --help and exact stay fast
            from datasketch import MinHash

            # LSH bands tuned for recall (weights: false positives 0.1, false negatives 0.9):
            # a pair at Jaccard 0.9 becomes a candidate 99.9% of the time instead of 93% with
            # the balanced default; the extra candidates are cheap to reject by estimate.
            self._index = BandIndex(near_threshold, num_perm, weights=(0.1, 0.9))
            # The permutations are the same for every document: draw them once, not per MinHash.
            template = MinHash(num_perm=num_perm, seed=1, hashfunc=zlib.crc32)
            self._perms, self._scheme = template.permutations, template.scheme

    def minhash(self, text: str):
        from datasketch import MinHash  # see __init__: imported only when near-dedup runs

        m = MinHash(
            self.num_perm,
            seed=1,
            hashfunc=zlib.crc32,
            permutations=self._perms,
            scheme=self._scheme,
        )
        m.update_batch(list(shingles(text, self.ngram)))
        return m

    def signature(self, text: str) -> np.ndarray | None:
        """The text's MinHash values as uint32 (None with exact dedup only).

        The affine32 scheme keeps every value below 2**32, so uint32 loses nothing: half the
        memory of datasketch's uint64, the same Jaccard estimates. Computing it needs no state,
        so worker processes can do it (see stream_prepare.py) and hand `check_signature` the rest.
        """
        if self._index is None:
            return None
        return self.minhash(text).hashvalues.astype(np.uint32)

    def check(self, text: str) -> str | None:
        key = exact_key(text)
        if key in self._exact:
            return "exact"  # before the MinHash: exact copies cost one hash
        return self.check_signature(key, self.signature(text))

    def check_signature(self, key: bytes, sig: np.ndarray | None) -> str | None:
        """`check` from a precomputed `exact_key` and `signature`: the same answers, in order."""
        if key in self._exact:
            return "exact"
        if self._index is not None and sig is not None:
            keys = self._index.band_keys(sig)
            for cand in self._index.query(sig, keys):
                # MinHash.jaccard's own formula, on the stored uint32 values
                if np.count_nonzero(self._index.signature(cand) == sig) / len(sig) >= self.near_threshold:
                    return "near"
            self._exact.add(key)
            self._index.insert(sig, keys)
            return None
        self._exact.add(key)
        return None

    def remember(self, key: bytes, sig: np.ndarray | None) -> None:
        """Add a document known to be kept, without checking it (replaying a resumed run).

        This is all the state that grows: per kept document a 16-byte key in a set, its
        num_perm uint32 values in a block, and one integer per LSH band (lsh.py).
        """
        self._exact.add(key)
        if self._index is not None and sig is not None:
            self._index.insert(sig)

    def settings(self) -> dict:
        return {
            "exact": True,
            "near_threshold": self.near_threshold,
            "num_perm": self.num_perm if self._index is not None else None,
            "shingle_words": self.ngram if self._index is not None else None,
        }
