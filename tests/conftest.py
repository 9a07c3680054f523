"""Fixtures shared by several test modules (pytest finds them here by name)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gptlab.data.shards import write_shards
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT

SHAKESPEARE_LINES = (
    "ROMEO: But soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n"
    "ROMEO: Shall I hear more, or shall I speak at this?\n"
    "JULIET: 'Tis but thy name that is my enemy.\nThou art thyself, though not a Montague.\n"
).strip().split("\n")


@pytest.fixture(scope="module")
def shards_corpus(tmp_path_factory) -> Path:
    """A 300-token BPE (root/tokenizer) and train/val shards (root/shards) of Shakespeare-ish
    documents, made once per module: what a pretraining run needs, in a second."""
    from gptlab.tokenizer.bpe import Tokenizer

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = SHAKESPEARE_LINES
    docs = [
        "\n".join(lines[i % len(lines)] for i in range(s, s + k))
        for s, k in zip(rng.integers(0, len(lines), 150), rng.integers(1, 5, 150))
    ]
    tok = Tokenizer.train(docs, 300)
    tok.save(root / "tokenizer")
    write_shards({"train": docs[:130], "val": docs[130:]}, tok, root / "shards", progress=False)
    return root


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is faster than two on a shared machine (and never thrashes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the web-page tests (chat page, ranking page), or a skip when
    Playwright or Chromium is absent (`.ci/run` installs Debian's Chromium, so CI runs them)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no chromium browser installed")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        except Exception as e:  # noqa: BLE001 - a broken browser install is a skip, not a failure
            pytest.skip(f"chromium does not start under playwright: {e}")
        yield b
        b.close()


def lively_gpt(vocab_size: int, max_seq_len: int) -> GPT:
    """A 2-layer GPT whose replies depend on the prompt: at the 0.02 init a fresh model writes
    nearly one reply to every question, so its matrices are scaled up 8x (seeded, eval mode)."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab_size, n_layer=2, n_embd=48, n_head=2, n_kv_head=2,
                      intermediate_size=96, max_seq_len=max_seq_len)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for w in model.parameters():
            if w.dim() >= 2:
                w.mul_(8)
    return model
