"""Task prompts for evaluation, and generative scoring: plain, step by step, self-consistency.

A task item holds a conversation; evaluation asks the model for the last assistant turn:

    gen   greedy reply, scored by the task (`task.evaluate`: answer extraction + exact match)
    cot   the same with "Let's think step by step." after the question (Kojima et al. 2022)
    sc    N sampled step-by-step replies; the majority extracted answer wins (Wang et al. 2022)

Few-shot examples come from the task's *train* split (never the test split being scored), as
earlier user/assistant turns, tool calls included, so the model sees the format it must follow:
the first K for every item, or K picked per item at random or by BM25 (`gptlab.eval.shots`).
Tree of thoughts, a search over reasoning steps, is `gptlab.eval.tree_of_thoughts`.

A base model has never seen the chat tokens, so multiple choice can also be asked as plain text
(`fmt="text"`): "Question: ...\\nAnswer:" + " " + choice, as lm-eval-harness asks base models.

Besides accuracy, each generative result reports the mean reward (`task.reward`, what RL
maximises) and the policy's mean next-token entropy over its own reply (teacher-forced), the
figure that RL and SFT drive down.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm import tqdm

from gptlab.eval.multiple_choice import MCItem
from gptlab.eval.shots import item_shots, shot_messages  # noqa: F401 - shot_messages is also eval's API here
from gptlab.tasks.base import Item, Task, extract_number, normalise, reply_text

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike

MODES = ("gen", "cot", "sc")
STEP_BY_STEP = "Let's think step by step."


def chat_prompt(task: Task, item: Item, shots: Sequence[dict] = (), cot: bool = False) -> list[dict]:
    """Shots + the item's prompt; with `cot`, the last user turn ends with the step-by-step cue."""
    messages = [*shots, *[dict(m) for m in task.prompt(item)]]
    if cot:
        last = messages[-1]
        last["content"] = f"{last['content']}\n\n{STEP_BY_STEP}"
    return messages


def text_prompt(task: Task, item: Item, shots: Sequence[dict] = ()) -> str:
    """Plain-text form for base models: 'Question: ...\\nAnswer: ...' blocks, the last unanswered."""
    blocks = []
    turns = [*shots, *task.prompt(item)]
    for m in turns:
        text = reply_text(m["content"])
        if m["role"] == "user":
            blocks.append(f"Question: {text}\nAnswer:")
        elif m["role"] == "assistant":
            blocks[-1] += f" {text}\n\n"
    return "".join(blocks)


def mc_item(tok: TokenizerLike, task: Task, item: Item, shots: Sequence[dict] = (), fmt: str = "chat") -> MCItem:
    """An MCItem for `multiple_choice.score_multiple_choice`.

    chat: context = the rendered prompt ending in the assistant header; each choice is its text +
    the end-of-turn token (a complete reply, so "Romeo" does not win by being the prefix of "Romeo and Juliet").
    text: context = BOS + the plain-text prompt; each choice is " " + its text (lm-eval's way).
    """
    if not item.choices or item.label is None:
        raise ValueError(f"task {task.name!r} has no multiple-choice items")
    if fmt == "chat":
        ctx = tok.render_prompt(chat_prompt(task, item, shots))
        choices = [tok.encode(c) + [tok.end_of_turn_id] for c in item.choices]
        nbytes = [len(c.encode("utf-8")) for c in item.choices]
    elif fmt == "text":
        ctx = [tok.eot_id] + tok.encode(text_prompt(task, item, shots))
        choices = [tok.encode(" " + c) for c in item.choices]
        nbytes = [len((" " + c).encode("utf-8")) for c in item.choices]
    else:
        raise ValueError(f"fmt must be 'chat' or 'text', got {fmt!r}")
    return MCItem(ctx, choices, item.label, nbytes)


def answer_extractor(task: Task, item: Item) -> Callable[[str], str | None]:
    """What self-consistency votes on: the number for numeric answers, else the choice named,
    else the normalised reply."""
    if item.answer is not None and extract_number(item.answer) == item.answer:
        return extract_number
    if item.choices:
        return lambda text: next((c for c in item.choices if task.evaluate(_as(item, c), text)), None)
    return lambda text: normalise(text) or None


def _as(item: Item, answer: str) -> Item:
    """The item with `answer` as its reference, to ask the task 'does this reply name `answer`?'."""
    return Item(item.messages, answer, item.choices, item.choices.index(answer), item.meta)


@dataclass
class GenResult:
    correct: bool
    reward: float
    completion: str  # the reply that was scored (for sc: the first reply with the majority answer)
    answer: str | None  # the extracted answer
    entropy: float  # mean next-token entropy (nats) over the scored reply's tokens
    n_tokens: int
    votes: dict[str, int] | None = None  # sc only
    stopped: bool = False  # the reply ended with the end-of-turn token (not cut by max_new_tokens)
    tool_calls: int = 0  # tool calls in the scored reply (the calculator, the python sandbox)
    gen_tokens: int | None = None  # every token generated for the item (sc: all N replies); None: n_tokens
    any_correct: bool | None = None  # sc only: some reply of the N is right (what a perfect selector would score)


def generate_scores(
    engine: Engine,
    tok: TokenizerLike,
    task: Task,
    items: Sequence[Item],
    mode: str = "gen",
    shots: int = 0,
    n_samples: int = 5,
    temperature: float = 0.8,
    max_new_tokens: int = 64,
    seed: int = 0,
    progress: bool = False,
    prompt_ids: Sequence[list[int]] | None = None,
    shot_pick: str = "first",
) -> list[GenResult]:
    """Generate and score a reply per item (see the module docstring for the modes).

    `prompt_ids` (one per item) replace the prompts the mode and shots would render, so a caller
    can try its own wording (a trigger phrase: `gptlab.eval.prompt_search`) and still decode and
    score exactly as every other evaluation does.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if prompt_ids is not None:
        if len(prompt_ids) != len(items):
            raise ValueError(f"{len(prompt_ids)} prompts for {len(items)} items")
        prompts = [list(p) for p in prompt_ids]
    else:
        fewshot = item_shots(task, items, shots, shot_pick, seed)
        prompts = [tok.render_prompt(chat_prompt(task, it, s, cot=mode != "gen")) for it, s in zip(items, fewshot)]
    if any(len(p) >= engine.max_len - 1 for p in prompts):
        raise ValueError(f"a prompt does not fit the model's context ({engine.max_len}); use fewer --shots")
    n = n_samples if mode == "sc" else 1
    rows = [p for p in prompts for _ in range(n)]
    # Greedy for gen/cot, seeded sampling for sc (row j samples with seed + j, whatever its batch).
    # One call keeps the engine's slots refilled (continuous batching) to the last row; the bar
    # moves as rows finish; each reply's entropy comes from the decode's own logits.
    kw = {"temperature": 0.0} if mode != "sc" else {"temperature": temperature, "seed": seed}
    bar = tqdm(total=len(rows), desc=f"{task.name} {mode}", unit="reply", disable=not progress)
    # the engine also stops a row when the context is full
    outs, ents = engine.generate_with_entropy(rows, max_new_tokens, on_done=lambda _: bar.update(1), **kw)
    bar.close()
    results = []
    for k, item in enumerate(items):
        extract = answer_extractor(task, item)
        parsed = [tok.parse_assistant(ids) for ids in outs[k * n : (k + 1) * n]]
        replies = [(ids, reply_text(parts)) for ids, parts in zip(outs[k * n : (k + 1) * n], parsed)]
        answers = [extract(text) for _, text in replies]
        votes = Counter(a for a in answers if a is not None)
        pick = 0
        if mode == "sc" and votes:
            pick = answers.index(votes.most_common(1)[0][0])  # ties: the answer seen first
        ids, text = replies[pick]
        results.append(
            GenResult(
                correct=bool(task.evaluate(item, text)),
                reward=float(task.reward(item, text)),
                completion=text,
                answer=answers[pick],
                entropy=ents[k * n + pick],
                n_tokens=len(ids),
                votes=dict(votes) if mode == "sc" else None,
                stopped=bool(ids) and ids[-1] in engine.eos_ids,
                tool_calls=sum(p["type"] == "tool_call" for p in parsed[pick]),
                gen_tokens=sum(len(i) for i, _ in replies),
                any_correct=any(task.evaluate(item, t) for _, t in replies) if mode == "sc" else None,
            )
        )
    return results


def summarise(results: Sequence[GenResult]) -> dict:
    """acc, mean reward, mean entropy, mean reply length; the baseline of exact match is 0."""
    n = len(results)
    ents = [r.entropy for r in results if not math.isnan(r.entropy)]
    return {
        "acc": sum(r.correct for r in results) / n,
        "reward": sum(r.reward for r in results) / n,
        "entropy": sum(ents) / len(ents) if ents else None,
        "reply_tokens": sum(r.n_tokens for r in results) / n,
        # all tokens generated per item (sc: N replies; tot: every thought tried): compute, for
        # comparing modes at equal cost
        "gen_tokens": sum(r.n_tokens if r.gen_tokens is None else r.gen_tokens for r in results) / n,
        "stop_rate": sum(r.stopped for r in results) / n,  # a chat model must end its turns
        "tool_use_rate": sum(r.tool_calls > 0 for r in results) / n,  # replies that called a tool
        "random_baseline": 0.0,
        "n": n,
    } | _vote_summary(results)


def _vote_summary(results: Sequence[GenResult]) -> dict:
    """sc: how often some sample is right (pass@N, the ceiling of any way to pick one) and the
    majority's mean share of the votes: 1.0 when the N samples always agree, so voting has
    nothing to choose from."""
    voted = [r for r in results if r.votes is not None]
    if not voted:
        return {}
    shares = [max(r.votes.values()) / sum(r.votes.values()) for r in voted if r.votes]
    return {"pass_at_n": sum(bool(r.any_correct) for r in voted) / len(voted),
            "majority_share": sum(shares) / len(shares) if shares else None}

