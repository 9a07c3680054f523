"""`gptlab rag <index|query>`: build a BM25 index over a folder of documents, and search it.

gptlab rag index docs/ --out runs/tiny/rag          # .txt, .md (and .pdf with pypdf)
gptlab rag query runs/tiny/rag "Who says 'out, damned spot'?" -k 3
gptlab rag query runs/tiny/rag "..." --json          # passages + citations as JSON
gptlab rag query runs/tiny/rag "..." --messages      # the chat messages a model would get
"""

from __future__ import annotations

import argparse
import json
import sys

from gptlab.common import run_dir

SUBCOMMANDS = {
    "index": "chunk and index a folder of .txt/.md/.pdf files",
    "query": "search an index and print the passages with citations",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab rag",
        description="Retrieval-augmented generation: index documents with BM25 and fetch the "
        "passages (with file:line citations) that a chat model answers from.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{index,query}", help="what to do")

    ix = sub.add_parser(
        "index",
        help="chunk and index a folder of .txt/.md/.pdf files",
        description="Chunk every .txt/.md file (and .pdf when pypdf is installed) "
        "under DOCS_DIR on paragraph/sentence boundaries and build a BM25 index.",
    )
    ix.add_argument(
        "docs_dir",
        metavar="DOCS_DIR",
        help="folder to index (searched recursively; hidden files and folders are skipped)",
    )
    ix.add_argument(
        "--run",
        default="tiny",
        help="run name: the default --out is runs/RUN/rag (default: %(default)s)",
    )
    ix.add_argument(
        "--out",
        metavar="INDEX_DIR",
        help="index folder to write (replaced whole "
        "if it is an earlier index; default: runs/RUN/rag)",
    )
    ix.add_argument(
        "--chunk-chars",
        type=int,
        default=400,
        help="most characters per chunk (default: %(default)s)",
    )
    ix.add_argument(
        "--overlap",
        type=int,
        default=50,
        help="characters a chunk may share with "
        "the one before it, so no sentence is lost at a seam (default: %(default)s)",
    )
    ix.add_argument(
        "--stopwords",
        choices=["none", "en"],
        default="none",
        help="'en' drops "
        "common English words from the index; 'none' keeps them, which finds quotes "
        "better (benchmarks/bench_rag.py) (default: %(default)s)",
    )
    ix.add_argument("--quiet", action="store_true", help="no progress bar")

    q = sub.add_parser(
        "query",
        help="print the best passages for a question",
        description="Search an index and print the best passages with citations.",
    )
    q.add_argument("index_dir", metavar="INDEX_DIR", help="folder written by `gptlab rag index`")
    q.add_argument("question", help="the question or search words")
    q.add_argument("-k", type=int, default=5, help="passages to return (default: %(default)s)")
    out = q.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print passages and citations as JSON")
    out.add_argument(
        "--messages",
        action="store_true",
        help="print the chat messages (system "
        "prompt + documents + question) as JSON, ready for a chat model",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "index":
        from gptlab.rag.index import build_index

        out = args.out or run_dir(args.run, "rag")
        m = build_index(
            args.docs_dir,
            out,
            args.chunk_chars,
            args.overlap,
            stopwords=None if args.stopwords == "none" else "en",
            progress=not args.quiet,
        )
        c, s = m["counts"], m["seconds"]
        print(
            f"indexed {c['files']} files -> {c['chunks']:,} chunks ({c['chars']:,} chars) "
            f"in {s['chunk'] + s['index']:.2f}s: {out}"
        )
        return 0

    from dataclasses import asdict

    from gptlab.rag.retrieve import Retriever, build_rag_messages, citations

    passages = Retriever.load(args.index_dir).search(args.question, args.k)
    if args.json:
        print(
            json.dumps(
                {"passages": [asdict(p) for p in passages], "citations": citations(passages)},
                indent=2,
                ensure_ascii=False,
            )
        )
    elif args.messages:
        print(json.dumps(build_rag_messages(args.question, passages), indent=2, ensure_ascii=False))
    elif not passages:
        print("no passage shares a word with the question", file=sys.stderr)
    else:
        for p in passages:
            section = f"  ({p.section})" if p.section else ""
            print(f"[{p.rank}] {p.where}  score {p.score:.2f}{section}")
            print("    " + p.text.replace("\n", "\n    ") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
