"""`gptlab eval diversity`: the metrics see mode collapse where it is built in by hand.

A "collapsed" model is a random GPT rewired so that one token wins every step (all embeddings
equal one vector v, and the LM head row of one token is a multiple of v): its samples are all the
same, its entropy is ~0. The random model beside it must score far more diverse.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gptlab.errors import InputError
from gptlab.eval.diversity import distinct_n
from gptlab.eval.diversity_cli import main as diversity_main
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tokenizer.bpe import Tokenizer

TEXT = ("What is 12 + 7? The answer is 19. Ada has 5 apples and gets 3 more. Compute 8 - 3. "
        "ROMEO: But soft, what light through yonder window breaks?\n") * 40


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    tok = Tokenizer.train([TEXT], 300)
    tok.save(root / "tokenizer", hf=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, n_kv_head=1,
                      intermediate_size=64, max_seq_len=96)
    save_model(root / "sft", GPT(cfg))
    collapsed = GPT(cfg)
    with torch.no_grad():
        v = torch.ones(cfg.n_embd)
        collapsed.embed_tokens.weight.copy_(v.expand_as(collapsed.embed_tokens.weight))
        collapsed.lm_head.weight.zero_()
        collapsed.lm_head.weight[tok.encode("e")[0]] = 5.0 * v
    save_model(root / "rl", collapsed)
    return root


def test_distinct_n_by_hand():
    assert distinct_n([[1, 1, 1, 1]], 1) == 0.25
    assert distinct_n([[1, 2, 1, 2]], 2) == 2 / 3
    assert distinct_n([[1]], 2) == 0.0  # no bigrams at all


def test_collapsed_model_scores_low_diversity(run, tmp_path):
    out = tmp_path / "div.json"
    argv = ["--run", str(run), "--tasks", "arithmetic", "--n-prompts", "4", "--samples", "3",
            "--max-new-tokens", "8", "--device", "cpu", "--out", str(out)]
    assert diversity_main(argv) == 0
    rep = json.loads(out.read_text())
    assert rep["prompts"] == 4 and set(rep["models"]) == {"sft", "rl"}  # found in the run folder
    sft, rl = rep["models"]["sft"], rep["models"]["rl"]
    assert rl["entropy"] < 0.01 and rl["identical_frac"] == 1.0
    assert rl["distinct_1"] < 0.1 and rl["distinct_2_within"] < 0.2
    assert sft["entropy"] > 4.0 and sft["identical_frac"] == 0.0
    assert sft["distinct_2"] > 3 * rl["distinct_2"]


def test_bad_model_spec_is_a_clear_error(run):
    with pytest.raises(InputError, match="NAME=PATH"):
        diversity_main(["--run", str(run), "--models", "justapath", "--device", "cpu"])
