"""Read conversations for SFT from the common file formats, as OpenAI-style message lists.

Formats (auto-detected per record, or forced with `fmt=`):
- `messages` (OpenAI): `{"messages": [{"role": "user", "content": "hi"}, ...]}`
- `sharegpt`: `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", ...}]}`
- `alpaca`: `{"instruction": ..., "input": ..., "output": ...}` -> one user turn
  (instruction, plus "\\n\\n" + input when input is not empty) and one assistant turn.

Files are JSONL (one record a line) or JSON (one array of records, or a single record); errors
name the file and line either way, since the reader tracks where each array element starts.
Every conversation passes `chat.validate_messages`, so anything returned renders.

Worked example:

    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
    >>> _ = p.write_text(json.dumps({"instruction": "Add", "input": "2+2", "output": "4"}) + "\\n")
    >>> load_conversations(p)[0]
    [[{'role': 'user', 'content': 'Add\\n\\n2+2'}, {'role': 'assistant', 'content': '4'}]]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gptlab.data.chats import Chat
from gptlab.data.sources import Skips, hf_rows, parse_spec
from gptlab.errors import InputError
from gptlab.fileio import json_loads
from gptlab.tokenizer.chat import validate_messages

FORMATS = ("auto", "messages", "sharegpt", "alpaca")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "system": "system",
}


class BadRecord(ValueError):
    """A record that cannot become a conversation; `reason` is the lenient-mode counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------------- records from files


def table_records(location: str | Path) -> Iterator[tuple[int, Any]]:
    """(row number, row dict) of a parquet file or an `hf:` dataset spec (see data/sources.py),
    e.g. `hf:HuggingFaceTB/smoltalk:all@split=train,limit=1000` or `chats.parquet`."""
    spec = parse_spec(str(location))
    if spec.location.startswith("hf:"):
        rows: Iterator[Any] = hf_rows(spec)
    else:
        try:  # optional dependency (the `hf` extra): imported only when a parquet file is read
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(location, "reading parquet needs pyarrow: pip install pyarrow") from None
        try:
            pf = pq.ParquetFile(spec.location)
        except Exception as e:  # noqa: BLE001 (ArrowInvalid / OSError for a file that is not parquet)
            raise InputError(location, f"not a parquet file ({type(e).__name__})") from None
        rows = (r for batch in pf.iter_batches(batch_size=1024) for r in batch.to_pylist())
    for i, row in enumerate(rows, 1):
        if spec.limit is not None and i > spec.limit:
            return
        yield i, row


def read_records(path: str | Path, skips: Skips) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value) for each record of a JSONL file or a JSON array / object.

    A file whose first character is `[` is a JSON array; a `.json` file that parses as one object
    is a single record; anything else is JSONL (blank lines ignored). Bad JSON goes to `skips`.
    Parquet files and `hf:` dataset specs give one record per row (table_records).
    """
    if str(path).startswith("hf:") or str(path).split("@")[0].lower().endswith(".parquet"):
        yield from table_records(path)
        return
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(
            path, f"bytes that are not UTF-8 ({data[e.start : e.start + 1]!r})", line=line
        ) from None
    body = text.lstrip()
    if not body:
        raise InputError(path, "file is empty")
    if body[0] == "[":
        yield from _array_records(path, text)
        return
    if path.suffix.lower() == ".json":
        try:
            yield text[: len(text) - len(body)].count("\n") + 1, json_loads(text)
            return
        except json.JSONDecodeError:
            pass  # JSONL saved as .json: read it line by line below
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json_loads(line)
        except json.JSONDecodeError as e:
            skips.bad("bad_json", path, f"line is not valid JSON ({e.msg})", no)
            continue
        yield no, rec


def _array_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array with the line each one starts on.

    A syntax error inside an array cannot be skipped (where would the next record start?), so
    it raises even in lenient mode.
    """
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)

    def skip_ws(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    def fail(i: int, msg: str) -> InputError:
        return InputError(path, f"invalid JSON array ({msg})", line=text.count("\n", 0, i) + 1)

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise fail(e.pos, e.msg) from None
        except RecursionError:
            raise fail(pos, "nested too deeply") from None
        yield text.count("\n", 0, pos) + 1, obj
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
        elif pos < n and text[pos] == "]":
            if skip_ws(pos + 1) != n:
                raise fail(pos + 1, "extra data after the array")
            return
        else:
            raise fail(pos, "expected ',' or ']'")


# ---------------------------------------------------------------------------- record -> messages


def detect_format(rec: Any) -> str:
    """Which format a record is in, by its keys; raises BadRecord when none fits."""
    if isinstance(rec, dict):
        if "messages" in rec:
            return "messages"
        if "conversations" in rec:
            return "sharegpt"
        if "instruction" in rec and "output" in rec:
            return "alpaca"
    keys = ", ".join(sorted(rec)) if isinstance(rec, dict) else type(rec).__name__
    raise BadRecord(
        "unknown_format",
        f"record is not messages / sharegpt / alpaca (expected a 'messages', 'conversations' or "
        f"'instruction'+'output' key; got {keys})",
    )


def _field(rec: Any, key: str, fmt: str) -> Any:
    if not isinstance(rec, dict) or key not in rec:
        raise BadRecord("missing_field", f"{fmt} record has no {key!r} field")
    return rec[key]


def from_messages(rec: Any) -> list[dict]:
    msgs = _field(rec, "messages", "messages")
    if not isinstance(msgs, list):
        raise BadRecord("invalid_conversation", "'messages' must be a list")
    # keep only what the renderer reads, so extra keys (name, weight, ...) don't travel on
    return [
        {k: m[k] for k in ("role", "content") if k in m} if isinstance(m, dict) else m for m in msgs
    ]


def from_sharegpt(rec: Any) -> list[dict]:
    turns = _field(rec, "conversations", "sharegpt")
    if not isinstance(turns, list):
        raise BadRecord("invalid_conversation", "'conversations' must be a list")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise BadRecord("invalid_conversation", f"turn {i} is not a {{'from', 'value'}} object")
        role = SHAREGPT_ROLES.get(str(t["from"]).lower())
        if role is None:
            raise BadRecord(
                "unknown_role",
                f"turn {i}: unknown speaker {t['from']!r} (expected human, gpt or system)",
            )
        out.append({"role": role, "content": t["value"]})
    return out


def from_alpaca(rec: Any) -> list[dict]:
    instruction = _field(rec, "instruction", "alpaca")
    output = _field(rec, "output", "alpaca")
    extra = rec.get("input") or ""
    system = rec.get("system") or ""
    for name, value in (
        ("instruction", instruction),
        ("output", output),
        ("input", extra),
        ("system", system),
    ):
        if not isinstance(value, str):
            raise BadRecord(
                "not_string", f"alpaca field {name!r} is a {type(value).__name__}, not a string"
            )
    user = instruction + ("\n\n" + extra if extra else "")
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


CONVERTERS = {"messages": from_messages, "sharegpt": from_sharegpt, "alpaca": from_alpaca}


def to_messages(rec: Any, fmt: str = "auto", require_reply: bool = True) -> tuple[str, list[dict]]:
    """(format, validated messages) of one record; BadRecord if it does not make a conversation."""
    if fmt not in FORMATS:
        raise ValueError(
            f"unknown conversation format {fmt!r} (expected one of {', '.join(FORMATS)})"
        )
    kind = detect_format(rec) if fmt == "auto" else fmt
    msgs = CONVERTERS[kind](rec)
    try:
        validate_messages(msgs)
    except ValueError as e:
        raise BadRecord("invalid_conversation", str(e)) from None
    if require_reply and not any(m["role"] == "assistant" for m in msgs):
        raise BadRecord("no_reply", "conversation has no assistant message to learn from")
    return kind, msgs


def load_conversations(
    path: str | Path, fmt: str = "auto", lenient: bool = False, require_reply: bool = True
) -> tuple[list[list[dict]], dict]:
    """All conversations in a file, and counts: `{"records", "kept", "formats": {fmt: n},
    "skipped": {reason: n}}`.

    Strict (default): the first malformed record raises `InputError(path, msg, line=N)`.
    Lenient: malformed records are skipped and counted by reason. `require_reply=False` keeps
    conversations with no assistant turn (prompt sets for RL or evaluation).
    """
    if fmt not in FORMATS:
        raise InputError(
            None, f"unknown conversation format {fmt!r} (expected one of {', '.join(FORMATS)})"
        )
    skips = Skips(lenient=lenient)
    convs: list[list[dict]] = []
    formats: dict[str, int] = {}
    records = 0
    for line, rec in read_records(path, skips):
        records += 1
        try:
            kind, msgs = to_messages(rec, fmt, require_reply)
        except BadRecord as e:
            skips.bad(e.reason, path, str(e), line)
            continue
        formats[kind] = formats.get(kind, 0) + 1
        convs.append(msgs)
    return convs, {
        "records": records + skips.counts.get("bad_json", 0),
        "kept": len(convs),
        "formats": formats,
        "skipped": dict(skips.counts),
    }


# ---------------------------------------------------------------------------- embedded chitchat


def chitchat_conversations(chats: Iterable[Chat], min_exchanges: int = 1) -> list[list[dict]]:
    """chitchat's human chats as user/assistant conversations: the opener "A" is the user.

    Consecutive turns by one speaker merge (with "\\n"), a trailing user turn is dropped (the
    conversation must end with a reply to learn), and chats with fewer than `min_exchanges`
    user+assistant pairs left are dropped.

    >>> from gptlab.data.chats import Turn
    >>> chat = Chat("c", None, None, [Turn("A", "hi"), Turn("A", "you there?"), Turn("B", "yes"),
    ...                               Turn("A", "bye")])
    >>> chitchat_conversations([chat])
    [[{'role': 'user', 'content': 'hi\\nyou there?'}, {'role': 'assistant', 'content': 'yes'}]]
    """
    out = []
    for chat in chats:
        if not chat.turns:
            continue
        opener = chat.turns[0].speaker
        msgs: list[dict] = []
        for turn in chat.turns:
            text = turn.text.strip()
            if not text:
                continue
            role = "user" if turn.speaker == opener else "assistant"
            if msgs and msgs[-1]["role"] == role:
                msgs[-1]["content"] += "\n" + text
            else:
                msgs.append({"role": role, "content": text})
        if msgs and msgs[-1]["role"] == "user":
            msgs.pop()
        if msgs and msgs[0]["role"] == "user" and len(msgs) // 2 >= max(min_exchanges, 1):
            out.append(msgs)
    return out
