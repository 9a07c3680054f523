"""Demonstration rankings: what a person wrote (a chat turn, a real speech) above the model's own
sample to the same prompt, each cut to a random length within the shorter, so that length tells
nothing (`gptlab rank demos`)."""

from __future__ import annotations

import random
from typing import Any

from gptlab.align.candidates import sample_responses
from gptlab.data.preferences import Ranking
from gptlab.infer.engine import Engine
from gptlab.tasks.base import Task
from gptlab.tokenizer.protocol import TokenizerLike


def cut_words(text: str, n_chars: int) -> str:
    """The longest run of whole words from the start of `text` within `n_chars` (at least one word).

    >>> cut_words("to be or not to be", 9), cut_words("to be", 40), cut_words("wherefore art", 3)
    ('to be or', 'to be', 'wherefore')
    """
    if len(text) <= n_chars:
        return text
    head = text[: n_chars + 1]
    cut = max(head.rfind(" "), head.rfind("\n"))
    return text[:cut].rstrip() if cut > 0 else text.split(maxsplit=1)[0]


def demo_turn(messages: list[dict], max_prompt_tokens: int, tok: TokenizerLike) -> tuple[list[dict], str] | None:
    """(prompt, reference reply) at the latest assistant text turn whose prompt fits, else None."""
    for j in range(len(messages) - 1, 0, -1):
        m = messages[j]
        written = m["role"] == "assistant" and isinstance(m["content"], str) and m["content"].strip()
        if written and len(tok.render_prompt(messages[:j])) <= max_prompt_tokens:
            return messages[:j], m["content"]
    return None


def demo_rankings(
    engine: Engine, tok: TokenizerLike, task: Task, n: int, k: int, max_new_tokens: int = 48,
    seed: int = 0, cut: tuple[float, float] = (0.5, 1.0), progress: bool = True, **sampling: Any
) -> tuple[list[Ranking], dict[str, Any]]:
    """The written reply (a person's chat turn, the rest of a real speech) ranked above each of K
    replies sampled from the model to the same prompt, each cut to a random length within the shorter.

    The preference of SPIN-style self-play: what people wrote beats what the model says. Left
    as they are, such pairs teach length (a person's turn is usually longer than a short sample),
    so each text is cut, at a word boundary, to its own random fraction in `cut` of the shorter
    reply's characters. Neither length nor "which one was cut" then tells the winner (either text
    is the longer, or the uncut one, by chance), and because lengths still vary within a pair, a
    reward model that scored shortness would lose accuracy for it (with equal lengths it could
    prefer short text for free, and PPO then learned to answer in a few words). What is left to
    learn is how the words read.
    Returns (rankings, stats); each ranking is one K = 2 pair with meta source "demos".
    """
    rng = random.Random(f"demos:{task.name}:{seed}")
    room = engine.max_len - max_new_tokens
    items, prompts, refs = [], [], []
    for i in range(len(task)):
        if len(items) == n:
            break
        got = demo_turn(task.example(i).messages, room, tok)
        if got is not None:
            items.append(i)
            prompts.append(got[0])
            refs.append(got[1])
    cands = sample_responses(engine, tok, prompts, k, max_new_tokens, seed=seed, progress=progress, **sampling)
    rankings: list[Ranking] = []
    skipped = 0
    for i, ref, c in zip(items, refs, cands):
        if c is None:
            continue
        for j, sample in enumerate(c.responses):
            if c.contents is not None and not isinstance(c.contents[j], str):
                skipped += 1  # a tool call: no written counterpart to compare with
                continue
            sample = sample.strip()
            shorter = min(len(ref), len(sample))
            a = cut_words(ref, int(shorter * rng.uniform(*cut)))
            b = cut_words(sample, int(shorter * rng.uniform(*cut)))
            if len(a.split()) < 3 or len(b.split()) < 3 or a == b:
                skipped += 1
                continue
            meta = {"source": "demos", "task": task.name, "item": i, "sample": j}
            rankings.append(Ranking(c.prompt, [a, b], [0, 1], meta))
    stats = {"task": task.name, "prompts": len(items), "pairs": len(rankings), "skipped": skipped}
    return rankings, stats
