"""Byte-level BPE: hand-worked example, equality with a pure-Python reference trainer, round
trips on arbitrary text, special-token safety, files, and the `gptlab tokenizer` commands."""

from __future__ import annotations

import json
import random
from collections import Counter
from itertools import pairwise

import pytest
import regex

from gptlab.errors import InputError
from gptlab.tokenizer.bpe import GPT4_PATTERN, NANOCHAT_PATTERN, Tokenizer
from gptlab.tokenizer.special import ENDOFTEXT, SPECIAL_TOKENS

N_SPECIAL = len(SPECIAL_TOKENS)

WORDS = [
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but",
    "have", "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we",
    "their", "can", "has", "more", "king", "queen", "lord", "good", "night", "love", "sweet",
    "death", "time", "world", "music", "river", "garden", "window", "tokenizer", "token",
    "merge", "byte", "pair", "encoding",
]


def make_corpus(n_words: int, seed: int) -> str:
    """Pseudo-English with Zipf-like word frequencies, punctuation, numbers and line breaks."""
    rng = random.Random(seed)
    weights = [1 / (k + 1) for k in range(len(WORDS))]
    out = []
    for i in range(n_words):
        w = rng.choices(WORDS, weights)[0]
        if rng.random() < 0.1:
            w = w.capitalize()
        out.append(w)
        r = rng.random()
        if r < 0.06:
            out.append(rng.choice([",", ".", "!", "?", ";", "'s"]))
        if r > 0.97:
            out.append(str(rng.randint(0, 99999)))
        if r > 0.95 and r <= 0.97:
            out.append("\n" if rng.random() < 0.7 else "\n\n")
    text = ""
    for tok in out:
        text += tok if tok in (",", ".", "!", "?", ";", "'s", "\n", "\n\n") or text.endswith("\n") \
            else " " + tok
    return text


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [make_corpus(400, seed) for seed in range(4)]


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return Tokenizer.train(corpus, 512)


# ------------------------------------------------------------------ reference implementation
def reference_train(texts: list[str], n_merges: int, pattern: str) -> dict[bytes, int]:
    """Textbook BPE (minbpe-style), with rustbpe's rules: pair counts over regex pieces weighted
    by piece frequency (overlapping pairs counted), most frequent pair first, ties to the
    smaller (left id, right id), merges applied left to right without overlap."""
    pieces = Counter(p.encode() for t in texts for p in regex.findall(pattern, t))
    words = [list(p) for p in pieces]
    freqs = list(pieces.values())
    vocab = {i: bytes([i]) for i in range(256)}
    for new_id in range(256, 256 + n_merges):
        pairs: Counter = Counter()
        for w, f in zip(words, freqs):
            for pair in pairwise(w):
                pairs[pair] += f
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        words = [merge(w, best, new_id) for w in words]
    return {b: i for i, b in vocab.items()}


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """merge([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]"""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def reference_encode(text: str, ranks: dict[bytes, int], pattern: str) -> list[int]:
    """Encode by replaying merges: repeatedly merge the adjacent pair whose merge came first."""
    merges = {}
    by_id = {i: b for b, i in ranks.items()}
    for i in range(256, len(ranks)):  # recover the (left, right) pair of each merge
        b = by_id[i]
        for k in range(1, len(b)):
            if b[:k] in ranks and b[k:] in ranks and ranks[b[:k]] < i and ranks[b[k:]] < i:
                merges.setdefault((ranks[b[:k]], ranks[b[k:]]), i)
    out = []
    for piece in regex.findall(pattern, text):
        ids = list(piece.encode())
        while len(ids) > 1:
            pair = min(pairwise(ids), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            ids = merge(ids, pair, merges[pair])
        out += ids
    return out


def test_merge_helper():
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5], (5, 5), 6) == [6, 5]


# ------------------------------------------------------------------ training
def test_hand_worked_example():
    """The lecture's aaabdaaabac: Z=aa, then Y=ab (ties with Za; smaller pair wins), X=ZY."""
    t = Tokenizer.train(["aaabdaaabac"], 256 + 3 + N_SPECIAL)
    assert [t.token_bytes(i) for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert t.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    assert t.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_same_merges_as_reference(corpus, tok):
    ref = reference_train(corpus, 512 - 256 - N_SPECIAL, GPT4_PATTERN)
    assert tok.mergeable_ranks == ref  # same tokens, learned in the same order


def test_reference_with_nanochat_pattern():
    texts = ["In 2024, 123456 apples cost $7890.12; in 1999, 31337 did. 42 42 42 4242"] * 3
    t = Tokenizer.train(texts, 256 + 40 + N_SPECIAL, pattern=NANOCHAT_PATTERN)
    assert t.mergeable_ranks == reference_train(texts, 40, NANOCHAT_PATTERN)
    assert t.pattern == NANOCHAT_PATTERN
    # digits are grouped by at most two, so no token holds three digits
    assert not any(regex.search(rb"\d{3}", b) for b in t.mergeable_ranks)


def test_same_encoding_as_reference(corpus, tok):
    held_out = make_corpus(300, seed=99) + "\nUnseen words: zyzzyva, 12345678, naïve café!\n"
    for text in [held_out, *corpus]:
        assert tok.encode(text) == reference_encode(text, tok.mergeable_ranks, GPT4_PATTERN)


def test_vocab_size_includes_specials(tok):
    assert tok.vocab_size == 512
    assert len(tok.mergeable_ranks) == 512 - N_SPECIAL
    assert list(tok.special_ids) == list(SPECIAL_TOKENS)
    assert list(tok.special_ids.values()) == list(range(512 - N_SPECIAL, 512))
    assert tok.eot_id == tok.token_id(ENDOFTEXT) == 512 - N_SPECIAL
    assert tok.stats["merges"] == tok.stats["requested_merges"] == 512 - 256 - N_SPECIAL
    with pytest.raises(KeyError):
        tok.token_id("<|nope|>")


def test_vocab_too_small_is_an_input_error():
    with pytest.raises(InputError, match="at least 267"):
        Tokenizer.train(["hello"], 266)


def test_small_text_gives_smaller_vocab():
    t = Tokenizer.train(["abab"], 1000)
    assert t.stats["merges"] < t.stats["requested_merges"]
    assert t.vocab_size == len(t.mergeable_ranks) + N_SPECIAL
    assert t.decode(t.encode("abab")) == "abab"


def test_train_accepts_a_generator_and_counts(corpus):
    t = Tokenizer.train((c for c in corpus), 300)
    assert t.stats["documents"] == len(corpus)
    assert t.stats["characters"] == sum(map(len, corpus))


# ------------------------------------------------------------------ encode / decode
TRICKY = [
    "", " ", "\n", "\r\n\r\n", "   \t  \n\n  x", "Hello, world!", "I'm can't we'll they've",
    "emoji 🎉👨‍👩‍👧‍👦🇯🇵 done", "中文分词测试", "한국어 텍스트", "مرحبا بالعالم", "naïve café Ω≈ç√",
    "1234567890 3.14159 -42 1e-5", "def f(x):\n    return x**2  # comment\n", "\x00\x01\x7f",
    "zero\u200bwidth", "a" * 1000, "  leading and trailing  ",
]


def random_text(rng: random.Random, n: int) -> str:
    pools = [(0x20, 0x7E), (0x0A, 0x0D), (0xA0, 0x24F), (0x4E00, 0x4FFF), (0xAC00, 0xACFF),
             (0x600, 0x6FF), (0x1F300, 0x1F64F), (0x0, 0x1F)]
    chars = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


def test_round_trip_tricky_and_random(tok):
    rng = random.Random(0)
    texts = TRICKY + [random_text(rng, rng.randint(1, 200)) for _ in range(200)]
    for text in texts:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode("utf-8")
        assert sum(tok.token_byte_lengths()[i] for i in ids) == len(text.encode("utf-8"))
    assert tok.encode_batch(texts, num_threads=2) == [tok.encode(t) for t in texts]


def test_every_byte_is_a_token(tok):
    for b in range(256):
        assert tok.token_bytes(b) == bytes([b])
        assert tok.decode_bytes([b]) == bytes([b])
    lengths = tok.token_byte_lengths()
    assert lengths[:256] == [1] * 256
    assert lengths[tok.eot_id:] == [0] * N_SPECIAL
    assert all(lengths[i] == len(tok.token_bytes(i)) for i in range(256, tok.eot_id))


def test_invalid_utf8_decodes_with_replacement(tok):
    cut = "中".encode()[:2]  # half a character
    ids = [cut[0], cut[1]]
    assert tok.decode_bytes(ids) == cut
    assert tok.decode(ids) == "\ufffd"
    assert tok.decode([0xFF, ord("a")]) == "\ufffda"


def test_special_text_is_plain_unless_allowed(tok):
    specials = set(tok.special_ids.values())
    for s in SPECIAL_TOKENS:
        text = f"before {s} after"
        plain = tok.encode(text)
        assert not specials & set(plain)
        assert tok.decode(plain) == text
        assert tok.encode(text, allowed_special="all") == (
            tok.encode("before ") + [tok.special_ids[s]] + tok.encode(" after"))
        assert tok.encode(text, allowed_special={s})[len(tok.encode("before ")):][0] == \
            tok.special_ids[s]
        assert tok.decode(tok.encode(text, allowed_special="all")) == text
    # allowing one special does not allow the others
    mixed = f"{ENDOFTEXT}<|user|>"
    ids = tok.encode(mixed, allowed_special={ENDOFTEXT})
    assert ids[0] == tok.eot_id and tok.special_ids["<|user|>"] not in ids
    batch = tok.encode_batch([mixed, mixed], allowed_special="all")
    assert batch[0] == [tok.eot_id, tok.special_ids["<|user|>"]] == batch[1]
    assert not specials & set(tok.encode_batch([mixed])[0])


# ------------------------------------------------------------------ files
def test_save_load_round_trip(tmp_path, tok):
    folder = tmp_path / "tok"
    written = tok.save(folder, hf=False)
    assert {p.name for p in written} == {"tokenizer.tiktoken", "gptlab_tokenizer.json"}
    assert not list(folder.glob(".*tmp"))  # no temp files left behind
    loaded = Tokenizer.load(folder)
    assert loaded.mergeable_ranks == tok.mergeable_ranks
    assert loaded.special_ids == tok.special_ids and loaded.pattern == tok.pattern
    assert loaded.vocab_size == tok.vocab_size and loaded.eot_id == tok.eot_id
    assert loaded.stats == tok.stats and loaded.path == str(folder)
    text = make_corpus(100, seed=5)
    assert loaded.encode(text) == tok.encode(text)
    meta = json.loads((folder / "gptlab_tokenizer.json").read_text())
    assert meta["vocab_size"] == 512 and meta["special_tokens"][ENDOFTEXT] == tok.eot_id
    # the rank file is tiktoken's own format
    from tiktoken.load import load_tiktoken_bpe

    assert load_tiktoken_bpe(str(folder / "tokenizer.tiktoken")) == tok.mergeable_ranks


def test_load_errors(tmp_path, tok):
    with pytest.raises(InputError, match="no such folder"):
        Tokenizer.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a tokenizer folder"):
        Tokenizer.load(tmp_path / "empty")
    folder = tmp_path / "tok"
    tok.save(folder, hf=False)
    ranks = folder / "tokenizer.tiktoken"
    lines = ranks.read_text().splitlines(keepends=True)
    ranks.write_text("".join(lines[:300] + ["not-base64!! 300\n"] + lines[301:]))
    with pytest.raises(InputError, match=r"tokenizer.tiktoken:301: expected"):
        Tokenizer.load(folder)
    ranks.write_text("".join(lines[:300]))  # truncated: vocab_size no longer agrees
    with pytest.raises(InputError, match="disagrees"):
        Tokenizer.load(folder)
    ranks.write_text("".join(lines))
    (folder / "gptlab_tokenizer.json").write_text("{broken")
    with pytest.raises(InputError, match="invalid JSON"):
        Tokenizer.load(folder)


# ------------------------------------------------------------------ show / eval
def test_show_render(tok):
    from gptlab.tokenizer.show import SEPARATOR, render, token_label

    text = "Hello world, the king!"
    shown = render(tok, text, color=False)
    assert shown.text.replace(SEPARATOR, "") == text
    assert shown.text.count(SEPARATOR) == len(shown.ids) - 1 and shown.ids == tok.encode(text)
    colored = render(tok, text + ENDOFTEXT, color=True)
    assert "\x1b[" in colored.text and colored.ids[-1] == tok.eot_id
    assert len(set(regex.findall(r"48;5;(\d+)m", colored.text))) > 1  # alternating colours
    assert token_label("中".encode()[:1]) == "\\xe4"
    chinese = render(tok, "中文", color=False)  # no Chinese merges: one token per byte
    assert chinese.summary == "6 tokens, 6 bytes, 1.00 bytes/token"
    assert chinese.text.split(SEPARATOR)[:3] == ["\\xe4", "\\xb8", "\\xad"]


def test_evaluate_shows_english_tokenizer_is_poor_at_chinese(tok):
    from gptlab.tokenizer.evaluate import builtin_samples, evaluate, table

    samples = builtin_samples()
    assert {"english", "python", "numbers", "chinese", "emoji"} <= set(samples)
    rows = {r.kind: r for r in evaluate(tok, samples)}
    assert rows["chinese"].bytes_per_token < 1.1  # ~one token per byte: no Chinese merges
    assert rows["english"].bytes_per_token > 1.5 * rows["chinese"].bytes_per_token
    assert rows["english"].tokens == len(tok.encode(samples["english"]))
    assert "chinese" in table(list(rows.values()))


# ------------------------------------------------------------------ CLI
def test_cli_train_show_eval(tmp_path, corpus, capsys):
    from gptlab.tokenizer.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(
        "".join(json.dumps({"text": t, "source": "x", "id": i}) + "\n"
                for i, t in enumerate(corpus)))
    (data / "val.jsonl").write_text(json.dumps({"text": make_corpus(200, 7)}) + "\n")
    out = tmp_path / "tok"
    assert main(["train", "--data", str(data), "--vocab-size", "400", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vocab size 400" in printed and "bytes/token" in printed
    t = Tokenizer.load(out)
    assert t.vocab_size == 400 and t.stats["val_bytes_per_token"] > 1.5

    assert main(["show", "--tokenizer", str(out), "--no-color", "the", "king"]) == 0
    printed = capsys.readouterr().out
    assert "ids: " + str(t.encode("the king")) in printed and "\x1b[" not in printed

    assert main(["eval", "--tokenizer", str(out), "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "eval.json").read_text())
    kinds = [r["kind"] for r in report["rows"]]
    assert "chinese" in kinds and "val.jsonl" in kinds and "chinese" in printed


def test_cli_train_writes_the_hugging_face_files_on_a_plain_install(tmp_path, corpus, capsys):
    """The runbook's last line is `gptlab export`, which needs tokenizer.json: `pip install -e .`
    must bring the `tokenizers` library (a base dependency, not the `hf` extra), so this test
    fails, rather than skips, on an install that would leave the export broken."""
    from gptlab.tokenizer.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus))
    out = tmp_path / "tok"
    assert main(["train", "--data", str(data), "--vocab-size", "300", "--out", str(out)]) == 0
    assert "not installed" not in capsys.readouterr().out
    hf = json.loads((out / "tokenizer.json").read_text())
    assert len(hf["model"]["vocab"]) + len(hf["added_tokens"]) >= 300
    assert (out / "tokenizer_config.json").exists()


def test_cli_train_from_input_files_with_max_chars(tmp_path, corpus):
    from gptlab.tokenizer.cli import main
    from gptlab.tokenizer.train_cli import limit_chars

    assert list(limit_chars(["abcd", "efgh", "ij"], 6)) == ["abcd", "ef"]
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, text in enumerate(corpus):
        (folder / f"{i}.txt").write_text(text)
    out = tmp_path / "tok"
    assert main(["train", "--input", str(folder), "--vocab-size", "300", "--max-chars", "500",
                 "--out", str(out), "--data", str(tmp_path / "nodata")]) == 0
    t = Tokenizer.load(out)
    assert t.stats["characters"] == 500 and t.stats["documents"] == 1


def test_cli_errors(tmp_path):
    from gptlab.tokenizer.cli import main

    with pytest.raises(InputError, match="train.jsonl: file not found"):
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "t")])
    (tmp_path / "train.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(InputError, match=r"train.jsonl:2: expected an object"):
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "t")])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff\xfe")
    with pytest.raises(InputError, match="bad.txt: not valid UTF-8"):
        main(["train", "--input", str(bad), "--out", str(tmp_path / "t")])
    with pytest.raises(InputError, match="not a tokenizer folder"):
        main(["show", "--tokenizer", str(tmp_path), "x"])


@pytest.mark.parametrize("sub", [[], ["train"], ["show"], ["eval"]])
def test_cli_help(sub, capsys):
    from gptlab.tokenizer.cli import main

    if not sub:  # the group lists its commands and returns
        assert main(["--help"]) == 0
    else:  # a command's parser prints its options and exits
        with pytest.raises(SystemExit) as e:
            main([*sub, "--help"])
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: gptlab tokenizer" in out
    if not sub:
        assert all(name in out for name in ("train", "show", "eval"))
