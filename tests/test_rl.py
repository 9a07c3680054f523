"""RL stages (PPO, GRPO, DPO) on a tiny random model, tokenizer and reward model in tmp_path.

A random model cannot show RL improving a real reward; that is the tiny run's job (runs/tiny_cpu.sh).
These tests pin the invariants that catch silent bugs: the DPO loss is log 2 at the start, GRPO's
advantages are centred per group, PPO with lr = 0 changes nothing and measures KL = 0, the log-probs
line up with the tokens generated, a resumed run equals an uninterrupted one, and a GRPO step moves
probability toward the replies with above-average reward.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gptlab.algos import dpo, grpo, ppo, rollout
from gptlab.algos.reward_model import conversation
from gptlab.errors import InputError
from gptlab.infer.loading import load_for_inference, make_engine
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.heads import ScalarHeadModel
from gptlab.model.io import save_model
from gptlab.stages import rl
from gptlab.stages.rl import dpo as dpo_cmd
from gptlab.tasks.base import Item, Task
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat import render_prompt
from gptlab.tokenizer.special import PAD

TEXT = (
    "What is 12 + 7? Let me compute that. The answer is 19. Ada has 5 apples and gets 3 more. "
    "Calculate 37 * 12. Compute 8 - 3. ROMEO: But soft, what light through yonder window breaks?\n"
) * 40
FAST = ["--device", "cpu", "--dtype", "fp32", "--tasks", "arithmetic", "--train-prompts", "40",
        "--eval-prompts", "4", "--max-new-tokens", "8", "--prompts-per-iter", "4", "--minibatch", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """runs/x: tokenizer (vocab 300), sft (random 2-layer GPT), rm (another one + a random head), rankings."""
    root = tmp_path_factory.mktemp("run")
    tok = Tokenizer.train([TEXT], 300)
    tok.save(root / "tokenizer", hf=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, n_kv_head=1,
                      intermediate_size=64, max_seq_len=96, dropout=0.1)
    save_model(root / "sft", GPT(cfg))
    rm = ScalarHeadModel(GPT(cfg))
    torch.nn.init.normal_(rm.head.weight, std=0.5)
    save_model(root / "rm", rm.trunk)
    rm.save_head(root / "rm")
    (root / "rankings").mkdir()
    with open(root / "rankings" / "rule.jsonl", "w") as f:
        for i in range(30):
            rec = {"prompt": f"What is {i} + {i + 1}?", "responses": [f"The answer is {2 * i + 1}.", f"It is {i}.", "no"],
                   "ranking": [0, 1, 2]}
            f.write(json.dumps(rec) + "\n")
    return root


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- the math


def test_dpo_loss_is_log2_when_policy_equals_reference(run):
    model, tok = load_for_inference(run / "sft", device="cpu")
    model.requires_grad_(True)  # loaded frozen, for inference; this test trains it
    rankings = dpo_cmd.rankings(dpo_cmd.DPOArgs(data=(run / "rankings/rule.jsonl",)))
    pairs, dropped = dpo.ranking_pairs(tok, rankings, 96, conversation)
    assert len(pairs) == 30 * 3 and dropped == 0  # K = 3 -> 3 pairs per ranking
    batch = dpo.collate(pairs[:6], tok.token_id(PAD))
    loss, metrics = dpo.make_dpo_loss(copy.deepcopy(model), beta=0.1)(model, batch)
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-6)
    assert float(metrics["kl"]) == 0.0 and float(metrics["reward"]) == 0.0
    loss.backward()  # and it has a gradient toward the chosen replies
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_dpo_scores_a_cut_reply_without_the_end_of_turn_the_template_adds(run):
    from gptlab.data.preferences import Ranking

    _, tok = load_for_inference(run / "sft", device="cpu")
    end = tok.token_id("<|end|>")
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    flags = {"ended": [True, False]}  # the rejected answer ran out of tokens mid-reply
    r = Ranking(prompt, ["The answer is 5.", "Let me compute that. It is"], [0, 1], flags)
    (pair,), _ = dpo.ranking_pairs(tok, [r], 96, conversation)
    chosen, rejected = [t for t in pair.chosen[1] if t != -1], [t for t in pair.rejected[1] if t != -1]
    assert chosen[-1] == end  # an answer that ended is scored with its end of turn
    assert end not in rejected and rejected == tok.encode("Let me compute that. It is")
    unknown = Ranking(prompt, r.responses, [0, 1])  # no flags (a person's file): both ended
    (old,), _ = dpo.ranking_pairs(tok, [unknown], 96, conversation)
    assert [t for t in old.rejected[1] if t != -1][-1] == end


def test_dpo_nll_term_adds_the_chosen_replies_nll_and_raises_their_likelihood(run):
    from gptlab.train.optim import build_optimizer

    model, tok = load_for_inference(run / "sft", device="cpu")
    model.requires_grad_(True)
    rankings = dpo_cmd.rankings(dpo_cmd.DPOArgs(data=(run / "rankings/rule.jsonl",)))
    batch = dpo.collate(dpo.ranking_pairs(tok, rankings, 96, conversation)[0][:6], tok.token_id(PAD))
    ref = copy.deepcopy(model)
    plain, m = dpo.make_dpo_loss(ref, beta=0.1)(model, batch)
    mixed, _ = dpo.make_dpo_loss(ref, beta=0.1, nll_coef=0.5)(model, batch)
    expected = float(plain.detach()) + 0.5 * float(m["chosen_nll"])
    assert float(m["chosen_nll"]) > 0 and float(mixed.detach()) == pytest.approx(expected, rel=1e-5)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.0)
    mixed.backward()
    opt.step()
    _, after = dpo.make_dpo_loss(ref, beta=0.1)(model, batch)
    assert float(after["chosen_nll"]) < float(m["chosen_nll"])  # the chosen replies became more likely


def test_grpo_advantages_sum_to_zero_per_group():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(5, 8, generator=g)
    rewards[2] = 1.0  # a group with no signal
    adv = grpo.group_advantages(rewards)
    assert torch.allclose(adv.sum(1), torch.zeros(5), atol=1e-5)
    assert torch.equal(adv[2], torch.zeros(8))
    # standardised: unit (sample) std in every group with signal, order kept
    assert torch.allclose(adv[[0, 1, 3, 4]].std(1), torch.ones(4), atol=1e-3)
    assert torch.equal(adv[0].argsort(), rewards[0].argsort())


def test_gae_equals_discounted_sum_of_td_errors():
    torch.manual_seed(0)
    B, T, gamma, lam = 3, 7, 0.9, 0.8
    rewards, values = torch.randn(B, T), torch.randn(B, T)
    valid = torch.zeros(B, T)
    spans = [(1, 6), (0, 7), (3, 4)]  # each row's episode: prompt before, padding after
    for b, (lo, hi) in enumerate(spans):
        valid[b, lo:hi] = 1
    adv, ret = ppo.gae(rewards, values, valid, gamma, lam)
    for b, (lo, hi) in enumerate(spans):

        def v(i: int, b: int = b, hi: int = hi) -> float:
            return float(values[b, i]) if i < hi else 0.0  # the value after the episode is 0

        for t in range(lo, hi):
            want = sum((gamma * lam) ** (i - t) * (float(rewards[b, i]) + gamma * v(i + 1) - v(i)) for i in range(t, hi))
            assert float(adv[b, t]) == pytest.approx(want, abs=1e-5)
            assert float(ret[b, t]) == pytest.approx(want + v(t), abs=1e-5)
        assert float(adv[b, :lo].abs().sum() + adv[b, hi:].abs().sum()) == 0.0


def test_packed_logprobs_line_up_with_greedy_tokens_and_forced_spans_are_masked(run):
    model, tok = load_for_inference(run / "sft", device="cpu")
    engine = make_engine(model, tok, max_batch=4)
    prompts = [render_prompt(tok, [{"role": "user", "content": f"What is {i} + 3?"}]) for i in range(4)]
    ro = rollout.generate(engine, prompts, 10, temperature=0.0)
    rows = ro.pack(tok, tok.token_id(PAD))
    logp, entropy = rollout.token_logprobs(model, rows["idx"], rows["targets"])
    logits = model(rows["idx"]).float().log_softmax(-1)
    m = rows["mask"].bool()
    assert int(m.sum()) == ro.tokens  # no tool spans in these replies: every token was chosen
    # Greedy decoding chose the argmax: its log-prob is the row's max wherever the mask is on.
    assert torch.allclose(logp[m], logits.max(-1).values[m], atol=1e-5)
    assert (entropy[m] > 0).all() and (entropy[~m] == 0).all()
    for b, r in enumerate(ro.replies):
        assert rows["targets"][b, rows["last"][b]].item() == r[-1]
    # A reply with a tool call: the forced result span is not the policy's action.
    ids = lambda s: tok.encode(s, allowed_special="all")
    reply = ids("Let me<|tool_call|>calculator: 2+3<|tool_call_end|>") + ids("<|tool_result|>5<|tool_result_end|>")
    reply += ids("It is 5.<|end|>")
    fm = rollout.forced_mask(tok, reply)
    start = reply.index(tok.token_id("<|tool_result|>"))
    end = reply.index(tok.token_id("<|tool_result_end|>"))
    assert fm == [1] * start + [0] * (end - start + 1) + [1] * (len(reply) - end - 1)


def test_logprobs_on_target_positions_equal_the_full_logits_and_carry_gradients():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, n_layer=2, n_embd=32, n_head=4, n_kv_head=4, intermediate_size=64,
                            max_seq_len=16))
    idx = torch.randint(0, 50, (3, 12))
    targets = torch.full((3, 12), -1)
    targets[0, 4:9], targets[1, 0:12], targets[2, 11:] = idx[0, 5:10], torch.randint(0, 50, (12,)), 7
    logp, entropy = rollout.token_logprobs(model, idx, targets)
    full = model(idx).float().log_softmax(-1)
    keep = targets >= 0
    want = full.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * keep
    assert torch.allclose(logp, want, atol=1e-5)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1) * keep, atol=1e-5)
    logp.sum().backward()  # the head's gradient reaches the weights through the kept positions only
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0


class _Letters(Task):
    """A toy verifier with graded rewards: the share of 'e' among the reply's characters."""

    name = "letters"

    def __len__(self) -> int:
        return 4

    def example(self, i: int) -> Item:
        return Item([{"role": "user", "content": f"Say something {i}."}, {"role": "assistant", "content": "eee"}])

    def evaluate(self, item: Item, completion: str) -> bool:
        return "e" in completion

    def reward(self, item: Item, completion: str) -> float:
        return completion.count("e") / max(len(completion), 1)


def test_grpo_step_moves_probability_toward_above_average_replies(run):
    from contextlib import nullcontext

    from gptlab.train.optim import build_optimizer

    policy, tok = load_for_inference(run / "sft", device="cpu")
    policy.requires_grad_(True)  # loaded frozen, for inference; GRPO trains it
    task = _Letters()
    pool = [rollout.PromptItem(task.prompt(it), render_prompt(tok, task.prompt(it)), task, it)
            for it in map(task.example, range(4))]
    cfg = grpo.GRPOConfig(prompts_per_iter=4, group_size=6, minibatch=24, max_new_tokens=12, seed=3)
    batches = grpo.GRPOBatches(policy, copy.deepcopy(policy), make_engine(policy, tok, max_batch=24), tok, pool,
                               cfg, tok.token_id(PAD), nullcontext)
    mb = next(batches)
    assert batches.steps_per_iteration == 1 and not batches.queue
    assert abs(float(mb["adv"].sum())) < 1e-4  # the whole rollout (shuffled): every group sums to zero
    assert mb["stats"]["zero_std_groups"] < 1.0  # the toy reward varies inside groups
    loss, metrics = grpo.grpo_loss(policy, mb, kl_coef=0.0)
    assert float(metrics["clipfrac"]) == 0.0  # on-policy first pass: ratio 1
    opt = build_optimizer(policy, lr=1e-3, weight_decay=0.0)
    loss.backward()
    opt.step()
    with torch.no_grad():
        new_logp, _ = rollout.token_logprobs(policy, mb["idx"], mb["targets"])
    gain = ((new_logp - mb["old_logp"]) * mb["mask"]).sum(1)  # change of each reply's log-prob
    assert float((mb["adv"] * gain).sum()) > 0  # above-average replies gained, below-average lost


class _HalfFlat(_Letters):
    """Even prompts score 1 whatever the reply (a flat group); odd ones by their share of e's."""

    def reward(self, item: Item, completion: str) -> float:
        return 1.0 if item.messages[0]["content"][-2] in "02" else super().reward(item, completion)


@pytest.mark.parametrize("train_flat", [False, True])
def test_grpo_leaves_flat_groups_out_of_the_update_and_keeps_its_step_count(run, train_flat):
    from contextlib import nullcontext

    policy, tok = load_for_inference(run / "sft", device="cpu")
    task = _HalfFlat()
    pool = [rollout.PromptItem(task.prompt(it), render_prompt(tok, task.prompt(it)), task, it)
            for it in map(task.example, range(4))]
    cfg = grpo.GRPOConfig(prompts_per_iter=4, group_size=6, minibatch=12, max_new_tokens=12, seed=3,
                          train_flat_groups=train_flat)
    batches = grpo.GRPOBatches(policy, copy.deepcopy(policy), make_engine(policy, tok, max_batch=24), tok, pool,
                               cfg, tok.token_id(PAD), nullcontext)
    first, second = next(batches), next(batches)
    assert batches.steps_per_iteration == 2 and not batches.queue  # two steps, whatever was kept
    stats = first["stats"]
    assert stats["zero_std_groups"] >= 0.5  # the two even prompts at least
    rows = first["idx"].size(0) + second["idx"].size(0)
    flat = round(stats["zero_std_groups"] * 4) * 6
    assert stats["trained_rows"] == rows == (24 if train_flat else 24 - flat)
    if not train_flat:
        assert bool((torch.cat([first["adv"], second["adv"]]) != 0).all())  # only rows with signal


def test_grpo_missing_eos_penalty_lowers_the_reward_of_replies_cut_by_the_budget(run):
    """A verifier scores a cut reply too; with the penalty, a reply that never ends its turn earns less."""
    from contextlib import nullcontext

    policy, tok = load_for_inference(run / "sft", device="cpu")
    task = _HalfFlat()
    pool = [rollout.PromptItem(task.prompt(it), render_prompt(tok, task.prompt(it)), task, it)
            for it in map(task.example, range(4))]
    kw = {"prompts_per_iter": 4, "group_size": 6, "minibatch": 24, "max_new_tokens": 3, "seed": 3}
    stats = {}
    for penalty in (None, 0.5):
        cfg = grpo.GRPOConfig(**kw, missing_eos_penalty=penalty)
        batches = grpo.GRPOBatches(policy, copy.deepcopy(policy), make_engine(policy, tok, max_batch=24), tok,
                                   pool, cfg, tok.token_id(PAD), nullcontext)
        stats[penalty] = next(batches)["stats"]
    cut = 1.0 - stats[None]["stopped_frac"]
    assert cut > 0  # 3 tokens: most replies are cut, so the penalty has something to act on
    assert stats[0.5]["stopped_frac"] == stats[None]["stopped_frac"]  # same seeds, same replies
    assert stats[0.5]["reward"] == pytest.approx(stats[None]["reward"] - 0.5 * cut, abs=1e-6)


# ---------------------------------------------------------------------------- the CLI


def test_ppo_with_zero_lr_leaves_policy_unchanged_and_kl_zero(run, tmp_path):
    out = tmp_path / "rl"
    argv = ["ppo", "--run", str(run), "--out", str(out), "--steps", "2", "--lr", "0", "--eval-samples", "2",
            *FAST]
    assert rl.main(argv) == 0
    before, after = load_file(run / "sft" / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    train = [r for r in _records(out) if "loss" in r]
    assert len(train) == 2  # one record per rollout iteration
    for r in train:
        assert abs(r["kl"]) < 1e-6 and r["clipfrac"] == 0.0 and r["approx_kl_old"] < 1e-10
        for key in ("reward", "entropy", "response_len", "gen_tok_per_s", "value_mean"):
            assert math.isfinite(r[key])
    report = json.loads((out / "eval.json").read_text())
    assert report["before"]["heldout_reward"] == pytest.approx(report["after"]["heldout_reward"], abs=1e-5)
    # the same prompts before and after, scored one by one: unchanged replies, a paired gain of 0
    lines = (out / "heldout_items.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len(json.loads(lines[0])["reward"]) == report["paired"]["len"]["n"]
    assert report["paired"]["len"]["gain"] == 0 and report["paired"]["len"]["ci95"] == [0.0, 0.0]
    assert report["paired"]["reward"]["gain"] == pytest.approx(0, abs=1e-5)
    # sampled replies draw the same random numbers at every evaluation: same policy, same samples
    assert report["paired"]["sampled_reward"]["gain"] == pytest.approx(0, abs=1e-5)
    assert report["paired"]["length_matched_reward"]["gain"] == pytest.approx(0, abs=1e-5)
    assert report["gen_tok_per_s_median"] > 0
    assert (out / "rl.png").stat().st_size > 1000 and (out / "checkpoint" / "optimizer.pt").exists()
    # run.yaml holds the whole resolved config: `gptlab rl ppo --config <out>/run.yaml` runs it again
    from gptlab.commandline import parse
    from gptlab.stages.rl.ppo import PPOArgs

    assert parse(PPOArgs, ["--config", str(out / "run.yaml")], "t") == parse(PPOArgs, argv[1:], "t")


def test_ppo_trains_and_resume_equals_uninterrupted(run, tmp_path):
    common = ["ppo", "--run", str(run), "--lr", "3e-3", "--kl-target", "0.5", "--save-every", "1", *FAST]
    full, part = tmp_path / "full", tmp_path / "part"
    assert rl.main([*common, "--out", str(full), "--steps", "2"]) == 0
    assert rl.main([*common, "--out", str(part), "--steps", "1"]) == 0
    assert rl.main([*common, "--out", str(part), "--steps", "2", "--resume"]) == 0
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    sft = load_file(run / "sft" / "model.safetensors")
    assert any(not torch.equal(a[k], sft[k]) for k in a)  # it did train
    ra = [r for r in _records(full) if "loss" in r]
    rb = [r for r in _records(part) if "loss" in r]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    assert ra[0]["kl_coef"] == pytest.approx(0.05) and ra[1]["kl_coef"] != pytest.approx(0.05)  # adaptive beta moved
    assert ra[1]["kl_coef"] == rb[1]["kl_coef"]


def test_grpo_cli_writes_records_and_the_saved_policy_loads(run, tmp_path):
    out = tmp_path / "grpo"
    argv = ["grpo", "--run", str(run), "--out", str(out), "--steps", "1", "--group-size", "3",
            "--kl-coef", "0.1", *FAST]
    assert rl.main(argv) == 0
    (rec,) = [r for r in _records(out) if "loss" in r]
    for key in ("reward", "accuracy", "kl", "entropy", "clipfrac", "response_len", "gen_tok_per_s"):
        assert key in rec
    report = json.loads((out / "eval.json").read_text())
    assert set(report["before"]) >= {"heldout_accuracy", "heldout_len"} and "heldout_reward" not in report["before"]
    acc = report["paired"]["accuracy"]  # 0/1 per problem: problems fixed and broken, and their sign test
    assert acc["gain"] == pytest.approx(report["delta"]["heldout_accuracy"])
    assert acc["fixed"] - acc["broken"] == round(acc["gain"] * acc["n"]) and 0 < acc["sign_test_p"] <= 1
    sampled = report["paired"]["sampled_accuracy"]  # 2 sampled replies per problem by default
    assert sampled["n"] == acc["n"]
    assert report["after"]["heldout_sampled_accuracy"] == pytest.approx(report["before"]["heldout_sampled_accuracy"]
                                                                        + sampled["gain"])
    model, _ = load_for_inference(out, device="cpu", tokenizer=run / "tokenizer")
    assert model.config.dropout == 0.0


def test_dpo_cli_lowers_the_loss_from_log2(run, tmp_path):
    out = tmp_path / "dpo"
    argv = ["dpo", "--run", str(run), "--out", str(out), "--steps", "8", "--lr", "2e-3",
            "--batch-size", "4", "--device", "cpu", "--dtype", "fp32", "--eval-prompts", "8"]
    assert rl.main(argv) == 0
    train = [r for r in _records(out) if "loss" in r]
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=0.05)  # one step in: still near log 2
    assert train[-1]["loss"] < train[0]["loss"]
    report = json.loads((out / "eval.json").read_text())
    assert report["before"]["heldout_dpo_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert report["before"]["heldout_pref_accuracy"] == 0.5  # policy = reference: every pair a tie
    assert report["after"]["heldout_dpo_loss"] < report["before"]["heldout_dpo_loss"]


@pytest.mark.parametrize("algo", ["dpo", "grpo", "ppo"])
def test_lora_rl_trains_adapters_only_and_saves_a_plain_merged_policy(run, tmp_path, algo):
    out = tmp_path / algo
    argv = [algo, "--run", str(run), "--out", str(out), "--lora-rank", "4", "--lr", "5e-3", "--eval-prompts", "8"]
    if algo == "dpo":
        argv += ["--steps", "6", "--batch-size", "4", "--device", "cpu", "--dtype", "fp32"]
    else:
        argv += ["--steps", "2", "--max-new-tokens", "8", *FAST] + (["--group-size", "3"] if algo == "grpo" else [])
    assert rl.main(argv) == 0
    policy, sft = load_file(out / "model.safetensors"), load_file(run / "sft" / "model.safetensors")
    assert policy.keys() == sft.keys()  # the adapters are merged: plain GPT weights, same names
    changed = {k for k in sft if not torch.equal(policy[k], sft[k])}
    assert all(k.endswith("proj.weight") for k in changed)  # only the adapted linear layers may move
    ckpt = load_file(out / "checkpoint" / "model.safetensors")  # resumable state: the adapters (PPO: + critic)
    assert any("lora" in k for k in ckpt)
    if algo != "ppo":
        assert all("lora" in k for k in ckpt)
    if algo != "grpo":  # (a random model's GRPO groups all score 0: nothing to learn from)
        assert changed
    if algo == "dpo":
        train = [r for r in _records(out) if "loss" in r]
        assert train[-1]["loss"] < train[0]["loss"]
    model, _ = load_for_inference(out, device="cpu", tokenizer=run / "tokenizer")
    assert model.num_params() == GPT(model.config).num_params()


def test_ppo_prompts_may_come_from_a_task_without_a_verifier(run, monkeypatch):
    from gptlab.algos.rollout import task_prompts
    from gptlab.data import corpora
    from gptlab.data.chats import Chat, Turn
    from gptlab.tokenizer.bpe import Tokenizer

    chats = [Chat(f"c{i}", "topic", None, [Turn("A", f"hi {i}"), Turn("B", "hello"), Turn("A", "how are you?"),
                                          Turn("B", "fine")]) for i in range(40)]
    monkeypatch.setattr(corpora, "load_chats", lambda root=None: chats)  # no corpus download in tests
    tok = Tokenizer.load(run / "tokenizer")
    pool, dropped = task_prompts(tok, ["chitchat", "arithmetic"], "train", 5, 10_000)
    assert len(pool) == 10 and dropped == 0
    talk, sums = pool[:5], pool[5:]
    assert all(p.task is None and p.messages[-1]["role"] == "user" for p in talk)  # the RM is the judge
    assert all(p.messages[0]["content"].startswith("hi ") for p in talk)
    assert all(p.task is not None and p.task.name == "arithmetic" for p in sums)


def test_bad_inputs_are_clear_errors(run, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    # GRPO needs a verifier: its command has no --prompts, and its batches refuse prompts without a task
    with pytest.raises(SystemExit):
        rl.main(["grpo", "--run", str(run), "--prompts", str(prompts), "--device", "cpu"])
    assert "--prompts" in capsys.readouterr().err
    with pytest.raises(ValueError, match="verifier"):
        grpo.GRPOBatches(None, None, None, None, [rollout.PromptItem([], [1])], grpo.GRPOConfig(), 0, None)
    with pytest.raises(InputError, match="group-size"):
        rl.main(["grpo", "--run", str(run), "--group-size", "1", "--device", "cpu"])
    with pytest.raises(InputError, match="at least 1"):
        rl.main(["ppo", "--run", str(run), "--minibatch", "0", "--device", "cpu"])
    with pytest.raises(InputError, match="head.safetensors"):
        rl.main(["ppo", "--run", str(run), "--rm", str(run / "sft"), *FAST])
    with pytest.raises(InputError, match="not a scorable task"):
        rl.main(["grpo", "--run", str(run), "--tasks", "chitchat", "--device", "cpu"])
    with pytest.raises(InputError, match="no rankings"):
        rl.main(["dpo", "--run", str(tmp_path / "nothing"), "--from", str(run / "sft"),
                 "--tokenizer", str(run / "tokenizer"), "--device", "cpu"])


def test_each_command_keeps_its_defaults_and_its_help(capsys):
    from gptlab.stages.rl.grpo import GRPOArgs
    from gptlab.stages.rl.grpo import algo_config as grpo_config
    from gptlab.stages.rl.ppo import PPOArgs
    from gptlab.stages.rl.ppo import algo_config as ppo_config

    p, g, d = PPOArgs(), GRPOArgs(), dpo_cmd.DPOArgs()
    assert (p.prompts_per_iter, p.minibatch, p.epochs, p.kl_coef, p.eval_samples) == (16, 8, 2, 0.05, 0)
    assert p.tasks == ("arithmetic", "play_speaker") and g.tasks == ("arithmetic",)
    assert (g.prompts_per_iter, g.group_size, g.minibatch, g.epochs, g.kl_coef, g.eval_samples) == (8, 8, 32, 1, 0.05, 2)
    assert (d.beta, d.batch_size, d.eval_prompts) == (0.1, 8, 32)
    for c in (p, g, d):  # RL's loop defaults: a constant small LR, no decay, held-out eval before and after
        assert (c.lr, c.min_lr_ratio, c.weight_decay, c.warmup, c.grad_clip, c.eval_every, c.save_every) == (
            1e-5, 1.0, 0.0, 0, 1.0, None, 5)
    # the algorithms' configs, filled by name from the commands' defaults, are the algorithms' own defaults
    assert ppo_config(p) == ppo.PPOConfig(kl_coef=0.05)
    assert grpo_config(g) == grpo.GRPOConfig(kl_coef=0.05)
    for cmd in ("ppo", "dpo", "grpo"):
        with pytest.raises(SystemExit) as e:
            rl.main([cmd, "--help"])
        assert e.value.code == 0 and "--steps" in capsys.readouterr().out
    assert rl.main([]) == 0
    usage = capsys.readouterr().out
    assert all(f"  {c} " in usage for c in ("ppo", "dpo", "grpo"))
    with pytest.raises(InputError, match="grad-accum"):
        PPOArgs(grad_accum=2).check()
