"""Reward model: batching, the Bradley-Terry loss, the report, and a planted-signal training run."""

from __future__ import annotations

import json
import random

import pytest
import torch

from gptlab.algos import reward_model
from gptlab.data.preferences import Ranking, load_rankings, save_rankings
from gptlab.eval import reward_pairs
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.stages import reward
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples

WORDS = ["the", "of", "and", "to", "in", "is", "was", "he", "for", "it", "with", "as", "his", "on", "be", "at", "by", "had", "not", "are", "but", "from"]
MARK = "truly splendid"  # the planted "better" phrase


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([builtin_samples()["english"]] * 2, 300)


def tiny_gpt(vocab: int, tie: bool = False) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab, n_layer=2, n_embd=32, n_head=2, n_kv_head=2, intermediate_size=64,
                      max_seq_len=64, tie_embeddings=tie)
    return GPT(cfg)


def planted(n: int, seed: int = 0) -> list[Ranking]:
    """K=3 answers: 2 marks > 1 mark > none, and each better answer is *shorter*, so the
    longer-answer-wins baseline gets every pair wrong and only the planted phrase can explain a win."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"question {i}: " + " ".join(rng.choices(WORDS, k=4))}]
        best = " ".join(rng.sample(rng.choices(WORDS, k=3) + [MARK] * 2, 5))
        texts = [best]
        for marks in (1, 0):
            words = rng.choices(WORDS, k=3) + [MARK] * marks
            while len(" ".join(words)) <= len(texts[-1]):
                words.append(rng.choice(WORDS))
            rng.shuffle(words)
            texts.append(" ".join(words))
        out.append(Ranking(prompt, [texts[2], texts[0], texts[1]], [1, 2, 0], {"source": "planted"}))
    return out


def test_collate_runs_each_sequence_once_and_indexes_pairs():
    groups = [([[1, 2, 3], [1, 4]], [(0, 1)]), ([[1, 4], [5]], [(1, 0)])]  # [1, 4] appears twice
    idx, last, chosen, rejected = reward_model.collate(groups, pad_id=0)
    assert idx.tolist() == [[1, 2, 3], [1, 4, 0], [5, 0, 0]]
    assert last.tolist() == [2, 1, 0]
    assert chosen.tolist() == [0, 2] and rejected.tolist() == [1, 1]


def test_bt_loss_is_log2_at_zero_init_and_pairs_get_the_gradient(tok):
    model = reward_model.RewardModel(tiny_gpt(tok.vocab_size))
    enc = [(reward_model.prompt_key(r), reward_model.encode(tok, r, 64), r.pairs()) for r in planted(4)]
    batch = next(reward_model.PairBatches(enc, batch_pairs=6, pad_id=tok.token_id("<|pad|>")))
    loss, _ = reward_model.bt_loss(model, batch)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)  # sigmoid(0) = 1/2
    assert batch[2].numel() == 6  # two whole prompts: 2 x 3 pairs
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0


def test_pair_batches_resume_at_the_same_batch(tok):
    enc = [(reward_model.prompt_key(r), reward_model.encode(tok, r, 64), r.pairs()) for r in planted(7)]
    a = reward_model.PairBatches(enc, 5, 0, seed=3)
    for _ in range(4):
        next(a)
    b = reward_model.PairBatches(enc, 5, 0, seed=3)
    b.load_state_dict(a.state_dict())
    for _ in range(5):  # crosses an epoch boundary
        assert all(torch.equal(x, y) for x, y in zip(next(a), next(b)))


def test_heldout_split_keeps_a_prompt_on_one_side():
    rs = planted(40)
    rs += [Ranking(r.prompt, ["a", "b"], [0, 1]) for r in rs[:10]]  # a second ranking per prompt
    train, held = reward_model.split_heldout(rs, 0.3, seed=1)
    assert len(train) + len(held) == len(rs) and 0 < len(held) < len(rs)
    assert not {reward_model.prompt_key(r) for r in train} & {reward_model.prompt_key(r) for r in held}


def test_heldout_split_by_ranking_spreads_one_prompts_rankings_over_both_sides():
    p = [{"role": "user", "content": "one topic"}]
    rs = [Ranking(p, [f"answer {i}a", f"answer {i}b"], [0, 1]) for i in range(60)]
    assert reward_model.split_heldout(rs, 0.3, seed=1)[1] in ([], rs)  # by prompt: all on one side
    train, held = reward_model.split_heldout(rs, 0.3, seed=1, by="ranking")
    assert len(train) + len(held) == 60 and 5 <= len(held) <= 30
    assert {reward_model.ranking_key(r) for r in train}.isdisjoint(reward_model.ranking_key(r) for r in held)
    assert reward_model.split_heldout(rs, 0.3, seed=1, by="ranking") == (train, held)  # stable


def test_pair_report_accuracy_auc_and_length_baseline():
    p = [{"role": "user", "content": "?"}]
    rs = [Ranking(p, ["long answer", "short"], [0, 1], {"source": "a"}),
          Ranking(p, ["x", "yy", "zzz"], [0, 1, 2], {"source": "b"})]
    scores = [[1.0, 0.0], [3.0, 2.0, 2.5]]  # pairs: +1 | +1, +0.5, -0.5
    rep = reward_pairs.pair_report(rs, scores)
    assert rep["pairs"] == 4 and rep["accuracy"] == pytest.approx(0.75)
    assert rep["longer_wins_baseline"] == pytest.approx(0.25)  # only the first pair's longer answer won
    assert rep["roc_auc"] == pytest.approx(0.875)  # +-diffs: 14 of 16 (pos, neg) pairs ordered, ties 1/2
    assert rep["by_source"]["a"]["accuracy"] == 1.0 and rep["beats_baselines"]


def test_pair_report_says_whether_the_margin_is_clear():
    p = [{"role": "user", "content": "?"}]
    rs = [Ranking(p, ["a" * (1 + i % 2), "b" * (2 - i % 2)], [0, 1], {"source": "s"}) for i in range(200)]
    perfect = reward_pairs.pair_report(rs, [[1.0, 0.0]] * 200)  # longer-wins 0.5 here: half the winners are longer
    assert perfect["longer_wins_baseline"] == pytest.approx(0.5) and perfect["clearly_beats_baselines"]
    assert perfect["margin_over_best_baseline"] == pytest.approx(0.5)
    longer = reward_pairs.pair_report(rs, [[float(len(r.responses[0])), float(len(r.responses[1]))] for r in rs])
    assert longer["accuracy"] == pytest.approx(0.5) and not longer["beats_baselines"]
    assert not longer["clearly_beats_baselines"] and longer["margin_ci95"][0] <= 0


def test_checkpoint_with_tied_embeddings_round_trips(tmp_path, tok):
    from gptlab.train import checkpoint as ckpt

    model = reward_model.RewardModel(tiny_gpt(tok.vocab_size, tie=True))
    torch.nn.init.normal_(model.head.weight)
    opt = torch.optim.AdamW(model.parameters())
    ckpt.save_checkpoint(tmp_path, model, opt, {"step": 0})
    other = reward_model.RewardModel(tiny_gpt(tok.vocab_size, tie=True))
    ckpt.load_checkpoint(tmp_path, other, torch.optim.AdamW(other.parameters()))
    assert torch.equal(other.head.weight, model.head.weight)
    assert other.trunk.lm_head.weight is other.trunk.embed_tokens.weight  # still tied


def train_planted(tmp_path, tok, n: int, *flags: str):
    """`reward train` from a random tiny SFT model on `n` planted rankings, a fifth held out -> rm folder."""
    save_model(tmp_path / "sft", tiny_gpt(tok.vocab_size))
    tok.save(tmp_path / "tokenizer")
    data = tmp_path / "planted.jsonl"
    save_rankings(data, planted(n))
    rm = tmp_path / "rm"
    assert reward.main(["train", "--from", str(tmp_path / "sft"), "--data", str(data), "--out", str(rm),
                        "--val-frac", "0.2", "--device", "cpu", "--dtype", "fp32", *flags]) == 0
    return rm


def test_planted_better_answer_is_learned_and_evaluated(tmp_path, tok):
    """The issue's check: chosen answers carry a phrase the rejected lack; a few dozen steps learn it."""
    rm = train_planted(tmp_path, tok, 120, "--steps", "40", "--lr", "3e-3", "--batch-pairs", "24",
                       "--eval-every", "20", "--log-every", "20")
    rep = json.loads((rm / "eval.json").read_text())
    assert rep["pairs"] >= 30 and rep["accuracy"] >= 0.95 and rep["roc_auc"] >= 0.95
    assert rep["longer_wins_baseline"] == 0.0 and rep["beats_baselines"]  # better answers are shorter
    assert {"model.safetensors", "config.json", "head.safetensors", "heldout.jsonl", "metrics.jsonl"} <= {
        p.name for p in rm.iterdir()}
    assert (rm / "checkpoint" / "train_state.json").exists()

    # `reward eval` on fresh planted rankings (new prompts), from the saved files alone
    fresh = tmp_path / "fresh.jsonl"
    save_rankings(fresh, planted(30, seed=99))
    assert reward.main(["eval", "--from", str(rm), "--data", str(fresh), "--out", str(tmp_path / "e.json"),
                        "--device", "cpu"]) == 0
    rep2 = json.loads((tmp_path / "e.json").read_text())
    assert rep2["pairs"] == 90 and rep2["accuracy"] >= 0.9
    model = reward_model.load_reward_model(rm)
    r = load_rankings(fresh)[0]
    s = reward_model.score_all(model, [reward_model.encode(tok, r, 64)], tok.token_id("<|pad|>"))[0]
    assert s[1] > s[2] > s[0] or s[1] > s[0]  # two marks beat none


def test_train_errors_are_one_line_input_errors(tmp_path, tok):
    from gptlab.errors import InputError

    with pytest.raises(InputError, match="tokenizer folder not found"):
        reward.main(["train", "--from", str(tmp_path / "missing"), "--data", "x.jsonl"])
    tok.save(tmp_path / "tokenizer")
    save_model(tmp_path / "sft", tiny_gpt(tok.vocab_size))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": 3, "rejected": "b"}\n')
    with pytest.raises(InputError) as e:
        reward.main(["train", "--from", str(tmp_path / "sft"), "--data", str(bad), "--out", str(tmp_path / "rm")])
    assert "bad.jsonl:2" in str(e.value)


def test_score_all_keeps_duplicates_in_place():
    """Two equal answers in a ranking (e.g. a sample equal to the reference) each get a score."""
    import torch

    from gptlab.algos.reward_model import score_all
    from gptlab.model.config import ModelConfig
    from gptlab.model.gpt import GPT
    from gptlab.model.heads import ScalarHeadModel

    torch.manual_seed(0)
    model = ScalarHeadModel(GPT(ModelConfig(vocab_size=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, max_seq_len=16)))
    torch.nn.init.normal_(model.head.weight)
    encoded = [[[1, 2, 3], [1, 2, 3], [4, 5]], [[4, 5]]]
    got = score_all(model, encoded, pad_id=0, batch_size=2)
    assert [len(g) for g in got] == [3, 1]
    assert got[0][0] == got[0][1] and got[0][2] == got[1][0] and got[0][0] != got[0][2]


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_head_lr_gives_the_scalar_head_its_own_group(tok, name):
    from gptlab.model.heads import ScalarHeadModel
    from gptlab.train.optim import build_optimizer

    model = ScalarHeadModel(tiny_gpt(tok.vocab_size))
    opt = build_optimizer(model, name, lr=1e-4, head_lr=1e-2, muon_lr=1e-4)
    lr_of = {id(p): g["base_lr"] for g in opt.param_groups for p in g["params"]}
    assert len(lr_of) == sum(len(g["params"]) for g in opt.param_groups)  # each parameter once
    assert len(lr_of) == len([p for p in model.parameters() if p.requires_grad])
    head = {id(model.head.weight), id(model.head.bias)}
    assert {lr_of[i] for i in head} == {1e-2}
    assert {v for k, v in lr_of.items() if k not in head} == {1e-4}
    plain = build_optimizer(model, name, lr=1e-4, muon_lr=1e-4)  # without it, one LR as before
    assert {g["base_lr"] for g in plain.param_groups} == {1e-4}


def test_a_short_window_reward_model_is_read_with_the_window_it_learned(tmp_path, tok):
    from gptlab.algos.ppo import rm_scores
    from gptlab.eval.judge import RewardScorer
    from gptlab.model.heads import keep_end
    from gptlab.tokenizer.chat import render_for_reward

    rm = train_planted(tmp_path, tok, 40, "--steps", "3", "--max-tokens", "24")
    assert json.loads((rm / "reward_config.json").read_text())["max_tokens"] == 24
    model = reward_model.load_reward_model(rm)
    assert model.max_tokens == 24 and model.config.max_seq_len == 64  # the trunk keeps its context
    conv = [{"role": "user", "content": "tell me a long story " * 3}, {"role": "assistant", "content": "once upon a time"}]
    ids = render_for_reward(tok, conv)
    assert 24 < len(ids) <= 64
    window = keep_end(ids, 24)
    want = model.score_at(torch.tensor([window]), torch.tensor([23])).item()
    assert rm_scores(model, tok, [conv], tok.token_id("<|pad|>"))[0] == pytest.approx(want, abs=1e-5)
    assert RewardScorer.load(rm, device="cpu").score([conv])[0] == pytest.approx(want, abs=1e-5)
    full = model.score_at(torch.tensor([ids]), torch.tensor([len(ids) - 1])).item()
    assert full != pytest.approx(want, abs=1e-6)  # the window is what changed the score


def test_resume_equals_uninterrupted(tmp_path, tok, monkeypatch):
    """Killed after step 4's checkpoint and resumed: the same weights, head, metrics and report."""
    from safetensors.torch import load_file

    from gptlab.train.tracker import read_metrics

    save_model(tmp_path / "sft", tiny_gpt(tok.vocab_size))
    tok.save(tmp_path / "tokenizer")
    save_rankings(tmp_path / "p.jsonl", planted(40))

    def train(out: str, *extra: str) -> int:
        return reward.main(["train", "--from", str(tmp_path / "sft"), "--data", str(tmp_path / "p.jsonl"),
                            "--out", str(tmp_path / out), "--val-frac", "0.2", "--device", "cpu", "--dtype", "fp32",
                            "--steps", "8", "--save-every", "4", "--eval-every", "3", "--log-every", "1",
                            "--batch-pairs", "6", *extra])

    assert train("ref") == 0
    calls = {"n": 0}
    real_next = reward_model.PairBatches.__next__

    def dying_next(self):  # the 6th batch never comes: step 4's checkpoint is the last
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_next(self)

    monkeypatch.setattr(reward_model.PairBatches, "__next__", dying_next)
    with pytest.raises(KeyboardInterrupt):
        train("run")
    monkeypatch.undo()
    assert json.loads((tmp_path / "run" / "checkpoint" / "train_state.json").read_text())["step"] == 4
    assert train("run", "--resume") == 0
    for name in ("model.safetensors", "head.safetensors"):
        a, b = load_file(str(tmp_path / "ref" / name)), load_file(str(tmp_path / "run" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    def records(out: str) -> list:
        return [(r["step"], r.get("loss"), r.get("val_pair_acc")) for r in read_metrics(tmp_path / out / "metrics.jsonl")]

    assert records("ref") == records("run")
    report = [json.loads((tmp_path / out / "eval.json").read_text()) for out in ("ref", "run")]
    assert report[0]["mean_margin"] == report[1]["mean_margin"] and report[0]["pairs"] > 0
