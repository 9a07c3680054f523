"""The Hugging Face export encodes and decodes exactly like our tiktoken-based tokenizer."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples
from gptlab.tokenizer.hf_export import byte_to_unicode, vocab_and_merges
from gptlab.tokenizer.special import ENDOFTEXT, PAD, SPECIAL_TOKENS

MULTILINGUAL = [
    "Hello, world! It's a test: we'll see.\n\nNew paragraph   with   spaces.\t\tTabs.",
    "def add(a, b):\n    return a + b  # sum\n\n\nprint(add(2, 40))\r\n",
    "Numbers: 3.14159, 1,234,567 and 0xFF; 2024-03-15 12:00. 99999999999",
    "中文分词测试：人工智能是计算机科学的一个分支。",
    "한국어 텍스트를 토큰으로 나눕니다.",
    "مرحبا بالعالم، هذا اختبار.",
    "Emoji 🎉👍🏽👨‍👩‍👧‍👦 🇯🇵 and symbols ∑∫√ ≠ ≤ ™ ©",
    "   leading spaces, trailing spaces   ",
    "\n\n\n\n", " ", "",
    "line one\nline two\r\nline three\rend",
    "CAPS and MiXeD case, don't, DON'T, y'all're",
]


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    samples = "".join(builtin_samples().values())
    pools = [(0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x2FF), (0x4E00, 0x4E7F), (0xAC00, 0xAC7F),
             (0x600, 0x6FF), (0x1F300, 0x1F64F)]
    out = []
    for _ in range(n):
        if rng.random() < 0.5:  # a random slice of real multilingual text
            i = rng.randrange(len(samples))
            out.append(samples[i:i + rng.randint(1, 300)])
        else:  # random code points, including whitespace runs
            chars = []
            for _ in range(rng.randint(1, 120)):
                lo, hi = rng.choice(pools)
                chars.append(chr(rng.randint(lo, hi)) * rng.choice([1, 1, 1, 3]))
            out.append("".join(chars))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tokenizer trained on multilingual text (so merges exist in every script), saved."""
    texts = list(builtin_samples().values()) * 3 + MULTILINGUAL
    tok = Tokenizer.train(texts, 700)
    folder = tmp_path_factory.mktemp("tok")
    tok.save(folder)
    return tok, folder


def test_byte_to_unicode_is_gpt2s_table():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    assert byte_to_unicode() == bytes_to_unicode()
    assert byte_to_unicode()[32] == "Ġ" and byte_to_unicode()[10] == "Ċ"


def test_merges_cover_every_split(exported):
    tok, _ = exported
    vocab, merges = vocab_and_merges(tok.mergeable_ranks)
    assert len(vocab) == len(tok.mergeable_ranks)
    assert set(vocab.values()) == set(range(len(tok.mergeable_ranks)))
    produced = {left + right for left, right in merges}
    multi = {s for s, i in vocab.items() if i >= 256}
    assert multi <= produced  # every merged token can be built


def test_files_written(exported):
    _, folder = exported
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["eos_token"] == ENDOFTEXT and config["pad_token"] == PAD
    assert config["clean_up_tokenization_spaces"] is False
    assert isinstance(config["model_max_length"], int)
    special_map = json.loads((folder / "special_tokens_map.json").read_text())
    assert set(special_map["additional_special_tokens"]) == set(SPECIAL_TOKENS) - {ENDOFTEXT, PAD}


def test_tokenizers_library_matches(exported):
    from tokenizers import Tokenizer as HFTokenizer

    tok, folder = exported
    hf = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    assert hf.get_vocab_size() == tok.vocab_size
    for s in SPECIAL_TOKENS:
        assert hf.token_to_id(s) == tok.special_ids[s]
    texts = MULTILINGUAL + random_texts(300)
    got = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    want = tok.encode_batch(texts)
    for text, g, w in zip(texts, got, want):
        assert g == w, text
        assert hf.decode(g, skip_special_tokens=False) == text


def test_transformers_autotokenizer_matches(exported):
    tok, folder = exported
    for loader in (transformers.AutoTokenizer, transformers.PreTrainedTokenizerFast):
        hf = loader.from_pretrained(str(folder))
        assert hf.eos_token_id == tok.eot_id and hf.pad_token_id == tok.special_ids[PAD]
        assert len(hf) == tok.vocab_size
        for text in MULTILINGUAL + random_texts(60, seed=1):
            ids = hf.encode(text, add_special_tokens=False)
            assert ids == tok.encode(text), text
            assert hf.decode(ids) == text
        # Hugging Face always matches special-token text; ours does when allowed
        chat = f"{ENDOFTEXT}<|user|> hi there<|end|><|assistant|> 你好 🎉<|end|>"
        assert hf.encode(chat, add_special_tokens=False) == tok.encode(chat, allowed_special="all")
        assert hf.decode(tok.encode(chat, allowed_special="all")) == chat


def test_english_only_tokenizer_matches_on_unseen_scripts(tmp_path):
    """With no merges for a script, both fall back to single bytes identically."""
    from tokenizers import Tokenizer as HFTokenizer

    tok = Tokenizer.train([builtin_samples()["english"]] * 2, 400)
    tok.save(tmp_path)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in MULTILINGUAL:
        assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text)
