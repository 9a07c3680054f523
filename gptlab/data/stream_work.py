"""The per-document work of `gptlab data stream`, done by worker processes on chunks of documents.

Everything here is a pure function of one document and the settings: the quality filters, the
exact-duplicate key, the MinHash signature, the train/validation choice and the token ids. What
depends on the order of documents (which copy is first, so which one dedup keeps) is left to the
one main process (stream_prepare.py), so N workers decide exactly what one process decides.

A worker returns arrays rather than Python objects (pickling 2,000 small lists costs more than
the tokenizing): the token ids of every document that passed the filters, concatenated and each
preceded by <|endoftext|>, with offsets; one 16-byte key and one uint32 signature row per
document. The text itself never travels back.

Documents that pass the filters are tokenized before dedup has judged them, so duplicates cost
their encoding (a few percent of the time on web text); the alternative, a second round trip
to the workers per chunk, costs more.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptlab.data.clean import Filters
from gptlab.data.dedup import Deduplicator, exact_key
from gptlab.data.document import Document
from gptlab.data.mixture import doc_hash
from gptlab.data.shards import dtype_for
from gptlab.tokenizer.loading import load_tokenizer


@dataclass(frozen=True)
class WorkSettings:
    """What a worker needs to build its own filters, MinHash and tokenizer (picklable)."""

    filters: tuple  # Filters' constructor arguments, in order
    near_threshold: float | None  # None: exact dedup only
    dedup: bool  # False: no dedup at all (no keys, no signatures)
    tokenizer: str  # tokenizer folder
    val_fraction: float
    seed: int


@dataclass
class ChunkResult:
    """One chunk's per-document answers, in the chunk's order (n documents)."""

    reasons: list[str | None]  # the first filter a document failed, or None
    keys: np.ndarray  # (n, 16) uint8 exact-duplicate keys (zeros where filtered or no dedup)
    sigs: np.ndarray | None  # (n, num_perm) uint32 MinHash signatures (None: no near dedup)
    to_val: np.ndarray  # (n,) bool: the document goes to validation if kept
    chars: np.ndarray  # (n,) int64 characters
    nbytes: np.ndarray  # (n,) int64 UTF-8 bytes
    tokens: np.ndarray  # <|endoftext|> + ids of each document that passed the filters
    offsets: np.ndarray  # (n + 1,) int64: document i's tokens are tokens[offsets[i]:offsets[i+1]]
    peak_rss_kb: int  # the worker's peak resident memory so far


def peak_rss_kb() -> int:
    """This process's peak resident memory in KB: VmHWM on Linux, which restarts at exec, so a
    spawned worker does not report the parent it was forked from (ru_maxrss carries it over)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux; bytes on macOS


def in_val(doc: Document, val_fraction: float, seed: int) -> bool:
    """A document goes to validation when its hash falls in the first `val_fraction` of the range.

    A pure function of (source, text, seed), so it needs no count of the source's documents;
    prepare's exact-k choice (mixture.split_train_val) would need them all in memory.

    >>> in_val(Document("some text", "s", "1"), 0.0, 0), in_val(Document("some text", "s", "1"), 1.0, 0)
    (False, True)
    """
    return val_fraction > 0 and doc_hash(doc, seed, "val") / 2**64 < val_fraction


class ChunkWorker:
    """Filters, keys, signatures, split and tokens for chunks of documents."""

    def __init__(self, settings: WorkSettings):
        self.settings = settings
        self.filters = Filters(*settings.filters)
        self.dedup = Deduplicator(settings.near_threshold) if settings.dedup else None
        self.tok = load_tokenizer(settings.tokenizer)
        self.dtype = dtype_for(self.tok.vocab_size)

    def __call__(self, docs: list[tuple[str, str]]) -> ChunkResult:
        """`docs`: (text, source) pairs of one chunk."""
        s, n = self.settings, len(docs)
        reasons = [self.filters.check(text) for text, _ in docs]
        keys = np.zeros((n, 16), np.uint8)
        near = self.dedup is not None and s.near_threshold is not None
        sigs = np.zeros((n, self.dedup.num_perm), np.uint32) if near else None
        kept = [i for i, r in enumerate(reasons) if r is None]
        for i in kept:
            text = docs[i][0]
            if self.dedup is not None:
                keys[i] = np.frombuffer(exact_key(text), np.uint8)
            if sigs is not None:
                sigs[i] = self.dedup.signature(text)
        to_val = np.array([r is None and in_val(Document(t, src, ""), s.val_fraction, s.seed)
                           for (t, src), r in zip(docs, reasons)], bool)  # fmt: skip
        encoded = self.tok.encode_batch([docs[i][0] for i in kept], num_threads=1)
        lengths = np.zeros(n, np.int64)
        for i, ids in zip(kept, encoded):
            lengths[i] = len(ids) + 1
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tokens = np.empty(int(offsets[-1]), self.dtype)
        for i, ids in zip(kept, encoded):
            tokens[offsets[i]] = self.tok.eot_id
            tokens[offsets[i] + 1 : offsets[i + 1]] = ids
        return ChunkResult(
            reasons=reasons,
            keys=keys,
            sigs=sigs,
            to_val=to_val,
            chars=np.array([len(t) for t, _ in docs], np.int64),
            nbytes=np.array([len(t.encode("utf-8")) for t, _ in docs], np.int64),
            tokens=tokens,
            offsets=offsets,
            peak_rss_kb=peak_rss_kb(),
        )


_WORKER: ChunkWorker | None = None  # one per worker process, built by `init_worker`


def init_worker(settings: WorkSettings) -> None:
    """Pool initializer: load the tokenizer and draw the MinHash permutations once per process.

    Also a watchdog: a worker whose parent was killed (kill -9 leaves the pool no time to stop
    its workers) exits within a second instead of waiting forever on the task queue.
    """
    global _WORKER
    _WORKER = ChunkWorker(settings)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def work(docs: list[tuple[str, str]]) -> ChunkResult:
    """The pool's task: one chunk through this process's worker."""
    assert _WORKER is not None, "init_worker did not run in this process"
    return _WORKER(docs)
