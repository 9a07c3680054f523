"""`gptlab rag index`: chunk a folder of documents and build a BM25 index over the chunks.

    gptlab rag index docs/ --out runs/tiny/rag          # .txt, .md (and .pdf with pypdf)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.options import RunArgs
from gptlab.rag.index import build_index


@dataclass(kw_only=True)
class IndexConfig(RunArgs):
    """Chunk every .txt/.md file (and .pdf when pypdf is installed) under DOCS_DIR on
    paragraph/sentence boundaries and build a BM25 index."""

    docs_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="DOCS_DIR")]  # folder to index (searched recursively; hidden files and folders are skipped)
    out: Path | None = None  # index folder to write (replaced whole if it is an earlier index; default: runs/<run>/rag)
    chunk_chars: int = 400  # most characters per chunk
    overlap: int = 50  # characters a chunk may share with the one before it, so no sentence is lost at a seam
    stopwords: Literal["en"] | None = None  # 'en' drops common English words from the index; None keeps them, which finds quotes better (benchmarks/bench_rag.py)
    quiet: bool = False  # no progress bar


def run(cfg: IndexConfig) -> int:
    out = cfg.out if cfg.out is not None else run_dir(cfg.run, "rag")
    m = build_index(
        cfg.docs_dir, out, cfg.chunk_chars, cfg.overlap, stopwords=cfg.stopwords,
        progress=not cfg.quiet,
    )
    c, s = m["counts"], m["seconds"]
    print(
        f"indexed {c['files']} files -> {c['chunks']:,} chunks ({c['chars']:,} chars) "
        f"in {s['chunk'] + s['index']:.2f}s: {out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(IndexConfig, argv, "gptlab rag index"))


if __name__ == "__main__":
    raise SystemExit(main())
