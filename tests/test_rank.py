"""Rankings: the resumable terminal labeller, rule / ratings / judge rankers, the rank CLI."""

from __future__ import annotations

import json

import pytest
import torch

from gptlab.align import rank_cli
from gptlab.align.candidates import (
    Candidates,
    load_candidates,
    rankings_from_scores,
    save_candidates,
)
from gptlab.align.demos import cut_words, demo_rankings
from gptlab.align.labeler import Labeler, parse_order
from gptlab.align.rankers import judge_scores, rule_rankings
from gptlab.align.ratings import chat_score, ratings_rankings
from gptlab.data.chats import Chat, Turn
from gptlab.data.preferences import load_rankings
from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tasks.base import Item, Task
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([builtin_samples()["english"]] * 2, 300)


@pytest.fixture
def model_dir(tmp_path, tok):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, n_kv_head=2,
                      intermediate_size=64, max_seq_len=96)
    save_model(tmp_path / "sft", GPT(cfg))
    tok.save(tmp_path / "tokenizer")
    return tmp_path / "sft"


def cands(n: int, k: int = 3) -> list[Candidates]:
    return [Candidates([{"role": "user", "content": f"q{i}"}], [f"answer {i}.{j}" for j in range(k)]) for i in range(n)]


def test_parse_order_accepts_full_or_implied_last():
    assert parse_order("cab", 3) == [2, 0, 1]
    assert parse_order("ca", 3) == [2, 0, 1]
    assert parse_order("c", 3) is None and parse_order("cad", 3) is None and parse_order("cc", 2) is None


def test_labeler_saves_each_answer_and_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "human.jsonl"
    shown: list[str] = []
    keys = iter(["ba", "zz", "s", "u", "cab", "q"])  # answer, typo, skip, undo the skip, answer, quit
    n = Labeler(cands(4), out, ask=lambda _: next(keys), show=shown.append).run()
    assert n == 2
    assert any("not understood" in s for s in shown) and any("undid prompt 2" in s for s in shown)
    got = load_rankings(out)
    assert [r.order for r in got] == [[1, 0, 2], [2, 0, 1]]  # prompts 1 and 2 (the undone skip re-asked)
    assert got[0].meta["source"] == "human" and got[0].meta["item"] == 0

    # A new session (the terminal was closed) starts at prompt 3; end of input stops it cleanly.
    keys2 = iter(["acb"])

    def ask(_: str) -> str:
        try:
            return next(keys2)
        except StopIteration:
            raise EOFError from None

    lab = Labeler(cands(4), out, ask=ask, show=lambda s: None)
    assert lab.next_item() == 2
    assert lab.run() == 1
    assert [r.meta["item"] for r in load_rankings(out)] == [0, 1, 2]
    with pytest.raises(InputError, match="progress is for 4 prompts"):
        Labeler(cands(5), out)


def test_rankings_from_scores_drops_tied_pairs_and_keeps_parts():
    c = Candidates([{"role": "user", "content": "2+2?"}], ["4", "5", "4!", "x"],
                   contents=["4", "5", [{"type": "text", "text": "4!"}], "x"])
    got = rankings_from_scores(c, [1.0, 0.0, 1.0, 0.0])
    assert len(got) == 4  # 2 winners x 2 losers; the tied pairs (4, 4!) and (5, x) are dropped
    assert all(r.responses[r.order[0]] in ("4", "4!") for r in got)
    assert got[1].meta["contents"] == ["4", "x"] and got[2].meta["contents"][1][0]["type"] == "text"  # pair (5, 4!)
    full = rankings_from_scores(c, [0.1, 0.9, 0.5, 0.0])[0]
    assert full.order == [1, 2, 0, 3] and len(full.pairs()) == 6


def test_ratings_rank_chats_on_one_topic_and_skip_defaults():
    def chat(i: int, topic: str, r: int | None) -> Chat:
        ratings = None if r is None else {"witty": r, "upbeat": r, "interesting": r}
        return Chat(str(i), topic, ratings, [Turn("A", f"hi {i}"), Turn("B", f"hello {i}\nhow are you")])

    chats = [chat(i, "Topic A", r) for i, r in enumerate([9, 5, 2, 9, 7, None, 1, 3])]
    chats += [chat(10 + i, "Topic B", r) for i, r in enumerate([4, 6, 8])]
    assert chat_score(chats[1]) is None and chat_score(chats[1], skip_default=False) == 15
    got = ratings_rankings(chats, n=10, k=3, seed=0)
    assert len(got) == 3  # topic A: 6 usable chats (scores 27,6,27,21,3,9) -> 2 groups; topic B -> 1
    for r in got:
        scores = r.meta["scores"]
        assert len(set(scores)) == 3 and [scores[i] for i in r.order] == sorted(scores, reverse=True)
        assert r.prompt[0]["content"] in ("Topic A", "Topic B") and r.responses[0].startswith("A: hi")
    assert ratings_rankings(chats, n=1, k=3)[0].prompt[0]["content"] == "Topic A"
    # Topic B's sums are 12, 18, 24: six points apart, so its ranking survives a gap of 6 but not 7;
    # whatever is kept has every two chats at least the gap apart.
    for gap, b_kept in ((6, True), (7, False)):
        got = ratings_rankings(chats, n=10, k=3, seed=0, min_gap=gap)
        assert any(r.prompt[0]["content"] == "Topic B" for r in got) is b_kept
        assert all(abs(a - b) >= gap for r in got for i, a in enumerate(r.meta["scores"])
                   for b in r.meta["scores"][i + 1:])


class _Longest(Task):
    """A real task whose verifier prefers longer replies (so a random model gives distinct scores)."""

    name = "longest"

    def __len__(self) -> int:
        return 3

    def example(self, i: int) -> Item:
        return Item([{"role": "user", "content": f"say something {i}"}, {"role": "assistant", "content": "x"}])

    def reward(self, item: Item, completion: str) -> float:
        return float(len(completion))


def test_rule_rankings_sample_k_and_order_by_task_reward(model_dir, tok):
    from gptlab.infer.loading import load_for_inference, make_engine

    model, tok2 = load_for_inference(model_dir, device="cpu")
    engine = make_engine(model, tok2, max_batch=4)
    got, stats = rule_rankings(engine, tok2, _Longest(), n=3, k=3, max_new_tokens=12, seed=1, progress=False)
    assert stats["prompts"] == 3 and stats["prompts_with_signal"] >= 1 and got
    for r in got:
        lengths = [len(r.responses[i]) for i in r.order]
        assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == len(lengths)
        assert r.meta["source"] == "rule" and r.meta["task"] == "longest"


class _Graded(_Longest):
    """Graded reward (length) and a pass/fail verdict (at least `cut` characters)."""

    cut = 20

    def evaluate(self, item: Item, completion: str) -> bool:
        return len(completion) >= self.cut


def test_rule_rankings_by_verdict_pair_only_right_against_wrong(model_dir, tok):
    from gptlab.infer.loading import load_for_inference, make_engine

    model, tok2 = load_for_inference(model_dir, device="cpu")
    engine = make_engine(model, tok2, max_batch=4)
    kw = {"n": 3, "k": 4, "max_new_tokens": 12, "seed": 1, "progress": False}
    graded, _ = rule_rankings(engine, tok2, _Graded(), **kw)
    task = _Graded()
    task.cut = sorted(len(t) for r in graded for t in r.responses)[len(graded)]  # some pass, some fail
    verdict, stats = rule_rankings(engine, tok2, task, by="correct", **kw)
    assert verdict and stats["pairs"] < sum(len(r.pairs()) for r in graded)  # same samples, fewer pairs
    for r in verdict:
        assert set(r.meta["scores"]) == {0.0, 1.0}  # every ranking has a right and a wrong answer
        for won, lost in r.pairs():
            assert len(r.responses[won]) >= task.cut > len(r.responses[lost])


class _AllWrong(_Longest):
    """Every answer fails: only the end-of-turn penalty can order them."""

    def evaluate(self, item: Item, completion: str) -> bool:
        return False


def test_rule_rankings_put_answers_cut_by_the_budget_below_those_that_ended(model_dir, tok):
    from gptlab.infer.loading import load_for_inference, make_engine

    model, tok2 = load_for_inference(model_dir, device="cpu")
    engine = make_engine(model, tok2, max_batch=4)
    engine.eos_ids |= set(range(40, 80))  # a random model rarely ends; these ids end about half its replies
    kw = {"n": 3, "k": 4, "max_new_tokens": 8, "seed": 1, "progress": False, "by": "correct"}
    plain, stats = rule_rankings(engine, tok2, _AllWrong(), **kw)
    assert plain == [] and 0 < stats["cut"] < 12  # all wrong: no pairs, and some answers were cut
    got, stats2 = rule_rankings(engine, tok2, _AllWrong(), missing_eos_penalty=1.0, **kw)
    assert got and stats2["cut"] == stats["cut"]
    for r in got:
        for won, lost in r.pairs():
            assert r.meta["ended"][won] and not r.meta["ended"][lost]


def test_candidates_keep_end_of_turn_flags_on_file_and_into_rankings(tmp_path):
    c = Candidates([{"role": "user", "content": "hi"}], ["a", "bb", "ccc"], ended=[True, False, True])
    save_candidates(tmp_path / "c.jsonl", [c])
    (back,) = load_candidates(tmp_path / "c.jsonl")
    assert back.ended == [True, False, True]
    assert back.ranked([2, 0, 1], source="human").meta["ended"] == [True, False, True]
    assert [r.meta["ended"] for r in rankings_from_scores(back, [1.0, 0.0, 1.0])] == [[True, False], [False, True]]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "hi", "responses": ["a", "b"], "ended": [true]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1.*ended"):
        load_candidates(tmp_path / "bad.jsonl")


def test_cut_words_keeps_whole_words_within_the_budget():
    text = "Now is the winter of our discontent\nMade glorious summer"
    for n in range(4, len(text) + 5):
        got = cut_words(text, n)
        assert len(got) <= n and text.startswith(got)
        assert got == text or text[len(got)] in " \n"  # ends where a word ends
    assert cut_words("Wherefore art", 3) == "Wherefore"  # never empty: at least the first word


class _Speeches(Task):
    """Written replies of ~120 characters; item 2 is a two-exchange chat whose last prompt is too long."""

    name = "speeches"

    def __len__(self) -> int:
        return 4

    def example(self, i: int) -> Item:
        ref = " ".join(f"word{i}{j}" for j in range(20))
        if i == 2:
            return Item([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ref},
                         {"role": "user", "content": "long " * 200}, {"role": "assistant", "content": "late reply"}])
        return Item([{"role": "user", "content": f"go on {i}"}, {"role": "assistant", "content": ref}])


def test_demo_rankings_put_the_written_reply_first_cut_within_the_shorter_reply(model_dir, tok):
    from gptlab.infer.loading import load_for_inference, make_engine

    model, tok2 = load_for_inference(model_dir, device="cpu")
    engine = make_engine(model, tok2, max_batch=4)
    task = _Speeches()
    got, stats = demo_rankings(engine, tok2, task, n=4, k=2, max_new_tokens=40, seed=3, progress=False)
    assert stats["prompts"] == 4 and stats["pairs"] + stats["skipped"] == 8 and got
    for r in got:
        ref, sample = r.responses
        item = task.example(r.meta["item"])
        assert r.order == [0, 1] and r.meta["source"] == "demos" and r.meta["task"] == "speeches"
        assert r.prompt == item.messages[:-1] or r.meta["item"] == 2
        full_ref = item.messages[1]["content"]  # item 2: the earlier exchange, whose prompt fits
        assert full_ref.startswith(ref) and len(ref.split()) >= 3 and len(sample.split()) >= 3
        assert len(sample) <= len(full_ref)  # each cut within the shorter of the two replies
    assert any(r.meta["item"] == 2 and r.prompt == [{"role": "user", "content": "hi"}] for r in got)


def test_rank_task_lists_are_checked_before_any_model_loads(tmp_path):
    missing = str(tmp_path / "no-model")
    with pytest.raises(InputError, match="'nope' is not a task"):
        rank_cli.main(["demos", "--tasks", "nope", "--from", missing])
    with pytest.raises(InputError, match="'chitchat' is not a scorable task"):
        rank_cli.main(["rule", "--tasks", "chitchat", "--from", missing])


def test_rank_generate_judge_and_candidate_errors(tmp_path, model_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2+2?\nHello there\n")
    out = tmp_path / "cands.jsonl"
    assert rank_cli.main(["generate", "--from", str(model_dir), "--prompts", str(prompts), "--k", "3",
                          "--max-new-tokens", "8", "--out", str(out), "--device", "cpu"]) == 0
    got = load_candidates(out)
    assert len(got) == 2 and all(len(c.responses) == 3 for c in got)
    assert got[0].prompt == [{"role": "user", "content": "What is 2+2?"}]

    judged = tmp_path / "judge.jsonl"
    assert rank_cli.main(["judge", "--from", str(model_dir), "--candidates", str(out), "--out", str(judged),
                          "--device", "cpu"]) == 0
    assert all(r.meta["source"] == "judge" for r in load_rankings(judged))

    bad = tmp_path / "bad.jsonl"
    save_candidates(bad, got)
    bad.write_text(bad.read_text() + json.dumps({"prompt": "p", "responses": ["only one"]}) + "\n")
    with pytest.raises(InputError, match="at least 2 strings") as e:
        load_candidates(bad)
    assert e.value.line == 3
    with pytest.raises(InputError, match="not a scorable task"):
        rank_cli.main(["rule", "--tasks", "chitchat", "--from", str(model_dir)])


def test_judge_scores_are_yes_minus_no_logits(model_dir, tok):
    from gptlab.model.io import load_model

    model = load_model(model_dir).eval()
    s = judge_scores(model, tok, [{"role": "user", "content": "hi"}], ["a", "bb", "a"], batch_size=2)
    assert len(s) == 3 and s[0] == pytest.approx(s[2], abs=1e-5)  # same answer, same verdict across batches


@pytest.mark.parametrize("dtype, autocast", [("fp32", False), ("bf16", True)])
def test_rank_judge_reads_in_the_asked_dtype(tmp_path, model_dir, monkeypatch, dtype, autocast):
    from gptlab.align import judge_cli

    seen = []

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return judge_scores(*args, **kwargs)

    monkeypatch.setattr(judge_cli, "judge_scores", spy)
    cands = tmp_path / "cands.jsonl"
    save_candidates(cands, [Candidates([{"role": "user", "content": "hi"}], ["a", "bb", "ccc"])])
    assert rank_cli.main(["judge", "--from", str(model_dir), "--candidates", str(cands), "--out",
                          str(tmp_path / "j.jsonl"), "--device", "cpu", "--dtype", dtype]) == 0
    assert seen == [autocast]
    assert len(load_rankings(tmp_path / "j.jsonl")) == 1  # one ranking of the 3 answers
