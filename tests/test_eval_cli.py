"""`gptlab eval` end to end on a tiny run in tmp_path: bpb against the unigram baseline, multiple
choice (chat and text formats) and generation, where a model trained on the test items must beat
an untrained one; eval.json merging; bad input as one-line errors. Plays are small synthetic ones
(monkeypatched in for the cache's corpus), so no network and no cache."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from gptlab.data.plays import parse_play
from gptlab.data.shards import write_token_shards
from gptlab.errors import InputError
from gptlab.eval import cli as eval_cli
from gptlab.eval.generative import mc_item, shot_messages, text_prompt
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tasks import get_task
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat import render_conversation

WORDS = [a + b for a in ("cr", "sw", "n", "l", "gr", "h", "bl", "m", "k", "qu") for b in ("own", "ord", "ight", "ove", "ief", "ay", "ood", "oon")]
TEXT = (
    "What is two plus three? The answer is 5. Let me compute that. calculator: 12*7 = 84.\n"
    "Who speaks this line in The Tale Alpha? ALPHA LORD ALPHA LADY BETA DUKE Question: Answer:\n"
) * 30


def make_plays() -> list:
    rng = random.Random(1)
    plays = []
    for title in ("The Tale Alpha", "The Tale Beta", "The Tale Gamma", "The Tale Delta"):
        cast = [f"{title.split()[-1].upper()} {r}" for r in ("LORD", "LADY", "DUKE", "NURSE", "FOOL")]
        out = [f"# {title}", ""]
        for roman in ("I", "II", "III"):
            out += [f"## ACT {roman}", ""]
            for sroman in ("I", "II", "III", "IV", "V", "VI"):
                out += [f"### SCENE {sroman}. A room.", ""]
                for k in range(10):
                    lines = [" ".join(rng.choice(WORDS) for _ in range(6)).capitalize()]
                    out += [f"**{cast[k % 5]}**  ", *[ln + "  " for ln in lines], ""]
        slug = title.lower().replace(" ", "-")
        plays.append(parse_play("\n".join(out) + "\n", slug, "comedies", slug))
    return plays


PLAYS = make_plays()


@pytest.fixture(autouse=True)
def _synthetic_plays(monkeypatch):
    monkeypatch.setattr("gptlab.data.corpora.load_plays", lambda root=None: PLAYS)


def tiny_gpt(vocab: int, seed: int = 0, seq: int = 512) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, n_layer=2, n_embd=48, n_head=2, n_kv_head=1,
                      intermediate_size=96, max_seq_len=seq)
    return GPT(cfg)


def fit(model: GPT, rows: list[tuple[list[int], list[int]]], steps: int = 100, lr: float = 1e-2) -> GPT:
    """Memorise `rows` (ids, loss mask): a model that has seen the answers, to beat chance with."""
    L = max(len(ids) for ids, _ in rows)
    x = torch.zeros(len(rows), L - 1, dtype=torch.long)
    y = torch.full((len(rows), L - 1), -1, dtype=torch.long)
    for r, (ids, mask) in enumerate(rows):
        x[r, : len(ids) - 1] = torch.tensor(ids[:-1])
        y[r, : len(ids) - 1] = torch.tensor([t if m else -1 for t, m in zip(ids[1:], mask[1:])])
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two on a shared machine
    try:
        for _ in range(steps):
            loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def make_run(root: Path, trained: dict[str, list[list[dict]]] | None = None) -> Path:
    """runs/x: tokenizer (vocab 300), shards, base (untrained) and any `trained` stages, each fit
    on the given conversations (assistant tokens only)."""
    tok = Tokenizer.train([TEXT], 300)
    tok.save(root / "tokenizer", hf=False)
    ids = [tok.eot_id] + tok.encode(TEXT)
    write_token_shards(root / "shards", {"train": [ids[:1500]], "val": [ids[1500:]]}, tok.vocab_size, tok.eot_id)
    save_model(root / "base", tiny_gpt(tok.vocab_size))
    for stage, convs in (trained or {}).items():
        save_model(root / stage, fit(tiny_gpt(tok.vocab_size), [render_conversation(tok, c) for c in convs]))
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    speaker = get_task("play_speaker", "test", plays=PLAYS)
    arith = get_task("arithmetic", "test")
    convs = [speaker.example(i).messages for i in range(6)] + [arith.example(i).messages for i in range(4)]
    return make_run(tmp_path_factory.mktemp("runs") / "x", {"sft": convs})


def _eval(*argv: str) -> int:
    return eval_cli.main([*argv, "--device", "cpu"])


def test_bpb_mc_and_gen_merge_into_eval_json(run):
    assert _eval("--from", str(run / "sft"), "--tasks", "bpb", "play_speaker", "--limit", "6") == 0
    assert _eval("--from", str(run / "sft"), "--tasks", "arithmetic", "--limit", "4", "--max-new-tokens", "40") == 0
    data = json.loads((run / "sft" / "eval.json").read_text())
    res = data["results"]
    assert set(res) == {"bpb", "play_speaker/mc", "arithmetic/gen"}  # merged, not replaced
    assert res["bpb"]["tokens"] > 100 and res["bpb"]["unigram_bpb"] > 0
    assert res["bpb"]["window"] == 512  # the tiny model's whole context (at most 2,048 by default)
    mc = res["play_speaker/mc"]
    assert mc["n"] == 6 and mc["random_baseline"] == 0.25 and mc["format"] == "chat"
    assert mc["acc"] == 1.0  # memorised: a mislabelled choice or a shifted target would break this
    assert mc["centred_acc"] == pytest.approx(1.0)
    gen = res["arithmetic/gen"]
    # arithmetic's reward is graded (a right tool call earns half), so it is at least the accuracy
    assert gen["n"] == 4 and gen["acc"] >= 0.75 and gen["acc"] <= gen["reward"] <= 1.0
    assert gen["entropy"] is not None and gen["entropy"] >= 0
    assert data["stage"] == "sft" and "metadata" in data


def test_bpb_window_and_other_text_are_their_own_results(run):
    out = run / "windows.json"
    assert _eval("--from", str(run / "sft"), "--tasks", "bpb", "--bpb-window", "8", "--out", str(out)) == 0
    assert _eval("--from", str(run / "sft"), "--tasks", "bpb", "--shards", str(run / "shards"), "--out", str(out)) == 0
    res = json.loads(out.read_text())["results"]
    short, full = res["bpb"], res["bpb/shards"]  # --shards DIR is keyed by the folder's name
    assert short["window"] == 8 and full["window"] == 512 and short["tokens"] == full["tokens"]
    assert short["bpb"] != full["bpb"]  # the same tokens, scored with less context


def test_one_call_scores_several_shard_folders_and_per_task_limits(run, tmp_path):
    other = tmp_path / "plays"
    shutil.copytree(run / "shards", other)
    out = tmp_path / "eval.json"
    argv = ["--from", str(run / "sft"), "--tasks", "bpb", "play_speaker:3", "arithmetic", "--limit", "2",
            "--max-new-tokens", "8", "--shards", str(run / "shards"), str(other), "--out", str(out)]
    assert _eval(*argv) == 0
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"bpb/shards", "bpb/plays", "play_speaker/mc", "arithmetic/gen"}
    assert res["bpb/shards"]["bpb"] == res["bpb/plays"]["bpb"]  # the same text under two names
    assert res["play_speaker/mc"]["n"] == 3 and res["arithmetic/gen"]["n"] == 2  # NAME:N beats --limit
    with pytest.raises(InputError, match="play_speaker:x"):
        _eval("--from", str(run / "sft"), "--tasks", "play_speaker:x", "--out", str(out))


def test_untrained_base_is_near_chance_in_text_format(run):
    out = run / "base_eval.json"
    assert _eval("--from", str(run / "base"), "--tasks", "play_speaker", "--limit", "6", "--out", str(out)) == 0
    mc = json.loads(out.read_text())["results"]["play_speaker/mc"]
    assert mc["format"] == "text" and mc["acc"] < 1.0


def test_base_and_sft_write_per_item_scores_on_the_same_items(run):
    """The report's SFT check pairs base and sft item by item: both must write each item's 0/1 score
    under one id per item (mc and gen alike), and the scores must add up to the accuracy."""
    recs = {}
    for stage in ("base", "sft"):
        out = run / f"paired_{stage}.json"
        assert _eval("--from", str(run / stage), "--tasks", "play_speaker", "arithmetic", "--limit", "4",
                     "--max-new-tokens", "24", "--out", str(out)) == 0
        recs[stage] = json.loads(out.read_text())["results"]
    for key in ("play_speaker/mc", "arithmetic/gen"):
        base, sft = recs["base"][key], recs["sft"][key]
        assert base["per_item"]["id"] == sft["per_item"]["id"] and len(set(sft["per_item"]["id"])) == 4
        for rec in (base, sft):
            assert set(rec["per_item"]["correct"]) <= {0, 1}
            assert sum(rec["per_item"]["correct"]) / 4 == pytest.approx(rec["acc"])
    assert sum(recs["sft"]["play_speaker/mc"]["per_item"]["correct"]) == 4  # memorised
    other = _eval("--from", str(run / "sft"), "--tasks", "arithmetic", "--limit", "2", "--seed", "7",
                  "--max-new-tokens", "8", "--out", str(run / "paired_seed7.json"))
    ids7 = json.loads((run / "paired_seed7.json").read_text())["results"]["arithmetic/gen"]["per_item"]["id"]
    assert other == 0 and not set(ids7) & set(recs["sft"]["arithmetic/gen"]["per_item"]["id"])  # other items


def test_cot_and_self_consistency_modes(run):
    out = run / "modes.json"
    for mode in ("cot", "sc"):
        assert _eval("--from", str(run / "sft"), "--tasks", "arithmetic", "--limit", "2", "--mode", mode,
                     "--n-samples", "3", "--max-new-tokens", "12", "--out", str(out)) == 0
    res = json.loads(out.read_text())["results"]
    assert res["arithmetic/sc"]["n_samples"] == 3 and res["arithmetic/cot"]["n"] == 2
    sc = res["arithmetic/sc"]
    assert sc["temperature"] == 0.8 and sc["acc"] <= sc["pass_at_n"] <= 1 and "majority_share" in sc
    assert "pass_at_n" not in res["arithmetic/cot"]


def test_prompts_formats_and_shots_come_from_train():
    tok = Tokenizer.train([TEXT], 300)
    task = get_task("play_speaker", "test", plays=PLAYS)
    item = task.example(0)
    shots = shot_messages(task, 2)
    train_keys = {get_task("play_speaker", "train", plays=PLAYS).example(i).meta["quote"] for i in range(2)}
    assert len(shots) == 4 and {m["content"] for m in shots[::2]} and item.meta["quote"] not in train_keys
    text = text_prompt(task, item, shots)
    assert text.count("Question:") == 3 and text.endswith("Answer:")
    chat = mc_item(tok, task, item, shots, "chat")
    end = tok.token_id("<|end|>")
    assert all(c[-1] == end for c in chat.choices_ids) and chat.label == item.label
    plain = mc_item(tok, task, item, (), "text")
    assert plain.context_ids[0] == tok.eot_id and plain.choices_ids[item.label] == tok.encode(" " + item.answer)


def test_bad_input_is_one_line_error(run):
    with pytest.raises(InputError, match="stage folder not found"):
        eval_cli.main(["--from", str(run / "nope"), "--tasks", "bpb"])
    with pytest.raises(InputError, match="unknown task 'nope'"):
        eval_cli.main(["--from", str(run / "sft"), "--tasks", "nope", "--device", "cpu"])
    with pytest.raises(InputError, match="no choices"):
        eval_cli.main(["--from", str(run / "sft"), "--tasks", "arithmetic", "--mode", "mc", "--device", "cpu"])
    with pytest.raises(InputError, match="--limit must be"):
        eval_cli.main(["--from", str(run / "sft"), "--limit", "0"])
    bad = run / "bad_eval.json"
    bad.write_text("{\n  not json")
    with pytest.raises(InputError, match=r"bad_eval.json:2: invalid JSON"):
        eval_cli.main(["--from", str(run / "sft"), "--tasks", "bpb", "--bpb-tokens", "64", "--out", str(bad), "--device", "cpu"])


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        eval_cli.main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--from", "--tasks", "--shots", "--mode", "--n-samples", "--limit", "--out"):
        assert flag in out


def test_summary_counts_replies_that_end_their_turn():
    from gptlab.eval.generative import GenResult, summarise

    rs = [GenResult(True, 1.0, "a", "1", 0.1, 3, stopped=True, tool_calls=2), GenResult(False, 0.0, "b", None, 0.2, 9),
          GenResult(False, 0.5, "c", "2", 0.3, 4, stopped=True), GenResult(True, 1.0, "d", "3", 0.4, 5, stopped=True, tool_calls=1)]
    s = summarise(rs)
    assert s["stop_rate"] == 0.75 and s["acc"] == 0.5 and s["reply_tokens"] == 5.25
    assert s["tool_use_rate"] == 0.5  # replies with at least one call, not calls per reply


def test_self_consistency_summary_reports_the_ceiling_and_the_agreement():
    from gptlab.eval.generative import GenResult, summarise

    rs = [GenResult(False, 0.0, "a", "4", 0.1, 3, votes={"4": 2, "8": 1}, any_correct=True),  # right answer outvoted
          GenResult(True, 1.0, "b", "5", 0.1, 3, votes={"5": 3}, any_correct=True),
          GenResult(False, 0.0, "c", None, 0.1, 3, votes={}, any_correct=False)]  # no sample had a number
    s = summarise(rs)
    assert s["acc"] == 1 / 3 and s["pass_at_n"] == 2 / 3
    assert s["majority_share"] == (2 / 3 + 1) / 2
    assert "pass_at_n" not in summarise([GenResult(True, 1.0, "d", "1", 0.1, 2)])  # not for greedy modes
