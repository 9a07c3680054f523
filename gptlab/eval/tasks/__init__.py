"""Tasks: data, scoring and reward in one object, used by SFT mixtures, evaluation and RL alike.

    play_speaker     who speaks this Shakespeare line (MC over 4 speakers of the play, or generative)
    play_title       which play the line is from (MC over 4 titles, or generative)
    continue_speech  continue a speech from its first lines (scored on the first 5 words)
    arithmetic       2-3 operand + - * problems; the reference answer calls the calculator tool
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

from gptlab.eval.tasks.arithmetic import Arithmetic
from gptlab.eval.tasks.base import Item, Task, extract_number, normalise, reference_completion
from gptlab.eval.tasks.chitchat import ChitChat
from gptlab.eval.tasks.gym import Gym
from gptlab.eval.tasks.identity import Identity
from gptlab.eval.tasks.plays import ContinueSpeech, PlaySpeaker, PlayTitle

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (PlaySpeaker, PlayTitle, ContinueSpeech, Arithmetic, Identity, ChitChat, Gym)
}


def get_task(name: str, split: str = "train", **kw) -> Task:
    """Build task `name` for `split`; keyword arguments go to its constructor (seed=, plays=, ...)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name](split, **kw)


def task_names(spec: str, scorable: bool = False) -> list[str]:
    """A `--tasks` value, 'a,b' -> ['a', 'b']: each a known task (one with a verifier when
    `scorable`), else an InputError that lists the choices."""
    from gptlab.errors import InputError

    names = [t for t in spec.split(",") if t]
    ok = [n for n, c in TASKS.items() if c.scorable or not scorable]
    for t in names:
        if t not in ok:
            raise InputError(None, f"--tasks: {t!r} is not a {'scorable ' * scorable}task ({', '.join(ok)})")
    return names


__all__ = [
    "TASKS",
    "Item",
    "Task",
    "extract_number",
    "get_task",
    "normalise",
    "reference_completion",
    "task_names",
]
