"""Ratings rankings: chitchat's people rated whole chats 1-10 (witty + upbeat + interesting); chats
that grew from the same suggested opening topic are K answers to one prompt (`gptlab rank ratings`)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from gptlab.data.chats import Chat
from gptlab.data.preferences import Ranking


def chat_score(chat: Chat, skip_default: bool = True) -> int | None:
    """witty + upbeat + interesting (3-30), or None when unrated.

    5/5/5 is the rating form's untouched default (41% of rated chats): `skip_default` treats it
    as unrated rather than as a real middling verdict.
    """
    if not chat.ratings:
        return None
    values = list(chat.ratings.values())
    if skip_default and values and all(v == 5 for v in values):
        return None
    return sum(values)


def transcript(chat: Chat, max_chars: int = 600) -> str:
    """The chat as "A: ...\\nB: ..." lines, cut at a line end before `max_chars`."""
    lines, size = [], 0
    for t in chat.turns:
        for j, text in enumerate(t.text.split("\n")):
            line = f"{t.speaker}: {text}" if j == 0 else text
            if size + len(line) + 1 > max_chars and lines:
                return "\n".join(lines)
            lines.append(line)
            size += len(line) + 1
    return "\n".join(lines)


def ratings_rankings(
    chats: Sequence[Chat],
    n: int,
    k: int = 4,
    seed: int = 0,
    max_chars: int = 600,
    skip_default: bool = True,
    min_gap: int = 1,
) -> list[Ranking]:
    """Up to `n` rankings of K rated chats that share an opening topic, best-rated first.

    The prompt is the topic as a user turn; each response is one chat's transcript. Chats in a
    ranking have scores at least `min_gap` apart (ties carry no signal, and a one-point
    difference between two raters' sums is mostly noise); topics take turns so all are used.
    """
    if min_gap < 1:
        raise ValueError(f"min_gap must be at least 1, got {min_gap}")
    rng = random.Random(seed)
    by_topic: dict[str, list[tuple[Chat, int]]] = defaultdict(list)
    for c in chats:
        s = chat_score(c, skip_default)
        if c.prompt and s is not None and len(c.turns) >= 2:
            by_topic[c.prompt].append((c, s))
    groups: dict[str, list[list[tuple[Chat, int]]]] = {}
    for topic in sorted(by_topic):
        pool = by_topic[topic]
        rng.shuffle(pool)
        done: list[list[tuple[Chat, int]]] = []
        open_: list[list[tuple[Chat, int]]] = []
        for cs in pool:  # first open group without this score takes the chat
            g = next((g for g in open_ if all(abs(s - cs[1]) >= min_gap for _, s in g)), None)
            if g is None:
                g = []
                open_.append(g)
            g.append(cs)
            if len(g) == k:
                open_.remove(g)
                done.append(g)
        groups[topic] = done
    out: list[Ranking] = []
    rnd = 0
    while len(out) < n and any(rnd < len(g) for g in groups.values()):
        for topic, g in groups.items():
            if rnd < len(g) and len(out) < n:
                members = g[rnd]
                scores = [s for _, s in members]
                order = sorted(range(k), key=lambda i: -scores[i])
                meta = {"source": "ratings", "ids": [c.id for c, _ in members], "scores": scores}
                prompt = [{"role": "user", "content": topic}]
                out.append(Ranking(prompt, [transcript(c, max_chars) for c, _ in members], order, meta))
        rnd += 1
    return out
