"""Item, Task and the answer helpers every task shares.

A task is a list of items. Each item holds the whole reference conversation (SFT trains on it as
is), plus what scoring needs: a reference answer for exact match and, for multiple choice, the
choices and the index of the right one. `evaluate` scores a model's reply text; `reward` turns
that into a float for RL (partial credit where a task has it).

Train and test splits are disjoint by construction: each task decides membership from a stable
hash of what identifies a problem (a scene, an expression, a chat id), never from an index, so
the same problem can never land in both splits whatever the seed or the size asked for.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

SPLITS = ("train", "test")


@dataclass
class Item:
    messages: list[dict]  # the full conversation incl. the reference assistant answer
    answer: str | None = None  # reference final answer for exact match (generative)
    choices: list[str] | None = None  # multiple choice options (None for generative-only)
    label: int | None = None  # index of the correct choice
    meta: dict = field(default_factory=dict)


class Task:
    """Base class: subclasses fill `name` and implement `__len__`, `example` and `evaluate`.

    `scorable` is False for tasks that only feed SFT (chitchat): their `evaluate` raises.
    """

    name: str = ""
    scorable: bool = True
    generated: bool = False  # True: items are drawn, and the constructor takes size= (how many)

    def __init__(self, split: str = "train", seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split, self.seed = split, seed

    def __len__(self) -> int:
        raise NotImplementedError

    def example(self, i: int) -> Item:
        raise NotImplementedError

    def __iter__(self):
        return (self.example(i) for i in range(len(self)))

    def prompt(self, item: Item) -> list[dict]:
        """The conversation up to (not including) the final assistant answer."""
        assert item.messages and item.messages[-1]["role"] == "assistant", "item has no answer"
        return item.messages[:-1]

    def evaluate(self, item: Item, completion: str) -> bool:
        raise NotImplementedError

    def reward(self, item: Item, completion: str) -> float:
        return float(self.evaluate(item, completion))

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name} {self.split} has {n} items, asked for {i}")
        return i % n

    def _rng(self, *key: object) -> random.Random:
        """A generator that depends only on the seed and `key`: example(i) needs no state."""
        return random.Random(":".join(map(str, (self.name, self.seed, *key))))


# ---------------------------------------------------------------------------- helpers


def normalise(text: str) -> str:
    """Lower case, punctuation (apostrophes too) to spaces, one space between words.

    Apostrophes split words so that "Shakespeare's" contains the word "shakespeare".

    >>> normalise("  KING Henry V.\\n")
    'king henry v'
    >>> normalise("O, 'tis  Shakespeare's!")
    'o tis shakespeare s'
    """
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def contains_phrase(haystack: str, needle: str) -> bool:
    """Whole-word containment after normalising.

    >>> contains_phrase("I think it is King Lear.", "king lear"), contains_phrase("Kingly", "king")
    (True, False)
    """
    n = normalise(needle)
    return bool(n) and f" {n} " in f" {normalise(haystack)} "


_NUMBER = re.compile(r"(?<![\w.)])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def canonical_number(s: str) -> str:
    """'1,234.50' -> '1234.5'; '-0' -> '0'; '7.0' -> '7'."""
    s = s.replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def extract_number(text: str) -> str | None:
    """The last number in `text`, canonical ('1,200.0' -> '1200'), or None.

    >>> extract_number("37*12 = 444. The answer is 444.")
    '444'
    >>> extract_number("It is -12, I think"), extract_number("5-3"), extract_number("1,250.50!")
    ('-12', '3', '1250.5')
    >>> extract_number("no digits") is None
    True
    """
    found = _NUMBER.findall(text)
    return canonical_number(found[-1]) if found else None


def reply_text(content: str | list[dict]) -> str:
    """An assistant message's content as one string: the parts' texts, tool results included.

    >>> reply_text([{"type": "text", "text": "Let me compute that."},
    ...             {"type": "tool_call", "text": "calculator: 2+3"},
    ...             {"type": "tool_result", "text": "5"}, {"type": "text", "text": "It is 5."}])
    'Let me compute that.\\ncalculator: 2+3\\n5\\nIt is 5.'
    """
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content)


def reference_completion(item: Item) -> str:
    """The reference answer of `item` as a completion string (what a perfect model replies)."""
    return reply_text(item.messages[-1]["content"])
