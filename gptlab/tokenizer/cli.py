"""`gptlab tokenizer <train|show|eval>`: train the byte-level BPE, look at it, measure it.

    gptlab tokenizer train --run tiny          # runs/tiny/data/train.jsonl -> runs/tiny/tokenizer/
    gptlab tokenizer train --input notes.txt --vocab-size 1024 --out /tmp/tok
    gptlab tokenizer show --run tiny "Hello world! 你好"
    echo "some text" | gptlab tokenizer show --run tiny -
    gptlab tokenizer eval --run tiny           # bytes/token per kind of text + eval.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from gptlab.errors import InputError

SUBCOMMANDS = {
    "train": "learn merges from text and save the tokenizer folder",
    "show": "print text with its token boundaries coloured and the ids beneath",
    "eval": "bytes per token on held-out samples of several kinds (and the run's val.jsonl)",
}


# ------------------------------------------------------------------ input text
def read_text_file(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 (byte {e.start})") from None


def iter_inputs(paths: list[str]) -> Iterator[str]:
    """Documents from --input: a .jsonl file gives its "text" fields, any other file is one
    document, a folder gives each .txt/.md file under it (sorted)."""
    from gptlab.data.tokenize import iter_jsonl_texts

    for name in paths:
        path = Path(name)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.suffix in (".txt", ".md") and p.is_file()
            )
            if not files:
                raise InputError(path, "folder has no .txt or .md files")
            for f in files:
                yield read_text_file(f)
        elif not path.exists():
            raise InputError(path, "file not found")
        elif path.suffix == ".jsonl":
            yield from iter_jsonl_texts(path)
        else:
            yield read_text_file(path)


def limit_chars(docs: Iterable[str], max_chars: int | None) -> Iterator[str]:
    """Stop after `max_chars` characters in all (the last document is cut)."""
    left = max_chars
    for d in docs:
        if left is None:
            yield d
            continue
        if left <= 0:
            return
        yield d[:left]
        left -= len(d)


# ------------------------------------------------------------------ parsers
def _add_tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="tiny", help="run name: the tokenizer is runs/<run>/tokenizer "
                   "(default: %(default)s)")
    p.add_argument("--tokenizer", help="tokenizer folder (overrides --run)")


def build_parser() -> argparse.ArgumentParser:
    from gptlab.tokenizer.bpe import PATTERNS

    p = argparse.ArgumentParser(
        prog="gptlab tokenizer", description="Train, show and evaluate the byte-level BPE."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,show,eval}")

    t = sub.add_parser("train", help=SUBCOMMANDS["train"], description=(
        "Learn a byte-level BPE (rustbpe) from text and save it: tokenizer.tiktoken, "
        "gptlab_tokenizer.json, and the Hugging Face files (tokenizer.json, ...)."))
    t.add_argument("--run", default="tiny", help="run name: fills --data and --out "
                   "(default: %(default)s)")
    t.add_argument("--data", help="folder with train.jsonl (lines with a \"text\" field) and "
                   "optionally val.jsonl, used to report bytes/token (default: runs/<run>/data)")
    t.add_argument("--input", nargs="+", metavar="PATH", help="train on these instead of "
                   "train.jsonl: text files (one document each), .jsonl files, or folders of "
                   ".txt/.md files")
    t.add_argument("--vocab-size", type=int, default=4096, help="total vocabulary including "
                   "the 256 bytes and the special tokens (default: %(default)s)")
    t.add_argument("--max-chars", type=int, default=None, help="train on at most this many "
                   "characters (default: all)")
    t.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt4", help="split regex: "
                   "gpt4 groups digits by up to 3, nanochat by up to 2 (default: %(default)s)")
    t.add_argument("--out", help="tokenizer folder to write (default: runs/<run>/tokenizer)")

    s = sub.add_parser("show", help=SUBCOMMANDS["show"], description=(
        "Print TEXT with token boundaries (alternating background colours on a terminal, a '│' "
        "separator otherwise) and the token ids beneath. Special tokens are recognised."))
    _add_tokenizer_args(s)
    s.add_argument("text", nargs="+", help="text to tokenize (several words are joined by "
                   "spaces); '-' reads standard input")
    s.add_argument("--no-color", action="store_true", help="separators instead of colours "
                   "(automatic when stdout is not a terminal or NO_COLOR is set)")

    e = sub.add_parser("eval", help=SUBCOMMANDS["eval"], description=(
        "Bytes per token on gptlab's held-out samples (English prose, Python, numbers, Chinese, "
        "Korean, Arabic, emoji) and on <data>/val.jsonl when present; prints a table and "
        "writes eval.json into the tokenizer folder."))
    _add_tokenizer_args(e)
    e.add_argument("--data", help="folder whose val.jsonl is evaluated too, if it exists "
                   "(default: runs/<run>/data)")
    e.add_argument("--samples", help="folder of <kind>.txt files to use instead of the built-in "
                   "samples")
    return p


# ------------------------------------------------------------------ commands
def _tokenizer_dir(args: argparse.Namespace) -> str:
    from gptlab.common import run_dir

    return args.tokenizer or str(run_dir(args.run, "tokenizer"))


def _val_bytes_per_token(tok, val_path: Path) -> tuple[int, int]:
    from gptlab.data.tokenize import iter_jsonl_texts

    docs = list(iter_jsonl_texts(val_path))
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(docs))
    return n_bytes, n_tokens


def cmd_train(args: argparse.Namespace) -> int:
    from gptlab.common import run_dir
    from gptlab.data.tokenize import iter_jsonl_texts
    from gptlab.tokenizer.bpe import PATTERNS, Tokenizer
    from gptlab.tokenizer.special import SPECIAL_TOKENS

    if args.max_chars is not None and args.max_chars < 1:
        raise InputError(None, f"--max-chars must be positive, got {args.max_chars}")
    minimum = 256 + len(SPECIAL_TOKENS)
    if args.vocab_size < minimum:
        raise InputError(None, f"--vocab-size {args.vocab_size} is too small: it must be at least "
                         f"{minimum} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
    data = Path(args.data) if args.data else run_dir(args.run, "data")
    out = Path(args.out) if args.out else run_dir(args.run, "tokenizer")
    if args.input:
        docs = iter_inputs(args.input)
        source = " ".join(args.input)
    else:
        train_path = data / "train.jsonl"
        if not train_path.exists():
            raise InputError(train_path, "file not found; run `gptlab data prepare` first, "
                             "or pass --data DIR or --input FILE")
        docs = iter_jsonl_texts(train_path)
        source = str(train_path)
    print(f"training a {args.vocab_size}-token BPE on {source}")
    tok = Tokenizer.train(limit_chars(docs, args.max_chars), args.vocab_size,
                          pattern=PATTERNS[args.pattern])
    st = tok.stats
    if st["characters"] == 0:
        raise InputError(source, "no training text")
    print(f"trained in {st['train_seconds']:.2f}s on {st['documents']:,} documents, "
          f"{st['characters']:,} characters: vocab size {tok.vocab_size} "
          f"({st['merges']} merges + 256 bytes + {len(tok.special_ids)} special tokens)")
    if st["merges"] < st["requested_merges"]:
        print(f"warning: the text ran out of pairs after {st['merges']} of "
              f"{st['requested_merges']} merges: vocab size is {tok.vocab_size}, "
              f"not {args.vocab_size}", file=sys.stderr)
    val_path = data / "val.jsonl"
    if val_path.exists():
        n_bytes, n_tokens = _val_bytes_per_token(tok, val_path)
        if n_tokens:
            tok.stats["val_bytes_per_token"] = round(n_bytes / n_tokens, 4)
            print(f"val: {n_bytes:,} bytes -> {n_tokens:,} tokens = "
                  f"{n_bytes / n_tokens:.2f} bytes/token ({val_path})")
    written = tok.save(out)
    if not (out / "tokenizer.json").exists():
        print("note: the `tokenizers` library is not installed: no Hugging Face files written")
    print(f"saved {out}/ ({', '.join(p.name for p in written)})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from gptlab.tokenizer.bpe import Tokenizer
    from gptlab.tokenizer.show import render

    tok = Tokenizer.load(_tokenizer_dir(args))
    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    color = not args.no_color and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    shown = render(tok, text, color=color)
    print(shown.text)
    print()
    print("ids:", shown.ids)
    print(shown.summary)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from gptlab.common import run_dir
    from gptlab.data.tokenize import iter_jsonl_texts
    from gptlab.fileio import atomic_write_json
    from gptlab.tokenizer.bpe import Tokenizer
    from gptlab.tokenizer.evaluate import builtin_samples, evaluate, table, to_json

    tok_dir = _tokenizer_dir(args)
    tok = Tokenizer.load(tok_dir)
    if args.samples:
        if not Path(args.samples).is_dir():
            raise InputError(args.samples, "not a folder")
        samples: dict = builtin_samples(Path(args.samples))
        if not samples:
            raise InputError(args.samples, "no .txt files in this folder")
    else:
        samples = builtin_samples()
    data = Path(args.data) if args.data else run_dir(args.run, "data")
    val_path = data / "val.jsonl"
    if val_path.exists():
        samples["val.jsonl"] = list(iter_jsonl_texts(val_path))
    rows = evaluate(tok, samples)
    print(f"tokenizer {tok_dir} (vocab size {tok.vocab_size})")
    print(table(rows))
    poor = [r.kind for r in rows if r.tokens and r.bytes_per_token < 1.5]
    if poor:
        print(f"note: {', '.join(poor)}: under 1.5 bytes/token, nearly one token per byte. This "
              "vocabulary learned almost no merges for such text; a tokenizer only compresses "
              "what it was trained on.")
    report = {
        "tokenizer": tok_dir,
        "vocab_size": tok.vocab_size,
        "val": str(val_path) if val_path.exists() else None,
        "rows": to_json(rows),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(Path(tok_dir) / "eval.json", report)
    print(f"wrote {Path(tok_dir) / 'eval.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return {"train": cmd_train, "show": cmd_show, "eval": cmd_eval}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
