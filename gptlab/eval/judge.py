"""Model A vs model B on the same prompts, judged by a rule, a reward model or a judge model.

The command is `gptlab eval judge` (`gptlab.eval.judge_cli`); its votes feed `gptlab arena`.

Every pair is judged in both orders (A shown first, then B shown first). A judge model prefers
whichever answer it sees first or second more often than merit allows (position bias; Zheng et
al. 2023, MT-Bench); a winner must win in both orders, and a split decision counts as a tie. A
rule and a reward model score each reply on its own, so their two orders always agree.

The judge model reads the rubric, the question and the two answers, and its verdict is the
choice ("A" or "B" + `<|end|>`) it gives the higher log-likelihood: no sampling, no parsing.

Reward-model accuracy (`rm_accuracy`) is classifier evaluation: each (chosen, rejected) pair is
shown both ways round, the label says which is first, the prediction is r_first > r_second;
it is reported with the random baseline (0.5) and a length baseline (prefer the longer reply).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.errors import InputError
from gptlab.eval.metrics import bootstrap_ci, centred_accuracy, classification_report, sign_test
from gptlab.eval.multiple_choice import MCItem, batched_logprobs
from gptlab.infer.loading import load_for_inference
from gptlab.model.heads import ScalarHeadModel, keep_end
from gptlab.tasks.base import Item, Task, reply_text
from gptlab.tokenizer.protocol import TokenizerLike

DEFAULT_RUBRIC = (
    "You are judging two answers to the same question. The better answer is correct, answers "
    "what was asked, and is clear and brief."
)


# ---------------------------------------------------------------------------- reward model


class RewardScorer:
    """A reward model (GPT trunk + scalar head) that scores whole conversations."""

    def __init__(self, rm: torch.nn.Module, tok: TokenizerLike, batch_size: int = 16):
        self.rm, self.tok, self.batch_size = rm.eval(), tok, batch_size

    @classmethod
    def from_trunk(cls, trunk: torch.nn.Module, tok: TokenizerLike, folder: str | Path) -> RewardScorer:
        """The trunk loaded from a reward-model folder, plus its `head.safetensors`."""
        folder = Path(folder)
        if not (folder / "head.safetensors").exists():
            raise InputError(folder, "no head.safetensors here: not a reward-model folder")
        rm = ScalarHeadModel(trunk)
        rm.load_head(folder)
        return cls(rm.to(next(trunk.parameters()).device), tok)

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> RewardScorer:
        trunk, tok = load_for_inference(folder, device)
        return cls.from_trunk(trunk, tok, folder)

    @torch.inference_mode()
    def score(self, conversations: Sequence[list[dict]]) -> list[float]:
        """The reward of each conversation (ending with an assistant turn), read at `<|reward|>`."""
        limit = getattr(self.rm, "max_tokens", self.rm.config.max_seq_len)
        rows = [keep_end(self.tok.render_for_reward(c), limit) for c in conversations]
        dev = next(self.rm.parameters()).device
        out: list[float] = []
        for s in range(0, len(rows), self.batch_size):
            chunk = rows[s : s + self.batch_size]
            L = max(map(len, chunk))
            x = torch.zeros(len(chunk), L, dtype=torch.long)
            for r, ids in enumerate(chunk):
                x[r, : len(ids)] = torch.tensor(ids)  # right padding: causal attention never sees it
            last = torch.tensor([len(ids) - 1 for ids in chunk])
            out += self.rm.score_at(x.to(dev), last.to(dev)).float().cpu().tolist()
        return out


def task_pairs(task: Task, items: Sequence[Item]) -> list[tuple[list[dict], str | list, str | list]]:
    """(prompt, chosen reply, rejected reply) pairs with known order, built from a task.

    Multiple choice: the right choice against each wrong one. Numeric answers: the reference
    reply against the same reply with a wrong number.
    """
    pairs = []
    for it in items:
        prompt = task.prompt(it)
        ref = it.messages[-1]["content"]
        if it.choices and it.label is not None:
            pairs += [(prompt, it.choices[it.label], c) for j, c in enumerate(it.choices) if j != it.label]
        elif it.answer is not None and it.answer.lstrip("-").isdigit():
            wrong = str(int(it.answer) + 1 + len(pairs) % 9)
            pairs.append((prompt, ref, f"The answer is {wrong}."))
    if not pairs:
        raise InputError(None, f"task {task.name!r} gives no (right, wrong) reply pairs")
    return pairs


def rm_accuracy(scorer: RewardScorer, pairs: Sequence[tuple[list[dict], str | list, str | list]]) -> dict:
    """Pairwise accuracy, baselines and classifier metrics of a reward model on ordered pairs."""
    convs = []
    for prompt, chosen, rejected in pairs:
        convs += [[*prompt, {"role": "assistant", "content": chosen}],
                  [*prompt, {"role": "assistant", "content": rejected}]]
    r = scorer.score(convs)
    rc, rr = r[0::2], r[1::2]
    acc = sum(c > w for c, w in zip(rc, rr)) / len(pairs)
    longer = sum(len(reply_text(c)) > len(reply_text(w)) for _, c, w in pairs) / len(pairs)
    # Classifier view: each pair both ways round; label 1 when the chosen reply is shown first.
    y_true = [1] * len(pairs) + [0] * len(pairs)
    diff = [c - w for c, w in zip(rc, rr)] + [w - c for c, w in zip(rc, rr)]
    report = classification_report(y_true, [int(d > 0) for d in diff], diff)
    return {
        "acc": acc,
        "random_baseline": 0.5,
        "length_baseline": longer,
        "centred_acc": centred_accuracy(acc, 0.5),
        "roc_auc": report.get("roc_auc"),
        "f1": report["binary"]["f1"],
        "margin": sum(diff[: len(pairs)]) / len(pairs),
        "classifier": report,
        "n": len(pairs),
    }


# ---------------------------------------------------------------------------- judges

# A judge says which of two replies (as shown: first, second) is better: "first", "second", "tie".
Prefer = Callable[[list[dict], str, str], str]


def rule_judge(task: Task, item_of: Callable[[list[dict]], Item]) -> Prefer:
    """The task's checker decides: a right answer beats a wrong one; two right or two wrong tie.
    (Not the graded reward: partial credit, as the reasoning gym gives it, would rank two wrong
    answers, a verdict about which number is nearer, not about which reply is right.)"""

    def prefer(prompt: list[dict], first: str, second: str) -> str:
        item = item_of(prompt)
        a, b = task.evaluate(item, first), task.evaluate(item, second)
        return "first" if a > b else "second" if b > a else "tie"

    return prefer


def rm_judge(scorer: RewardScorer, margin: float = 0.0) -> Prefer:
    """The higher reward wins; a difference within `margin` ties. Each reply is scored once, so
    the two presentation orders agree exactly (a batch's padding moves scores by ~1e-6, which
    would otherwise turn two equal replies into a split verdict)."""

    seen: dict[tuple[str, str], float] = {}  # one score per reply: both orders read the same numbers

    def prefer(prompt: list[dict], first: str, second: str) -> str:
        key = json.dumps(prompt, sort_keys=True)
        todo = [x for x in dict.fromkeys((first, second)) if (key, x) not in seen]
        if todo:
            scores = scorer.score([[*prompt, {"role": "assistant", "content": x}] for x in todo])
            seen.update({(key, x): r for x, r in zip(todo, scores)})
        a, b = seen[key, first], seen[key, second]
        return "first" if a - b > margin else "second" if b - a > margin else "tie"

    return prefer


def judge_messages(prompt: list[dict], first: str, second: str, rubric: str) -> list[dict]:
    question = reply_text(prompt[-1]["content"])
    text = (f"{rubric}\n\nQuestion:\n{question}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\n"
            "Which answer is better? Reply with A or B.")
    return [{"role": "user", "content": text}]


class ModelJudge:
    """A chat model as judge: the verdict is whichever of "A" / "B" it finds more likely.

    `prefetch` scores many (prompt, first, second) at once, prompts of similar length in one
    forward pass (`batched_logprobs`); a call then reads its verdict, or scores that one pair alone.
    One pair per forward pass spent most of its time in per-call overhead."""

    def __init__(self, model: torch.nn.Module, tok: TokenizerLike, rubric: str = DEFAULT_RUBRIC,
                 batch_tokens: int = 4096):
        self.model, self.tok, self.rubric, self.batch_tokens = model, tok, rubric, batch_tokens
        end = tok.end_of_turn_id
        self.choices = [tok.encode("A") + [end], tok.encode("B") + [end]]
        self.seen: dict[str, str] = {}

    @staticmethod
    def _key(prompt: list[dict], first: str, second: str) -> str:
        return json.dumps([prompt, first, second], sort_keys=True)

    def prefetch(self, triples: Sequence[tuple[list[dict], str, str]]) -> None:
        todo = {self._key(*t): t for t in triples if self._key(*t) not in self.seen}
        items = [MCItem(self.tok.render_prompt(judge_messages(p, a, b, self.rubric)), self.choices, 0)
                 for p, a, b in todo.values()]
        for key, ((la, _), (lb, _)) in zip(todo, batched_logprobs(self.model, items, self.batch_tokens)):
            self.seen[key] = "first" if la > lb else "second" if lb > la else "tie"

    def __call__(self, prompt: list[dict], first: str, second: str) -> str:
        key = self._key(prompt, first, second)
        if key not in self.seen:
            self.prefetch([(prompt, first, second)])
        return self.seen[key]


def model_judge(model: torch.nn.Module, tok: TokenizerLike, rubric: str = DEFAULT_RUBRIC) -> Prefer:
    """A chat model as judge (`ModelJudge`)."""
    return ModelJudge(model, tok, rubric)


def both_orders(prefer: Prefer, prompt: list[dict], reply_a: str, reply_b: str) -> tuple[str, list[str]]:
    """Winner ("a" | "b" | "tie") over both presentation orders, and the two raw verdicts."""
    v1 = prefer(prompt, reply_a, reply_b)  # a shown first
    v2 = prefer(prompt, reply_b, reply_a)  # b shown first
    w1 = {"first": "a", "second": "b", "tie": "tie"}[v1]
    w2 = {"first": "b", "second": "a", "tie": "tie"}[v2]
    if w1 == w2:
        return w1, [w1, w2]
    if "tie" in (w1, w2):  # one order decides, the other cannot tell: the decided one stands
        return (w1 if w2 == "tie" else w2), [w1, w2]
    return "tie", [w1, w2]  # each order favours whichever sits in the same slot: position bias


def cut_to_words(text: str, n_words: int) -> str:
    """The first `n_words` words of `text` (its own spacing kept up to the cut).

    >>> cut_to_words("The answer is 84.", 2)
    'The answer'
    """
    words = text.split()
    if len(words) <= n_words:
        return text
    end, pos = 0, 0
    for w in words[:n_words]:
        pos = text.index(w, pos)
        end = pos = pos + len(w)
    return text[:end]


def same_words(a: str, b: str) -> tuple[str, str]:
    """Both replies cut to the shorter one's word count: a judge that likes length cannot tell."""
    n = min(len(a.split()), len(b.split()))
    return cut_to_words(a, n), cut_to_words(b, n)


@dataclass
class JudgeSummary:
    wins_a: int
    wins_b: int
    ties: int
    consistent: float  # fraction of prompts where both orders gave the same verdict
    scores_b: list[float] | None = None  # per prompt: 1 if B wins, 0.5 a tie, 0 if A wins

    def as_dict(self) -> dict:
        n = self.wins_a + self.wins_b + self.ties
        out = {"wins_a": self.wins_a, "wins_b": self.wins_b, "ties": self.ties, "n": n,
               "win_rate_b": (self.wins_b + 0.5 * self.ties) / n, "consistent": self.consistent}
        if self.scores_b:
            lo, hi = bootstrap_ci(self.scores_b, n=2000)
            out.update(ci95=[lo, hi], sign_test_p=sign_test(self.wins_b, self.wins_a))
        return out


def judge_all(prefer: Prefer, prompts: Sequence[list[dict]], replies_a: Sequence[str], replies_b: Sequence[str],
              name_a: str, name_b: str, judge: str) -> tuple[list[dict], JudgeSummary]:
    """Votes (arena's JSONL records, with the prompt, replies and per-order verdicts) + a summary."""
    votes, agree = [], 0
    if (prefetch := getattr(prefer, "prefetch", None)) is not None:  # a judge that scores in batches (ModelJudge)
        prefetch([t for p, a, b in zip(prompts, replies_a, replies_b, strict=True) for t in ((p, a, b), (p, b, a))])
    for prompt, a, b in zip(prompts, replies_a, replies_b, strict=True):
        winner, orders = both_orders(prefer, prompt, a, b)
        agree += orders[0] == orders[1]
        votes.append({"model_a": name_a, "model_b": name_b, "winner": winner, "judge": judge,
                      "orders": orders, "prompt": reply_text(prompt[-1]["content"]), "reply_a": a, "reply_b": b})
    count = {w: sum(v["winner"] == w for v in votes) for w in ("a", "b", "tie")}
    scores = [{"a": 0.0, "b": 1.0, "tie": 0.5}[v["winner"]] for v in votes]
    return votes, JudgeSummary(count["a"], count["b"], count["tie"], agree / max(len(votes), 1), scores)
