"""Real multi-turn human chats (chitchat-dataset) as user/assistant conversations, for SFT.

The person who opened the chat ("A") is the user, the one who answered ("B") the assistant.
Turns by one speaker are already merged by the parser; a chat is cut to `max_turns` turns and
ends on an assistant turn; chats with no assistant turn are left out. The split is a stable
hash of the chat id.

There is no right answer to chat, so this task is not scorable: `evaluate` raises
NotImplementedError and `scorable` is False (judge it with a reward model or a judge instead).
"""

from __future__ import annotations

from gptlab.data import corpora
from gptlab.data.chats import Chat
from gptlab.data.splits import in_test
from gptlab.tasks.base import Item, Task


def chat_messages(chat: Chat, max_turns: int | None = None) -> list[dict]:
    """Alternating user/assistant messages ending with the assistant; [] if it never answers.

    >>> from gptlab.data.chats import Turn
    >>> chat = Chat("c", None, None, [Turn("A", "hi"), Turn("A", "there"), Turn("B", "hey"),
    ...                               Turn("A", "bye")])
    >>> chat_messages(chat)
    [{'role': 'user', 'content': 'hi\\nthere'}, {'role': 'assistant', 'content': 'hey'}]
    """
    messages: list[dict] = []
    for turn in chat.turns:
        role = "user" if turn.speaker == "A" else "assistant"
        if not messages and role == "assistant":
            continue  # a chat must open with the user
        if messages and messages[-1]["role"] == role:  # the parser merges these; be safe
            messages[-1]["content"] += "\n" + turn.text
        else:
            messages.append({"role": role, "content": turn.text})
    if max_turns is not None:
        messages = messages[:max_turns]
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    return messages


class ChitChat(Task):
    """One conversation per chat (the first `max_turns` turns), for SFT only."""

    name = "chitchat"
    scorable = False

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        chats: list[Chat] | None = None,
        max_turns: int | None = 8,
        test_frac: float = 0.1,
    ):
        super().__init__(split, seed)
        if chats is None:
            chats = corpora.load_chats()
        self.chats = [
            (c, m)
            for c in chats
            if in_test(c.id, test_frac) == (split == "test") and (m := chat_messages(c, max_turns))
        ]
        self._rng("order").shuffle(self.chats)

    def __len__(self) -> int:
        return len(self.chats)

    def example(self, i: int) -> Item:
        chat, messages = self.chats[self._index(i)]
        meta = {"id": chat.id, "prompt": chat.prompt, "ratings": chat.ratings}
        return Item([dict(m) for m in messages], meta=meta)  # copies: callers may edit them

    def evaluate(self, item: Item, completion: str) -> bool:
        raise NotImplementedError(
            "chitchat has no reference answer to score against; it is for SFT only "
            "(check Task.scorable before evaluating)"
        )
