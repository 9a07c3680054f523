"""Tasks: data, scoring and reward in one object, used by SFT mixtures, evaluation and RL alike.

    play_speaker     who speaks this Shakespeare line (MC over 4 speakers of the play, or generative)
    play_title       which play the line is from (MC over 4 titles, or generative)
    continue_speech  continue a speech from its first lines (scored on the first 5 words)
    arithmetic       2-3 operand + - * problems; the reference answer calls the calculator tool
    arithmetic_long  3-4 operand expressions, longer than most SFT teaches: room for RL (GRPO)
    identity         what the assistant is: name, maker, size, limits (templated)
    chitchat         real multi-turn human chats, for SFT (not scorable)
    gym              a few reasoning-gym tasks, scored by reasoning-gym (needs reasoning-gym)

    >>> task = get_task("arithmetic", "test", size=3)
    >>> item = task.example(0)
    >>> task.evaluate(item, f"The answer is {item.answer}.")
    True

Every task takes `split` ("train" | "test", disjoint by construction) and `seed` (the order and
any random choices of items); `example(i)` depends on nothing else. The play and chat tasks take
`plays=` / `chats=` (default: the embedded corpora, fetched into the cache on first use).
"""

from __future__ import annotations

from collections.abc import Sequence

from gptlab.errors import InputError
from gptlab.tasks.arithmetic import Arithmetic, LongArithmetic
from gptlab.tasks.base import Item, Task, extract_number, normalise, reference_completion
from gptlab.tasks.chitchat import ChitChat
from gptlab.tasks.gym import Gym
from gptlab.tasks.identity import Identity
from gptlab.tasks.plays import ContinueSpeech, PlaySpeaker, PlayTitle

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (PlaySpeaker, PlayTitle, ContinueSpeech, Arithmetic, LongArithmetic, Identity, ChitChat, Gym)
}


def get_task(name: str, split: str = "train", **kw) -> Task:
    """Build task `name` for `split`; keyword arguments go to its constructor (seed=, plays=, ...)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name](split, **kw)


def split_names(spec: str | Sequence[str]) -> list[str]:
    """A `--tasks` value as names; commas split too, so a config file's "a,b" reads as a list.

    >>> split_names(("a", "b,c")), split_names("a,b")
    (['a', 'b', 'c'], ['a', 'b'])
    """
    values = [spec] if isinstance(spec, str) else list(spec)
    return [t for v in values for t in v.split(",") if t]


def task_names(spec: str | Sequence[str], scorable: bool = False) -> list[str]:
    """A `--tasks` value, ('a', 'b') or 'a,b' -> ['a', 'b']: each a known task (one with a
    verifier when `scorable`), else an InputError that lists the choices."""
    names = split_names(spec)
    ok = [n for n, c in TASKS.items() if c.scorable or not scorable]
    for t in names:
        if t not in ok:
            raise InputError(None, f"--tasks: {t!r} is not a {'scorable ' * scorable}task ({', '.join(ok)})")
    return names


def scorable_task(name: str, split: str = "test", seed: int = 0, extra: Sequence[str] = ()) -> Task:
    """Task `name` on `split` (held-out by default), checked to have answers to score; an
    InputError names the choices (`extra`: other names the caller accepts, e.g. bpb)."""
    if name not in TASKS:
        raise InputError(None, f"unknown task {name!r}: choose from {', '.join([*extra, *TASKS])}")
    task = get_task(name, split, seed=seed)
    if not task.scorable:
        raise InputError(None, f"task {name!r} only feeds SFT: it has no answers to score")
    return task


__all__ = [
    "TASKS",
    "Item",
    "Task",
    "extract_number",
    "get_task",
    "normalise",
    "reference_completion",
    "scorable_task",
    "split_names",
    "task_names",
]
