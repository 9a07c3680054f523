"""`gptlab data stream`: N workers equal 1, a killed run resumes to the same bytes, the read-ahead
is bounded, and the decisions are those of a plain loop over the documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gptlab import cli
from gptlab.data import stream_log, stream_prepare
from gptlab.data.clean import Filters
from gptlab.data.dedup import Deduplicator
from gptlab.data.document import Document
from gptlab.data.shards import ShardIndex
from gptlab.data.sources import Skips, parse_spec, read_source
from gptlab.data.stream_work import WorkSettings, in_val
from gptlab.errors import InputError
from gptlab.tokenizer.bpe import Tokenizer

WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "house", "river", "morning", "night", "garden", "letter", "window", "road", "city", "water", "light", "voice", "friend", "king", "stone", "field", "bread", "fire", "winter", "summer", "market", "ship", "sea", "mountain", "forest"]  # fmt: skip


def prose(seed: int, n_words: int = 120) -> str:
    rng = np.random.default_rng(seed)
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), n_words)]
    return " ".join(" ".join(words[i : i + 10]).capitalize() + "." for i in range(0, n_words, 10))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A tokenizer and three sources with every kind of drop: short docs, symbol soup, exact
    copies (re-cased) and near copies, within and across sources, and two bad JSONL lines."""
    root = tmp_path_factory.mktemp("stream")
    Tokenizer.train([prose(i) for i in range(40)], 300).save(root / "tok")
    notes = root / "notes"
    notes.mkdir()
    for i in range(30):
        (notes / f"n{i:02d}.txt").write_text(prose(i) if i % 9 else "Too short.")
    (notes / "upper.md").write_text(prose(3).upper())  # exact copy of n03 (case folded)
    lines = []
    for i in range(90):
        if i % 15 == 0:
            near = prose(i // 15 + 1).split(" ")
            near[40] = near[80] = "lantern"  # a near copy of a note
            text = " ".join(near)
        elif i % 23 == 0:
            text = "{<>} [#] |@| " * 30
        else:
            text = prose(100 + i % 70)  # ids >= 70 repeat earlier records exactly
        lines.append(json.dumps({"content": text}))
    lines.insert(17, "not json")
    lines.insert(60, json.dumps({"other": 1}))
    (root / "web.jsonl").write_text("\n".join(lines) + "\n")
    (root / "more.jsonl").write_text("".join(json.dumps({"text": prose(300 + i)}) + "\n"
                                             for i in range(25)))  # fmt: skip
    return root


class SimulatedKill(BaseException):
    """Raised where a kill would stop the run (the CLI turns KeyboardInterrupt into exit 130)."""


def sources(root: Path) -> list[str]:
    return [str(root / "notes"), f"{root / 'web.jsonl'}@field=content", str(root / "more.jsonl")]


def stream(root: Path, out: str, *extra: str) -> dict:
    argv = ["data", "stream", "--source", *sources(root), "--tokenizer", str(root / "tok"),
            "--out", str(root / out), "--lenient", "--chunk-docs", "7", "--val-fraction", "0.2",
            "--quiet", *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return json.loads((root / out / "report.json").read_text())


def output_bytes(folder: Path) -> dict[str, bytes]:
    """Everything a training run reads: index.json and every shard it lists."""
    files = ["index.json"] + [p.name for p in folder.glob("*.bin")]
    return {name: (folder / name).read_bytes() for name in sorted(files)}


def counts(report: dict) -> tuple:
    return report["sources"], report["overall"]


def test_two_workers_equal_one_and_a_plain_loop(corpus):
    one = stream(corpus, "one", "--workers", "1")
    two = stream(corpus, "two", "--workers", "2")
    assert output_bytes(corpus / "one") == output_bytes(corpus / "two")
    assert counts(one) == counts(two)
    o = one["overall"]
    assert o["docs_in"] == o["docs_kept"] + sum(o["dropped"].values()) + o["exact_duplicates"] \
        + o["near_duplicates"] and o["docs_kept"] == o["train_docs"] + o["val_docs"]
    assert o["exact_duplicates"] >= 15 and o["near_duplicates"] >= 5 and o["val_docs"] > 0
    assert o["skipped"] == {"bad_json": 1, "missing_field": 1}
    assert one["run"]["chunks"] > 10  # many chunks, so order across chunks is exercised

    # The plain loop the stream must agree with: one document at a time, in order.
    tok = Tokenizer.load(corpus / "tok")
    filters, dedup = Filters(), Deduplicator(0.8)
    plain: dict[str, list[int]] = {"train": [], "val": []}
    for text in sources(corpus):
        spec = parse_spec(text)
        for doc in read_source(spec, Skips(lenient=True), spec.default_name()):
            if filters.check(doc.text) is None and dedup.check(doc.text) is None:
                split = "val" if in_val(Document(doc.text, doc.source, ""), 0.2, 1337) else "train"
                plain[split] += [tok.eot_id, *tok.encode(doc.text)]
    index = ShardIndex.load(corpus / "one")
    for split in ("train", "val"):
        assert np.concatenate(index.arrays(split)).tolist() == plain[split]


def test_resume_after_kills_gives_the_same_bytes(corpus, monkeypatch):
    ref = stream(corpus, "ref")
    real_append = stream_log.append_record

    def die_at(chunk: int):
        def append(out, record):
            if record["chunk"] == chunk:  # its shard files are written, its record is not
                raise SimulatedKill  # a BaseException, like the signal, so nothing catches it
            real_append(out, record)
        return append

    monkeypatch.setattr(stream_log, "append_record", die_at(4))
    with pytest.raises(SimulatedKill):
        stream(corpus, "killed", "--workers", "2")
    log = corpus / "killed" / "stream" / "progress.jsonl"
    assert len(log.read_text().splitlines()) == 1 + 4  # settings + chunks 0-3
    assert not (corpus / "killed" / "index.json").exists()
    with open(log, "a") as f:
        f.write('{"chunk": 4, "docs_e')  # and a torn record, as if killed mid-append
    monkeypatch.setattr(stream_log, "append_record", die_at(9))
    with pytest.raises(SimulatedKill):
        stream(corpus, "killed", "--resume")
    monkeypatch.setattr(stream_log, "append_record", real_append)
    resumed = stream(corpus, "killed", "--resume", "--workers", "2")
    assert resumed["run"]["resumed_at_chunk"] == 9
    assert output_bytes(corpus / "killed") == output_bytes(corpus / "ref")
    assert counts(resumed) == counts(ref)


def test_resume_after_sigkill(corpus, tmp_path):
    # A real kill -9 of the command and its worker processes, wherever they happen to be.
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"text": prose(i % 1500)}) + "\n" for i in range(3000)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gptlab", "data", "stream", "--source", str(big), "--tokenizer",
           str(corpus / "tok"), "--out", str(out), "--chunk-docs", "25", "--workers", "2",
           "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    log = out / "stream" / "progress.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > 30:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: main and workers
    proc.wait()
    assert killed, "finished before it could be killed: give it more documents"
    assert not (out / "index.json").exists()
    assert subprocess.run([*cmd, "--resume"], env=env, capture_output=True, check=False).returncode == 0
    whole = tmp_path / "whole"
    cmd[cmd.index(str(out))] = str(whole)
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0
    assert output_bytes(out) == output_bytes(whole)
    report = json.loads((out / "report.json").read_text())
    assert report["overall"] == json.loads((whole / "report.json").read_text())["overall"]
    assert report["overall"]["exact_duplicates"] == 1500


def test_read_ahead_is_bounded(corpus, monkeypatch):
    # Count documents the readers have produced against documents committed, at every commit.
    read, committed, gaps = [0], [0], []
    real_read, real_append = stream_prepare.read_source, stream_log.append_record

    def counting_read(*args, **kwargs):
        for doc in real_read(*args, **kwargs):
            read[0] += 1
            yield doc

    def append(out, record):
        gaps.append(read[0] - committed[0])
        committed[0] = record["docs_end"]
        real_append(out, record)

    monkeypatch.setattr(stream_prepare, "read_source", counting_read)
    monkeypatch.setattr(stream_log, "append_record", append)
    for workers in (1, 2):
        read[0], committed[0] = 0, 0
        gaps.clear()
        report = stream(corpus, f"bounded{workers}", "--workers", str(workers))
        window = 1 if workers == 1 else 2 * workers  # chunks of 7 documents
        assert max(gaps) <= window * 7 and report["run"]["max_docs_in_flight"] <= window * 7
        assert read[0] == report["overall"]["docs_in"]
    assert max(gaps) > 7  # two workers do read ahead


def test_refuses_to_resume_with_other_settings_and_mixtures(corpus):
    stream(corpus, "settings")
    with pytest.raises(InputError, match="seed"):
        stream_prepare.main(["--source", *sources(corpus), "--tokenizer", str(corpus / "tok"),
                             "--out", str(corpus / "settings"), "--lenient", "--chunk-docs", "7",
                             "--val-fraction", "0.2", "--resume", "--seed", "7"])  # fmt: skip
    with pytest.raises(InputError, match="mixture"):
        stream_prepare.main(["--source", f"{corpus / 'more.jsonl'}@weight=2", "--out",
                             str(corpus / "w"), "--tokenizer", str(corpus / "tok")])  # fmt: skip
    assert WorkSettings((50, None, None, None, None), None, True, "t", 0.0, 0).dedup
