"""Where rankings come from when no person ranks: a rule, ratings, demonstrations, or a judge.

- **rule** (here): sample K answers per task prompt from the SFT model and order them by the
  task's own `reward(item, completion)` (a verifier: the arithmetic result, the right speaker).
- **judge** (here): a model asked "is this a good answer? yes or no"; the score is
  logit(yes) - logit(no).
- **ratings** (`gptlab.align.ratings`): chitchat's people rated whole chats 1-10; chats that grew
  from the same suggested opening topic are K answers to one prompt.
- **demos** (`gptlab.align.demos`): what a person wrote above the model's own sample to the same
  prompt, each cut to a random length within the shorter, so that length tells nothing.

Ties carry no signal (Bradley-Terry learns nothing from "equally good"), and a `Ranking` has no
ties, so `rankings_from_scores` (`gptlab.align.candidates`) keeps one K-ranking when all scores
differ, and otherwise only the pairs across different scores (each a K = 2 ranking; the reward
stage batches every ranking of one prompt together, so they still share a batch as InstructGPT's
K(K-1)/2 pairs do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gptlab.align.candidates import Candidates, rankings_from_scores, sample_responses
from gptlab.data.preferences import Ranking
from gptlab.infer.engine import Engine
from gptlab.tasks.base import Task, reply_text
from gptlab.tokenizer.protocol import TokenizerLike

# ---------------------------------------------------------------------------- rule


def with_reference(c: Candidates, item: Any) -> Candidates:
    """The candidates plus the task's reference reply (the demonstration) as one more answer.

    A weak policy rarely gets a task right, so its K samples often tie (all wrong) and give no
    pair; ranking the demonstration beside them (as InstructGPT's labelers saw the written
    answer beside the model's) gives every prompt a signal.
    """
    ref = item.messages[-1]["content"]
    contents = list(c.contents) if c.contents is not None else list(c.responses)
    ended = None if c.ended is None else [*c.ended, True]
    return Candidates(c.prompt, [*c.responses, reply_text(ref)], [*contents, ref], dict(c.meta, reference=len(c.responses)),
                      ended)


def rule_rankings(
    engine: Engine, tok: TokenizerLike, task: Task, n: int, k: int, progress: bool = True,
    reference: bool = False, by: str = "reward", missing_eos_penalty: float | None = None, **sampling: Any
) -> tuple[list[Ranking], dict[str, Any]]:
    """Rankings of K sampled answers to the first `n` prompts of `task`, by `task.reward`, or
    with by="correct" by the task's pass/fail verdict alone: a graded reward (the reasoning gym
    gives partial credit) otherwise also orders two wrong answers, pairs that teach a reward
    model which wrong number is nearer, not what is right. With `reference`, the task's own
    reference reply is ranked among them. `missing_eos_penalty` is taken off the score of an answer
    the token budget cut: a verifier reads a cut reply's last number, and a reply that never ends
    its turn must rank below one that does (without it, DPO on these pairs learned to retry a
    failing tool call until the budget ran out: docs/benchmarks.md).

    Returns (rankings, stats); stats counts prompts, prompts with any signal, pairs, mean reward,
    and answers cut by the budget.
    """
    items = [task.example(i) for i in range(min(n, len(task)))]
    cands = sample_responses(engine, tok, [task.prompt(it) for it in items], k, progress=progress, **sampling)
    rankings: list[Ranking] = []
    rewards: list[float] = []
    useful = cut = 0
    for item, c in zip(items, cands):
        if c is None:
            continue
        if reference:
            c = with_reference(c, item)
        if by == "correct":
            scores = [float(task.evaluate(item, text)) for text in c.responses]
        else:
            scores = [float(task.reward(item, text)) for text in c.responses]
        if c.ended is not None:
            cut += c.ended.count(False)
            if missing_eos_penalty:
                scores = [s - (0.0 if e else missing_eos_penalty) for s, e in zip(scores, c.ended)]
        rewards += scores
        got = rankings_from_scores(c, scores, {"source": "rule", "task": task.name})
        useful += bool(got)
        rankings += got
    stats = {
        "task": task.name,
        "prompts": len(items),
        "prompts_with_signal": useful,
        "rankings": len(rankings),
        "pairs": sum(len(r.pairs()) for r in rankings),
        "mean_reward": sum(rewards) / max(len(rewards), 1),
        "cut": cut,
    }
    return rankings, stats


# ---------------------------------------------------------------------------- judge model

JUDGE_TEMPLATE = "Question: {question}\nAnswer: {answer}\nIs this a good answer? Reply yes or no."


def judge_scores(
    model: torch.nn.Module, tok: TokenizerLike, prompt: list[dict], responses: Sequence[str], batch_size: int = 16
) -> list[float]:
    """logit("yes") - logit("no") of the judge's first reply token, one per response."""
    yes, no = tok.encode("yes")[0], tok.encode("no")[0]
    question = "\n".join(reply_text(m["content"]) for m in prompt if m["role"] == "user")
    limit = model.config.max_seq_len
    rows = []
    for r in responses:
        ids = tok.render_prompt([{"role": "user", "content": JUDGE_TEMPLATE.format(question=question, answer=r)}])
        rows.append(ids if len(ids) <= limit else ids[:1] + ids[len(ids) - limit + 1 :])
    device = next(model.parameters()).device
    scores: list[float] = []
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            part = rows[s : s + batch_size]
            width = max(map(len, part))
            idx = torch.full((len(part), width), tok.eot_id, dtype=torch.long, device=device)
            for b, ids in enumerate(part):
                idx[b, : len(ids)] = torch.tensor(ids)
            last = torch.tensor([len(ids) - 1 for ids in part], device=device)
            h = model.hidden_states(idx)[torch.arange(len(part), device=device), last]
            logits = model.lm_head(h).float()
            scores += (logits[:, yes] - logits[:, no]).tolist()
    return scores
