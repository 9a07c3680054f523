"""Token shards: round trip, eot placement, dtype choice, index checks, `gptlab data tokenize`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from gptlab.data.shards import ShardIndex, dtype_for, open_split, write_shards
from gptlab.errors import InputError
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.special import ENDOFTEXT

WORDS = ["the", "king", "queen", "lord", "night", "love", "river", "garden", "中文", "🎉", "1234",
         "don't"]


def make_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(0, 60))) + rng.choice(["", "\n", "!"])
            for _ in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("tok")
    Tokenizer.train(make_docs(200, 0), 300).save(folder, hf=False)
    return Tokenizer.load(folder)


def test_round_trip(tmp_path, tok):
    docs = {"train": make_docs(120, 1), "val": make_docs(15, 2)}
    docs["train"][3] = f"text that mentions {ENDOFTEXT} literally"  # must not become a delimiter
    docs["train"][4] = ""  # an empty document is still delimited
    index = write_shards(docs, tok, tmp_path, shard_tokens=500, progress=False)
    assert len(index.splits["train"]) > 2  # several shards
    for split, split_docs in docs.items():
        arrays = open_split(tmp_path, split)
        assert all(isinstance(a, np.memmap) and not a.flags.writeable for a in arrays)
        assert all(a[0] == tok.eot_id for a in arrays)  # documents never straddle shards
        tokens = np.concatenate(arrays)
        expected = []
        for d in split_docs:
            expected += [tok.eot_id] + tok.encode(d)
        assert tokens.tolist() == expected
        assert index.tokens(split) == len(expected)
        assert index.documents(split) == len(split_docs) == int((tokens == tok.eot_id).sum())
        # decoding the stream gives the documents joined, each preceded by <|endoftext|>
        assert tok.decode(tokens.tolist()) == "".join(ENDOFTEXT + d for d in split_docs)
    raw = json.loads((tmp_path / "index.json").read_text())
    assert raw["format"] == "gptlab-shards-v1" and raw["dtype"] == "uint16"
    assert raw["vocab_size"] == tok.vocab_size and raw["eot_id"] == tok.eot_id
    assert raw["tokenizer"] == tok.path
    assert all(s["tokens"] >= 500 for s in raw["splits"]["train"][:-1])
    # the file is plain little-endian uint16, no header
    first = raw["splits"]["train"][0]
    data = np.fromfile(tmp_path / first["file"], dtype="<u2")
    assert len(data) == first["tokens"] and data[0] == tok.eot_id


def test_rewrite_removes_stale_shards(tmp_path, tok):
    write_shards({"train": make_docs(100, 3)}, tok, tmp_path, shard_tokens=200, progress=False)
    assert len(list(tmp_path.glob("train_*.bin"))) > 2
    (tmp_path / "notes_0001.bin").write_bytes(b"")  # someone else's file survives
    index = write_shards({"train": make_docs(5, 4)}, tok, tmp_path, shard_tokens=10**6,
                         progress=False)
    assert [p.name for p in tmp_path.glob("train_*.bin")] == ["train_0000.bin"]
    assert (tmp_path / "notes_0001.bin").exists() and index.documents("train") == 5


def test_dtype_choice(tmp_path):
    assert dtype_for(4096) == "uint16" and dtype_for(65536) == "uint16"
    assert dtype_for(65537) == "uint32"
    # A real tokenizer with more than 65536 ids: the bytes plus every two-letter pair of a
    # 260-symbol alphabet as extra tokens (not BPE-learned, but tiktoken encodes with it).
    alphabet = [chr(c).encode() for c in range(0x100, 0x100 + 260)]
    ranks = {bytes([i]): i for i in range(256)}
    for a in alphabet:
        ranks.setdefault(a, len(ranks))
    for a in alphabet:
        for b in alphabet:
            ranks.setdefault(a + b, len(ranks))
    big = Tokenizer(ranks)
    assert big.vocab_size > 65536
    text = "".join(chr(c) for c in range(0x100 + 250, 0x100 + 260))
    ids = big.encode(text)
    assert max(ids) > 65535
    index = write_shards({"train": [text, "plain"]}, big, tmp_path, progress=False)
    assert index.dtype == "uint32"
    stream = np.concatenate(open_split(tmp_path, "train")).tolist()
    assert stream == [big.eot_id] + ids + [big.eot_id] + big.encode("plain")
    assert big.decode(stream) == f"{ENDOFTEXT}{text}{ENDOFTEXT}plain"


def test_index_errors(tmp_path, tok):
    with pytest.raises(InputError, match="no shard index"):
        ShardIndex.load(tmp_path)
    write_shards({"train": make_docs(30, 5), "val": make_docs(3, 6)}, tok, tmp_path,
                 shard_tokens=100, progress=False)
    with pytest.raises(InputError, match="no split 'test'"):
        open_split(tmp_path, "test")
    index_path = tmp_path / "index.json"
    good = index_path.read_text()

    shard = tmp_path / "train_0001.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-2])  # one token short
    with pytest.raises(InputError, match=r"train_0001.bin: size .* disagrees"):
        open_split(tmp_path, "train")
    shard.unlink()
    with pytest.raises(InputError, match="train_0001.bin: shard file listed in index.json is"):
        ShardIndex.load(tmp_path)
    shard.write_bytes(data)
    assert ShardIndex.load(tmp_path).tokens("val") > 0

    index_path.write_text(good[:-20])
    with pytest.raises(InputError, match="index.json:.*invalid JSON"):
        ShardIndex.load(tmp_path)
    bad = json.loads(good)
    bad["format"] = "something-else"
    index_path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="format is 'something-else'"):
        ShardIndex.load(tmp_path)
    bad = json.loads(good)
    del bad["splits"]["train"][0]["tokens"]
    index_path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="malformed shard index"):
        ShardIndex.load(tmp_path)
    bad = json.loads(good)
    bad["splits"]["train"][0]["file"] = "../escape_0000.bin"
    index_path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="bad shard entry"):
        ShardIndex.load(tmp_path)


def test_cli_tokenize(tmp_path, tok, capsys):
    from gptlab.data.tokenize import main

    data = tmp_path / "data"
    data.mkdir()
    train, val = make_docs(40, 7), make_docs(5, 8)
    for name, docs in (("train", train), ("val", val)):
        (data / f"{name}.jsonl").write_text("".join(
            json.dumps({"text": d, "source": "test", "id": i}) + "\n" for i, d in enumerate(docs)))
    out = tmp_path / "shards"
    assert main(["--data", str(data), "--tokenizer", tok.path, "--out", str(out),
                 "--shard-tokens", "300", "--quiet"]) == 0
    printed = capsys.readouterr().out
    index = ShardIndex.load(out)
    assert f"train: {index.tokens('train'):,} tokens in 40 documents" in printed
    assert index.documents("val") == 5 and index.tokenizer == tok.path
    assert np.concatenate(open_split(out, "val")).tolist() == [
        t for d in val for t in [tok.eot_id] + tok.encode(d)]


def test_cli_tokenize_errors(tmp_path, tok):
    from gptlab.data.tokenize import main

    with pytest.raises(InputError, match="train.jsonl: file not found"):
        main(["--data", str(tmp_path), "--tokenizer", tok.path, "--out", str(tmp_path / "o")])
    (tmp_path / "train.jsonl").write_text('{"text": "fine"}\n\n{"text": "fine"\n')
    with pytest.raises(InputError, match=r"train.jsonl:3: line is not valid JSON"):
        main(["--data", str(tmp_path), "--tokenizer", tok.path, "--out", str(tmp_path / "o"),
              "--quiet"])
    assert not (tmp_path / "o" / "index.json").exists()  # a failed run leaves no index
    with pytest.raises(InputError, match="not a tokenizer folder"):
        main(["--data", str(tmp_path), "--tokenizer", str(tmp_path / "none")])
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
