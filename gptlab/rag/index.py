"""Build a BM25 index over a folder of .txt / .md (and .pdf) files.

Layout of an index folder (built beside its final name, then renamed into place, so a crash
leaves the old index or the new one, never half of each):

    manifest.json   what was indexed and how (chunking, tokenization, counts, versions)
    chunks.jsonl    one Chunk per line, in index order: row i of BM25 is line i
    bm25/           the `bm25s` index (its own save format: .npy arrays + JSON, no pickle)

BM25 (lexical) retrieval needs no model and finds quotes, names and rare words exactly, which
is what citing a source needs. Dense embeddings are left out: they need an embedding model
this project does not ship. Tokenization is `bm25s.tokenize` (lower-cased words of 2+
characters); stopwords are kept by default (dropping English stopwords lost 4 points of MRR
on quote questions in benchmarks/bench_rag.py; BM25's IDF already discounts common words); no
stemmer (PyStemmer is not a dependency).
Each chunk is indexed with its Markdown heading path in front, so "which scene" queries can
match a chunk from the middle of a scene.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from gptlab.errors import InputError
from gptlab.fileio import atomic_folder, atomic_write_json, json_loads
from gptlab.rag.chunk import Chunk, chunk_text

FORMAT = "gptlab-rag-index"
FORMAT_VERSION = 1
TEXT_SUFFIXES = (".txt", ".md")


def pdf_available() -> bool:
    try:  # optional dependency (the `pdf` extra): PDFs are indexed only when it is installed
        import pypdf  # noqa: F401
    except ImportError:
        return False
    return True


def find_files(docs_dir: Path) -> list[Path]:
    """Indexable files under `docs_dir`, sorted; hidden files and folders (.git) are skipped."""
    suffixes = TEXT_SUFFIXES + ((".pdf",) if pdf_available() else ())
    found = []
    for p in docs_dir.rglob("*"):
        rel = p.relative_to(docs_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in suffixes and p.is_file():
            found.append(p)
    return sorted(found)


def read_text_file(path: Path) -> str:
    """The file's text as `open(path, encoding="utf-8-sig").read()` gives it (universal newlines,
    BOM dropped): chunk offsets index this string."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text (byte {e.start})", line=line) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_pdf_pages(path: Path) -> list[str]:
    """Extracted text per page (pypdf); chunk offsets index the page's text."""
    import pypdf  # optional dependency: find_files lists PDFs only when it is installed

    try:
        reader = pypdf.PdfReader(path)
        return [page.extract_text() or "" for page in reader.pages]
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 (pypdf raises many types on broken files; name the file)
        raise InputError(path, f"cannot read PDF: {type(e).__name__}: {e}") from None


def chunk_file(path: Path, rel: str, chunk_chars: int, overlap: int) -> list[Chunk]:
    if path.suffix.lower() == ".pdf":
        chunks = []
        for no, page_text in enumerate(read_pdf_pages(path), 1):
            chunks += chunk_text(page_text, rel, chunk_chars, overlap, page=no)
        return chunks
    markdown = path.suffix.lower() == ".md"
    return chunk_text(read_text_file(path), rel, chunk_chars, overlap, markdown=markdown)


def index_text(chunk: Chunk) -> str:
    """What BM25 sees for a chunk: its heading path, then its text."""
    return f"{chunk.section}\n{chunk.text}" if chunk.section else chunk.text


def tokenize(texts: list[str], stopwords: str | None) -> list[list[str]]:
    import bm25s  # ~0.4 s (scipy): imported when text is indexed or searched, so --help stays fast

    return bm25s.tokenize(texts, stopwords=stopwords, return_ids=False, show_progress=False)


def iter_chunks(
    docs_dir: Path, files: list[Path], chunk_chars: int, overlap: int, progress: bool
) -> Iterator[tuple[Path, list[Chunk]]]:
    for path in tqdm(files, desc="chunk", unit="file", disable=not progress, file=sys.stderr):
        yield path, chunk_file(path, path.relative_to(docs_dir).as_posix(), chunk_chars, overlap)


def build_index(
    docs_dir: str | Path,
    out_dir: str | Path,
    chunk_chars: int = 400,
    overlap: int = 50,
    stopwords: str | None = None,
    k1: float = 1.5,
    b: float = 0.75,
    progress: bool = True,
) -> dict:
    """Chunk every file under `docs_dir`, index the chunks with BM25, write `out_dir`; return the manifest."""
    import bm25s  # ~0.4 s (scipy): see tokenize

    docs_dir, out_dir = Path(docs_dir), Path(out_dir)
    if not docs_dir.is_dir():
        raise InputError(docs_dir, "not a folder")
    if chunk_chars < 1 or not 0 <= overlap < chunk_chars:
        raise InputError(
            "--overlap", f"need 0 <= overlap < chunk-chars, got {overlap} and {chunk_chars}"
        )
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise InputError(out_dir, "exists and is not a gptlab index: refusing to replace it")
    files = find_files(docs_dir)
    if not files:
        kinds = "/".join(TEXT_SUFFIXES + ((".pdf",) if pdf_available() else ()))
        raise InputError(docs_dir, f"no {kinds} files to index")
    t0 = time.perf_counter()
    chunks: list[Chunk] = []
    per_file = []
    for path, file_chunks in iter_chunks(docs_dir, files, chunk_chars, overlap, progress):
        chunks += file_chunks
        per_file.append({"file": path.relative_to(docs_dir).as_posix(), "chunks": len(file_chunks)})
    if not chunks:
        raise InputError(docs_dir, "the files hold no text to index")
    t_chunk = time.perf_counter() - t0
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(tokenize([index_text(c) for c in chunks], stopwords), show_progress=False)
    t_index = time.perf_counter() - t0 - t_chunk

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "docs_dir": str(docs_dir.resolve()),
        "chunk_chars": chunk_chars,
        "overlap": overlap,
        "stopwords": stopwords,
        "bm25": {"k1": k1, "b": b, "method": retriever.method, "bm25s": bm25s.__version__},
        "counts": {
            "files": len(files),
            "chunks": len(chunks),
            "chars": sum(len(c.text) for c in chunks),
        },
        "seconds": {"chunk": round(t_chunk, 3), "index": round(t_index, 3)},
        "files": per_file,
    }
    with atomic_folder(out_dir) as new:  # readers see the old index or the whole new one
        retriever.save(str(new / "bm25"), show_progress=False)
        with open(new / "chunks.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks)
        atomic_write_json(new / "manifest.json", manifest)
    return manifest


def load_chunks(path: Path) -> list[Chunk]:
    if not path.is_file():
        raise InputError(path, "not found: is this an index folder made by `gptlab rag index`?")
    chunks = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            try:
                chunks.append(Chunk(**json_loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise InputError(path, f"not a chunk record: {e}", line=no) from None
    return chunks
