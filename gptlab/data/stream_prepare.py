"""`gptlab data stream`: sources -> filters -> dedup -> train/val -> token shards, streaming.

    gptlab data stream --source web/*.jsonl --tokenizer runs/big/tokenizer --out runs/big/shards \\
        --workers 8
    gptlab data stream ... --resume          # after a kill: continue from the last committed chunk

The streaming twin of `gptlab data prepare` + `gptlab data tokenize`, for corpora that do not fit
in memory. Sources are read lazily, in the order given, and cut into chunks of `--chunk-docs`
documents. Worker processes (`--workers`) run the per-document work on whole chunks: quality
filters, the exact key and MinHash signature, the train/val choice, tokenizing
(stream_work.py). The main process reads, and commits the chunks in input order: it runs the
deduplicator on the precomputed keys and signatures (first copy seen wins, across sources, as
in prepare), writes the chunk's `train_NNNNN.bin` / `val_NNNNN.bin`, and logs it
(stream_log.py). `index.json` and `report.json` come last.

Guarantees, each tested in tests/test_stream_prepare.py:
- Output is a function of the sources and the settings: shard files and index.json are the same
  bytes for any `--workers`, and the same after any number of kills and `--resume`s. Documents
  keep their input order (source by source); the training loader shuffles windows anyway.
- The same decisions as a plain loop over the documents with `Filters.check`,
  `Deduplicator.check`, the hash split and `encode`: the test builds that loop and compares.
- Bounded memory: at most `2 * workers` chunks are read ahead of the commit (one chunk when
  `--workers 1`, which does everything in this process); the report's `max_docs_in_flight`
  says how many documents were ever read but not committed. Only the dedup state grows: per
  kept document a 16-byte key in a set, 128 uint32 MinHash values (512 bytes, in blocks) and a
  64-bit integer in each of the 14 LSH band tables (gptlab/data/lsh.py): ~1.6 KB per kept
  document in all, as benchmarks/bench_prepare.py measures (datasketch's MinHashLSH held 5.4 KB),
  so ~1.6 GB per million kept documents. Exact dedup alone (`--dedup exact`) keeps ~100 bytes
  per document.

What it does not do, unlike prepare: mixtures (weight=, epochs=, --target-chars): a streaming
pass writes each kept document once; and the validation split is a hash threshold per document
(`stream_work.in_val`), so its size is `--val-fraction` in expectation rather than exactly.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from gptlab.commandline import parse
from gptlab.common import format_duration, human_bytes, run_dir
from gptlab.data import stream_log as log
from gptlab.data.clean import Filters, load_blocklist
from gptlab.data.dedup import Deduplicator
from gptlab.data.shards import dtype_for
from gptlab.data.sources import Skips, SourceSpec, load_config, parse_spec, read_source
from gptlab.data.stream_stats import Stats, chunk_counts
from gptlab.data.stream_work import (
    ChunkResult,
    ChunkWorker,
    WorkSettings,
    init_worker,
    peak_rss_kb,
    work,
)
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json
from gptlab.options import RunArgs
from gptlab.tokenizer.loading import load_tokenizer


@dataclass
class StreamConfig(RunArgs):
    """Read sources lazily, drop low-quality and duplicate documents, split off validation and
    tokenize, in worker processes and bounded memory, into token shards that a killed run can
    --resume. Sources are given as for `gptlab data prepare` (no weight= or epochs=)."""

    source: tuple[str, ...] = ()  # sources to read, in order (default: shakespeare)
    sources_file: Path | None = None  # JSON list of source objects; read before --source
    tokenizer: str | None = None  # tokenizer folder (default: runs/<run>/tokenizer)
    out: Path | None = None  # output folder for shards, index.json, report.json (default: runs/<run>/shards)
    workers: int = 1  # processes for the per-document work (1: everything in this process)
    chunk_docs: int = 2000  # documents per chunk: the unit of work, of output files and of resume
    resume: bool = False  # continue a killed run in --out from its last committed chunk
    lenient: bool = False  # skip bad records and files (counted in the report) instead of stopping
    min_chars: int | None = 50  # drop shorter documents
    max_chars: int | None = 1_000_000  # drop longer documents
    max_symbol_ratio: float | None = 0.1  # drop documents with more symbols per letter
    max_duplicate_line_fraction: float | None = 0.3  # drop documents whose repeated lines hold more of their characters
    blocklist: Path | None = None  # drop documents containing any word of this file
    dedup: Literal["near", "exact"] | None = "near"  # near: exact then MinHash LSH; exact: hash only; None: off
    near_threshold: float = 0.8  # estimated Jaccard of word 5-grams from which a document is a near duplicate
    val_fraction: float = 0.05  # expected share of kept documents held out for validation
    seed: int = 1337  # seed of the validation split
    quiet: bool = False  # no progress bar


@dataclass
class Chunk:
    """Documents read but not yet committed."""

    number: int
    docs: list[tuple[str, str]]  # (text, source name)
    docs_end: int  # input position after this chunk (documents over all sources)
    skipped: dict[str, dict[str, int]]  # bad records met while reading it, per source


class Reader:
    """The sources' documents in order, cut into chunks; resumes at a document position."""

    def __init__(self, specs: list[SourceSpec], names: list[str], lenient: bool, start: int):
        self.skips = {name: Skips(lenient) for name in names}
        self._docs = (
            (name, doc)
            for spec, name in zip(specs, names)
            for doc in read_source(spec, self.skips[name], name)
        )
        for _ in range(start):  # re-read what committed chunks hold: parsing only, no work
            if next(self._docs, None) is None:
                raise InputError(None, "--resume: the sources hold fewer documents than the log "
                                 "says were read; they changed since the run started")  # fmt: skip
        for s in self.skips.values():
            s.counts.clear()  # counted in the committed records already
        self.position = start
        self.done = False

    def chunk(self, number: int, size: int) -> Chunk | None:
        """The next `size` documents (fewer at the end); None once nothing is left to report."""
        if self.done:
            return None
        docs = []
        for name, doc in self._docs:
            docs.append((doc.text, name))
            if len(docs) == size:
                break
        else:
            self.done = True
        self.position += len(docs)
        skipped = {n: dict(s.counts) for n, s in self.skips.items() if s.counts}
        for s in self.skips.values():
            s.counts.clear()
        if not docs and not skipped:
            return None
        return Chunk(number, docs, self.position, skipped)


class _Inline:
    """The executor of `--workers 1`: the work runs in this process, when submitted."""

    def __init__(self, settings: WorkSettings):
        self.worker = ChunkWorker(settings)

    def submit(self, fn, docs) -> Future:
        fut: Future = Future()
        fut.set_result(self.worker(docs))
        return fut

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass


def _executor(workers: int, settings: WorkSettings):
    if workers <= 1:
        return _Inline(settings)
    # spawn, not fork: the main process may hold tokenizer threads and tqdm's monitor thread.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker, initargs=(settings,))  # fmt: skip


def _tokenizer_digest(folder: str) -> str:
    """Which tokenizer made the ids: a resume with another one must not mix them."""
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def stream_prepare(
    specs: list[SourceSpec], out: Path, settings: WorkSettings, workers: int = 1,
    chunk_docs: int = 2000, lenient: bool = False, resume: bool = False, progress: bool = False,
) -> dict:
    """Run the streaming data stage into `out`; returns the report (also report.json)."""
    t0 = time.time()
    names = _unique_names(specs)
    tok = load_tokenizer(settings.tokenizer)
    dtype = dtype_for(tok.vocab_size)
    header = {"sources": [asdict(s) for s in specs], "names": names, "lenient": lenient,
              **asdict(settings), "chunk_docs": chunk_docs, "vocab_size": tok.vocab_size,
              "tokenizer_digest": _tokenizer_digest(settings.tokenizer)}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    records = log.read_log(out, header) if resume else None
    if records is None:
        log.start_log(out, header)
        records = []
    resumed_at = len(records) if resume and records else None
    dedup = Deduplicator(settings.near_threshold) if settings.dedup else None
    log.replay(out, records, dedup)
    stats = Stats(names)
    for rec in records:
        stats.add(rec["stats"])
    reader = Reader(specs, names, lenient, records[-1]["docs_end"] if records else 0)
    bar = tqdm(desc="stream", unit=" docs", initial=reader.position, file=sys.stderr,
               disable=None if progress else True, dynamic_ncols=True)  # fmt: skip
    pool = _executor(workers, settings)
    window = 1 if workers <= 1 else 2 * workers  # chunks read ahead of the commit
    pending: deque[tuple[Chunk, Future]] = deque()
    max_in_flight, peak_worker_kb, number = 0, 0, len(records)
    try:
        while True:
            while len(pending) < window and (chunk := reader.chunk(number, chunk_docs)):
                pending.append((chunk, pool.submit(work, chunk.docs)))
                number += 1
                max_in_flight = max(max_in_flight, sum(len(c.docs) for c, _ in pending))
            if not pending:
                break
            chunk, fut = pending.popleft()
            result = fut.result()
            peak_worker_kb = max(peak_worker_kb, result.peak_rss_kb)
            rec = _commit(out, chunk, result, dedup, dtype)
            stats.add(rec["stats"])
            records.append(rec)
            bar.update(len(chunk.docs))
    finally:
        pool.shutdown(cancel_futures=True)
        bar.close()
    if not any(rec["train"] for rec in records):
        raise InputError(None, "no training documents left after filtering and deduplication")
    log.write_index(out, records, dtype, tok.vocab_size, tok.eot_id, settings.tokenizer)
    report = {
        "sources": stats.per_source(),
        "overall": stats.overall(),
        "settings": header,
        "run": {
            "workers": workers, "chunks": len(records), "resumed_at_chunk": resumed_at,
            "max_docs_in_flight": max_in_flight, "seconds": round(time.time() - t0, 3),
            "peak_rss_main_mb": peak_rss_kb() / 1024,
            "peak_rss_worker_mb": peak_worker_kb / 1024,
        },
        "files": {"index": str(out / "index.json")},
    }
    atomic_write_json(out / "report.json", report)
    return report


def _commit(out: Path, chunk: Chunk, result: ChunkResult, dedup: Deduplicator | None,
            dtype: str) -> dict:  # fmt: skip
    """Dedup a chunk's documents in order, write its files, then its log record (the commit)."""
    train, val, kept = [], [], []
    verdicts: list[str | None] = []
    for i, reason in enumerate(result.reasons):
        if reason is None and dedup is not None:
            sig = result.sigs[i] if result.sigs is not None else None
            reason = dedup.check_signature(result.keys[i].tobytes(), sig)
            reason = reason and f"{reason}_duplicates"
        verdicts.append(reason)
        if reason is None:
            kept.append(i)
            doc = result.tokens[result.offsets[i] : result.offsets[i + 1]]
            (val if result.to_val[i] else train).append(doc)
    sigs = result.sigs[kept] if result.sigs is not None else None
    files = log.write_chunk(out, chunk.number, train, val, result.keys[kept], sigs, dtype)
    counts = chunk_counts([src for _, src in chunk.docs], chunk.skipped, result, verdicts)
    rec = {"chunk": chunk.number, "docs_end": chunk.docs_end, **files, "stats": counts}
    log.append_record(out, rec)
    return rec


def _unique_names(specs: list[SourceSpec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        base = spec.default_name()
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def settings_from(cfg: StreamConfig, tokenizer: str) -> WorkSettings:
    """The workers' settings from the command's flags, checked."""
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise InputError("--val-fraction", "must be in [0, 1)")
    if not 0.0 < cfg.near_threshold <= 1.0:
        raise InputError("--near-threshold", "must be in (0, 1]")
    blocklist = load_blocklist(cfg.blocklist) if cfg.blocklist else None
    filters = (cfg.min_chars, cfg.max_chars, cfg.max_symbol_ratio,
               cfg.max_duplicate_line_fraction, blocklist)  # fmt: skip
    Filters(*filters)  # fail here, not in a worker
    return WorkSettings(filters, cfg.near_threshold if cfg.dedup == "near" else None,
                        cfg.dedup is not None, tokenizer, cfg.val_fraction, cfg.seed)  # fmt: skip


def summary(report: dict) -> str:
    o, r = report["overall"], report["run"]
    dups = f"{o['exact_duplicates']:,} exact + {o['near_duplicates']:,} near duplicates"
    read = (f"read {o['docs_in']:,} docs ({human_bytes(o['bytes_in'])}); dropped "
            f"{sum(o['dropped'].values()):,} by the filters and {dups}; skipped "
            f"{sum(o['skipped'].values()):,} bad records")  # fmt: skip
    wrote = (f"train: {o['train_tokens']:,} tokens in {o['train_docs']:,} docs; "
             f"val: {o['val_tokens']:,} tokens in {o['val_docs']:,} docs")  # fmt: skip
    how = (f"{r['chunks']} chunks, {r['workers']} worker(s), at most "
           f"{r['max_docs_in_flight']:,} docs in flight, peak RSS {r['peak_rss_main_mb']:.0f} MB "
           f"(main) / {r['peak_rss_worker_mb']:.0f} MB (worker), {format_duration(r['seconds'])}")  # fmt: skip
    return "\n".join([read, wrote, how, f"wrote {report['files']['index']} and report.json"])


def run(cfg: StreamConfig) -> int:
    specs = load_config(cfg.sources_file) if cfg.sources_file else []
    specs += [parse_spec(s) for s in cfg.source]
    specs = specs or [parse_spec("shakespeare")]
    for spec in specs:
        if spec.weight is not None or spec.epochs is not None:
            raise InputError(f"--source {spec.location}", "weight= and epochs= make a mixture: "
                             "use `gptlab data prepare`; a stream writes each document once")  # fmt: skip
    if cfg.workers < 1 or cfg.chunk_docs < 1:
        raise InputError(None, "--workers and --chunk-docs must be at least 1")
    tokenizer = cfg.tokenizer if cfg.tokenizer is not None else str(run_dir(cfg.run, "tokenizer"))
    out = cfg.out if cfg.out is not None else run_dir(cfg.run, "shards")
    report = stream_prepare(specs, out, settings_from(cfg, tokenizer), cfg.workers,
                            cfg.chunk_docs, cfg.lenient, cfg.resume, not cfg.quiet)  # fmt: skip
    print(summary(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(StreamConfig, argv, "gptlab data stream"))


if __name__ == "__main__":
    raise SystemExit(main())

