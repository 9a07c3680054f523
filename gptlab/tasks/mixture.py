"""The SFT mixture: conversations drawn from several tasks, shuffled together.

The default sizes fit a ~3-minute CPU SFT of the tiny model: about 6,400 conversations, one in six
of them real chats (so the model learns to talk; they hold most of the tokens), the rest short
tasks with checkable answers. Arithmetic has the most: copying the operands into the calculator call is
what the tiny model learns slowest, and twice the problems raised its held-out accuracy in the
measurements of docs/benchmarks.md (Alignment).
Identity has only ~70 train items, so it repeats: that repetition is what makes the name stick.
"""

from __future__ import annotations

import random

from gptlab.data import corpora
from gptlab.data.chats import Chat
from gptlab.data.plays import Play
from gptlab.tasks import TASKS, get_task

DEFAULT_SIZES: dict[str, int] = {
    "chitchat": 1000,
    "arithmetic": 4000,  # short, but copying operands into the tool call takes many examples
    "identity": 300,
    "play_speaker": 400,
    "play_title": 400,
    "continue_speech": 300,
}


def sft_mixture(
    split: str = "train",
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    *,
    plays: list[Play] | None = None,
    chats: list[Chat] | None = None,
) -> list[list[dict]]:
    """`sizes[name]` conversations of each task, shuffled by `seed`.

    A size above a task's length cycles through its items again on the train split; on the
    test split it is capped at the task's length (a repeated test item measures nothing twice).
    `plays` / `chats` default to the embedded corpora, loaded once for all tasks that use them.

    >>> convs = sft_mixture(sizes={"arithmetic": 3, "identity": 2})
    >>> len(convs), [m["role"] for m in convs[0]][-1]
    (5, 'assistant')
    """
    sizes = DEFAULT_SIZES if sizes is None else sizes
    play_tasks = {"play_speaker", "play_title", "continue_speech"}
    if plays is None and play_tasks & {k for k, n in sizes.items() if n > 0}:
        plays = corpora.load_plays()
    if chats is None and sizes.get("chitchat", 0) > 0:
        chats = corpora.load_chats()
    conversations: list[list[dict]] = []
    for name, n in sizes.items():
        if n <= 0:
            continue
        kw: dict = {"seed": seed}
        if name in play_tasks:
            kw["plays"] = plays
        elif name == "chitchat":
            kw["chats"] = chats
        elif TASKS[name].generated:
            kw["size"] = n  # generated: make as many as asked, no repeats
        task = get_task(name, split, **kw)
        if len(task) == 0:
            raise ValueError(f"task {name!r} has no {split} items")
        count = n if split == "train" else min(n, len(task))
        conversations += [task.example(i % len(task)).messages for i in range(count)]
    random.Random(f"mixture:{seed}").shuffle(conversations)
    return conversations
