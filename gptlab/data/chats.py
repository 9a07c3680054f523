"""Parse chitchat's rated human conversations into Chat -> Turn."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gptlab.data.document import Document
from gptlab.errors import InputError


@dataclass
class Turn:
    speaker: str  # "A" opened the chat, "B" answered
    text: str  # the turn's messages joined with "\n"


@dataclass
class Chat:
    id: str
    prompt: str | None  # the suggested opening topic shown to both people (not spoken)
    ratings: dict[str, int] | None  # witty / upbeat / interesting, 1-10, when rated
    turns: list[Turn]


# ---------------------------------------------------------------------------- parsing chats


def parse_chats(data: object, where: str = "dataset.json") -> list[Chat]:
    """chitchat's {id: {messages: [[{text, sender, ...}, ...] per turn], ratings, prompt}}.

    The first sender is "A". Empty messages are dropped; turns left adjacent with one speaker
    merge, so turns always alternate.
    """
    if not isinstance(data, dict):
        raise InputError(where, "expected a JSON object of chats")
    chats = []
    for cid, rec in data.items():
        try:
            senders: dict[str, str] = {}
            turns: list[Turn] = []
            for group in rec["messages"]:
                texts = [m["text"].strip() for m in group if m["text"].strip()]
                if not texts:
                    continue
                who = senders.setdefault(group[0]["sender"], "AB"[min(len(senders), 1)])
                if len(senders) > 2 or any(m["sender"] != group[0]["sender"] for m in group):
                    raise ValueError("more than two people, or a turn of two senders")
                if turns and turns[-1].speaker == who:
                    turns[-1].text += "\n" + "\n".join(texts)
                else:
                    turns.append(Turn(who, "\n".join(texts)))
            ratings = rec.get("ratings")
            if ratings is not None:
                ratings = {k: int(v) for k, v in ratings.items()}
            chats.append(Chat(str(cid), rec.get("prompt"), ratings, turns))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise InputError(where, f"chat {cid!r} is malformed: {e!r}") from None
    return chats


def chat_documents(
    chats: Iterable[Chat], source: str = "chitchat", min_turns: int = 2
) -> Iterator[Document]:
    """Plain dialogue text, one document per chat with at least `min_turns` turns.

    >>> chat = Chat("c1", None, None, [Turn("A", "hi"), Turn("B", "hey\\nhow are you?")])
    >>> print(next(chat_documents([chat])).text)
    A: hi
    B: hey
    how are you?
    """
    for c in chats:
        if len(c.turns) >= min_turns:
            yield Document("\n".join(f"{t.speaker}: {t.text}" for t in c.turns), source, c.id)
