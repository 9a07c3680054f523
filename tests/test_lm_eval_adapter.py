"""lm-evaluation-harness runs a gptlab model through the adapter on local YAML tasks + JSONL data
in tmp_path (no network): multiple choice (loglikelihood), perplexity (loglikelihood_rolling) and
generation (generate_until), each cross-checked against gptlab's own scoring of the same text."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("lm_eval")

from gptlab.eval.bpb import text_bits_per_byte
from gptlab.eval.multiple_choice import choice_logprobs
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tokenizer.bpe import Tokenizer

TEXT = "The cat sat on the mat. The dog ran to the park. One two three four five six.\n" * 30
DOCS = [
    {"question": "The cat sat on the", "choices": ["mat", "park", "dog"], "label": 0, "text": "The dog ran."},
    {"question": "The dog ran to the", "choices": ["cat", "park", "six"], "label": 1, "text": "One two three."},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    tok = Tokenizer.train([TEXT], 300)
    tok.save(root / "runs" / "x" / "tokenizer", hf=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, n_kv_head=1,
                      intermediate_size=64, max_seq_len=64)
    save_model(root / "runs" / "x" / "base", GPT(cfg))
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    tasks = root / "tasks"
    tasks.mkdir()
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (tasks / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n")
    (tasks / "tiny_ppl.yaml").write_text(
        "task: tiny_ppl\n" + common + "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\nmetric_list:\n  - metric: word_perplexity\n")
    (tasks / "tiny_gen.yaml").write_text(
        "task: tiny_gen\n" + common + "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{choices[label]}}'\ngeneration_kwargs:\n  until: ['.']\n  max_gen_toks: 8\n"
        "  do_sample: false\nmetric_list:\n  - metric: exact_match\n")
    return root


def test_harness_runs_all_three_request_types(setup, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from gptlab.eval.lm_eval_adapter import GptlabLM

    lm = GptlabLM(setup / "runs" / "x" / "base", device="cpu")
    tm = TaskManager(include_path=str(setup / "tasks"), include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_mc", "tiny_ppl", "tiny_gen"], task_manager=tm,
                                  bootstrap_iters=0, log_samples=True)
    res = out["results"]
    assert 0.0 <= res["tiny_mc"]["acc,none"] <= 1.0
    assert res["tiny_ppl"]["word_perplexity,none"] > 1.0
    assert 0.0 <= res["tiny_gen"]["exact_match,none"] <= 1.0

    # The harness's numbers are gptlab's own: same log-likelihoods, same perplexity, same text.
    model, tok = lm.model, lm.tok
    for s in out["samples"]["tiny_mc"]:
        doc = s["doc"]
        ctx = [tok.eot_id] + tok.encode(doc["question"])
        ours = [lp for lp, _ in choice_logprobs(model, ctx, [tok.encode(" " + c) for c in doc["choices"]])]
        theirs = [r[0][0] for r in s["resps"]]
        assert theirs == pytest.approx(ours, abs=1e-4)
        assert s["acc"] == float(max(range(3), key=lambda i: ours[i]) == doc["label"])
    for s in out["samples"]["tiny_ppl"]:
        r = text_bits_per_byte(model, tok, s["doc"]["text"])
        assert s["resps"][0][0] == pytest.approx(-r["nats_per_token"] * r["tokens"], rel=1e-5)
    for s in out["samples"]["tiny_gen"]:
        assert "." not in s["resps"][0][0]


def test_generate_until_cuts_at_stop_string(setup):
    from gptlab.eval.lm_eval_adapter import GptlabLM

    class Req:
        def __init__(self, *args):
            self.args = args

    lm = GptlabLM(setup / "runs" / "x" / "base", device="cpu")
    full = lm.generate_until([Req("The cat", {"until": [], "max_gen_toks": 12})])[0]
    assert full  # a random model writes something
    stop = full[len(full) // 2]
    cut = lm.generate_until([Req("The cat", {"until": [stop], "max_gen_toks": 12})])[0]
    assert cut == full[: full.index(stop)]
    # what greedy decoding wrote is, by definition, the greedy continuation
    first = lm.tok.decode(lm.tok.encode(full)[:1])
    ((ll, greedy),) = lm.loglikelihood([Req("The cat", first)])
    assert greedy and ll < 0 and math.isfinite(ll)
