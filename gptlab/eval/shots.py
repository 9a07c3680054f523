"""Few-shot demonstrations picked per test item: the first K, K at random, or the K nearest (BM25).

Liu et al. (2021, "What Makes Good In-Context Examples for GPT-3?") showed that *which* training
examples sit in the prompt matters: for each test question they retrieve the training examples
whose questions are nearest to it (kNN demonstrations), and these beat randomly drawn ones. Here
nearness is BM25 over the question text, tokenized as `gptlab.rag.index` tokenizes documents
(lower-cased words of 2+ characters, stopwords kept), so numbers, names and a play's title count.

    first   the train split's first K items, the same for every test item (the classic few-shot)
    random  K train items drawn for each test item, seeded by --seed and the item's question
    bm25    the K train items whose questions score highest against the test question

The pool is the task's train split, disjoint from the test split by construction. A pool item
whose question is the test question itself is never picked all the same, so a pool that holds the
item (a dev split scored against itself) cannot show the model its own answer. The picked shots
are placed nearest last: the most similar demonstration sits right before the question (Liu et
al. found that order a little better than the reverse).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from gptlab.rag.index import tokenize
from gptlab.tasks.base import Item, Task, reply_text

PICKS = ("first", "random", "bm25")


def train_split(task: Task) -> Task:
    """The task rebuilt on split="train" from the constructor inputs it keeps (`seed`, `plays`, `chats`)."""
    kw: dict = {"seed": task.seed}
    for attr in ("plays", "chats"):
        if hasattr(task, attr):
            kw[attr] = getattr(task, attr)
    return type(task)("train", **kw)


def question_text(task: Task, item: Item) -> str:
    """What retrieval compares: the text of the item's user turns.

    >>> from gptlab.tasks import get_task
    >>> question_text(get_task("arithmetic", "test", size=1), Item([{"role": "user", "content": "What is 2 + 3?"},
    ...     {"role": "assistant", "content": "5"}]))
    'What is 2 + 3?'
    """
    return "\n".join(reply_text(m["content"]) for m in task.prompt(item) if m["role"] == "user")


class ShotPicker:
    """Picks K demonstrations for a test item from a pool of (train) items, by `how` (see PICKS).

    `pool_size` keeps only the pool's first N items (None: all of them); BM25 indexes the pool once.
    """

    def __init__(self, pool: Task, how: str = "bm25", seed: int = 0, pool_size: int | None = None):
        if how not in PICKS:
            raise ValueError(f"shot pick must be one of {PICKS}, got {how!r}")
        self.pool, self.how, self.seed = pool, how, seed
        n = len(pool) if pool_size is None else min(pool_size, len(pool))
        self.items = [pool.example(i) for i in range(n)]
        self.texts = [question_text(pool, it) for it in self.items]
        self.bm25 = None
        if how == "bm25" and self.items:
            import bm25s  # ~0.4 s (scipy): only when retrieval is asked for

            self.bm25 = bm25s.BM25()
            self.bm25.index(tokenize(self.texts, None), show_progress=False)

    def pick(self, item: Item, k: int) -> list[int]:
        """Indices into the pool of `k` demonstrations for `item`, nearest first for bm25.

        Never the item's own question; bm25 fills any places that no pool question shares a
        word with in pool order, so it always returns min(k, pool size minus the item) indices.
        """
        query = question_text(self.pool, item)
        allowed = [i for i, t in enumerate(self.texts) if t != query]
        k = min(k, len(allowed))
        if k <= 0:
            return []
        if self.how == "first":
            return allowed[:k]
        if self.how == "random":
            return random.Random(f"{self.seed}:{query}").sample(allowed, k)
        return self._nearest(query, allowed, k)

    def _nearest(self, query: str, allowed: list[int], k: int) -> list[int]:
        """BM25's top `k` of `allowed` for `query`; ties (and words in no pool question) keep pool order."""
        assert self.bm25 is not None
        scores = np.zeros(len(self.texts))
        ids = self.bm25.get_tokens_ids(tokenize([query], None)[0])
        if ids:
            scores = np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float64)
        cand = np.asarray(allowed)
        order = cand[np.lexsort((cand, -scores[cand]))]  # best score first, then earlier in the pool
        return [int(i) for i in order[:k]]

    def messages(self, item: Item, k: int) -> list[dict]:
        """The picked demonstrations as whole conversations; for bm25 nearest last (next to the question)."""
        picked = self.pick(item, k)
        out: list[dict] = []
        for i in reversed(picked) if self.how == "bm25" else picked:
            out += [dict(m) for m in self.items[i].messages]
        return out


def shot_messages(task: Task, shots: int) -> list[dict]:
    """The first `shots` items of the task's train split, whole (question and reference reply).

    The task is rebuilt with split="train" and the same constructor inputs it keeps (`plays`,
    `chats`), so shots are disjoint from the test items by the task's own construction.
    """
    if shots <= 0:
        return []
    train = train_split(task)
    return [m for i in range(min(shots, len(train))) for m in train.example(i).messages]


def item_shots(task: Task, items: Sequence[Item], shots: int, how: str = "first", seed: int = 0) -> list[list[dict]]:
    """Demonstration messages for each of `items`, from the task's train split, picked by `how`.

    "first" gives every item the same shots (the train split's first `shots` items, in order), as
    `gptlab eval --shots` always has; "random" and "bm25" build a `ShotPicker` over the whole train split.
    """
    if shots <= 0:
        return [[] for _ in items]
    if how == "first":
        fixed = shot_messages(task, shots)
        return [[dict(m) for m in fixed] for _ in items]
    picker = ShotPicker(train_split(task), how, seed)
    return [picker.messages(it, shots) for it in items]
