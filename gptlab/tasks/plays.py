"""Tasks with known answers from the structure of the plays: who speaks, which play, what next.

    play_speaker     "Who speaks this line in Macbeth? ..." -> "LADY MACBETH" (MC: 4 speakers of that play)
    play_title       "Which of Shakespeare's plays is this line from? ..." -> "Hamlet" (MC: 4 titles)
    continue_speech  the first lines of a speech -> the rest of it (scored on its first 5 words)

The split is by whole scene (a stable hash of play/act.scene), so a test quote is never cut from
a speech a train item shows. Shakespeare repeats himself, though ("My lord?", and a few longer
lines), so a test speech is also dropped when its quote or its continuation occurs word for word
in any train-scene speech: we keep a set of every train speech's word 4-grams, and a text whose
4-grams are all in it may be a substring of a train speech (containment implies that).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gptlab.data import corpora
from gptlab.data.plays import Play, Scene, Speech
from gptlab.data.splits import in_test
from gptlab.tasks.base import Item, Task, contains_phrase, normalise

# Speakers that are not one character: useless as an answer to "who speaks this line".
COLLECTIVE = {"ALL", "BOTH", "PROLOGUE", "EPILOGUE", "CHORUS"}
MIN_QUOTE_WORDS = 6  # shorter quotes ("Ay, my lord.") say nothing about who or where
MAX_QUOTE_LINES = 3
MIN_CONTINUATION_WORDS = 5  # continue_speech is scored on the first 5 words


@dataclass(frozen=True)
class SpeechRef:
    play: Play
    scene: Scene
    speech: Speech
    quote: str  # the speech's first lines, at least MIN_QUOTE_WORDS words
    key: str  # "macbeth/1.3#12": play/act.scene#speech index, unique and stable


def scene_key(play: Play, scene: Scene) -> str:
    return f"{play.slug}/{scene.act}.{scene.scene}"


def quote_of(speech: Speech) -> str | None:
    """The first whole lines of a speech with at least MIN_QUOTE_WORDS words, else None.

    >>> quote_of(Speech("X", ["Is this a dagger which I see before me,", "The handle..."], 1))
    'Is this a dagger which I see before me,'
    >>> quote_of(Speech("X", ["Ay.", "My lord?"], 1)) is None
    True
    """
    lines: list[str] = []
    for line in speech.lines[:MAX_QUOTE_LINES]:
        lines.append(line)
        if len(" ".join(lines).split()) >= MIN_QUOTE_WORDS:
            return "\n".join(lines)
    return None


def split_speech(speech: Speech) -> tuple[str, str] | None:
    """(prefix, continuation) at about half the lines; None if too short to continue."""
    if len(speech.lines) < 2:
        return None
    cut = max(1, len(speech.lines) // 2)
    prefix, rest = speech.lines[:cut], speech.lines[cut:]
    if len(" ".join(rest).split()) < MIN_CONTINUATION_WORDS:
        return None
    return "\n".join(prefix), "\n".join(rest)


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def speech_pool(plays: list[Play], split: str, test_frac: float) -> list[SpeechRef]:
    """Every speech with a quote in `split`, in corpus order (see the module docstring)."""
    train_grams: set[tuple[str, ...]] = set()
    refs: list[SpeechRef] = []
    for play in plays:
        for scene in play.scenes:
            is_test = in_test(scene_key(play, scene), test_frac)
            for k, sp in enumerate(scene.speeches):
                if not is_test and split == "test":  # only the test side is checked against it
                    train_grams |= _grams("\n".join(sp.lines))
                quote = quote_of(sp)
                if quote is not None and is_test == (split == "test"):
                    refs.append(SpeechRef(play, scene, sp, quote, f"{scene_key(play, scene)}#{k}"))
    if split == "train":
        return refs

    def leaks(ref: SpeechRef) -> bool:
        pieces = [ref.quote, *(split_speech(ref.speech) or ())]
        return any(_grams(p) <= train_grams for p in pieces)

    return [r for r in refs if not leaks(r)]


class _PlayTask(Task):
    """Shared by the three play tasks: a pool of speeches from one split, shuffled by seed."""

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        plays: list[Play] | None = None,
        test_frac: float = 0.1,
    ):
        super().__init__(split, seed)
        if plays is None:
            plays = corpora.load_plays()
        self.plays = plays
        self.refs = [r for r in speech_pool(plays, split, test_frac) if self._keep(r)]
        self._rng("order").shuffle(self.refs)

    def _keep(self, ref: SpeechRef) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.refs)


def _mc(rng, answer: str, others: list[str], k: int = 4) -> tuple[list[str], int]:
    """`answer` among k-1 distinct others, in a seeded order: (choices, label)."""
    pool = sorted(set(others) - {answer})
    choices = rng.sample(pool, k - 1) + [answer]
    rng.shuffle(choices)
    return choices, choices.index(answer)


def _listed(question: str, choices: list[str]) -> str:
    return question + "\n\n" + "\n".join(f"{'ABCD'[j]}. {c}" for j, c in enumerate(choices))


def _picks_answer(item: Item, completion: str) -> bool:
    """The reply names the answer, and no other choice that is not part of the answer's name."""
    if not contains_phrase(completion, item.answer):
        return False
    ans = normalise(item.answer)
    return not any(
        contains_phrase(completion, c) and f" {normalise(c)} " not in f" {ans} "
        for c in item.choices or []
        if c != item.answer
    )


class _QuoteQuestion(_PlayTask):
    """A question about a quoted line whose answer is one of a pool (MC: answer + 3 of the pool).

    Subclasses say what the answer is, what the pool is, and how the question is worded.
    """

    def __init__(self, *args, show_choices: bool = False, **kw):
        self.show_choices = show_choices
        super().__init__(*args, **kw)

    def answer_of(self, ref: SpeechRef) -> str:
        raise NotImplementedError

    def pool_of(self, ref: SpeechRef) -> list[str]:
        raise NotImplementedError

    def wordings(self, ref: SpeechRef) -> list[str]:
        raise NotImplementedError

    def example(self, i: int) -> Item:
        ref = self.refs[self._index(i)]
        rng = self._rng(ref.key)
        answer = self.answer_of(ref)
        choices, label = _mc(rng, answer, self.pool_of(ref))
        question = rng.choice(self.wordings(ref))
        if self.show_choices:
            question = _listed(question, choices)
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
        return Item(messages, answer, choices, label, {"key": ref.key, "quote": ref.quote})

    def evaluate(self, item: Item, completion: str) -> bool:
        return _picks_answer(item, completion)


class PlaySpeaker(_QuoteQuestion):
    """Who speaks this line? Choices: the speaker + 3 other named speakers of the same play.

    Only speakers with at least `min_speeches` speeches in the play count (as answers and as
    distractors), so the choices are characters, not "Second Servant".
    """

    name = "play_speaker"

    def __init__(self, *args, min_speeches: int = 5, **kw):
        self.min_speeches = min_speeches
        self._cast: dict[str, list[str]] = {}
        super().__init__(*args, **kw)

    def cast(self, play: Play) -> list[str]:
        """The named speakers of `play` with at least `min_speeches` speeches, sorted."""
        if play.slug not in self._cast:
            n = Counter(sp.speaker for sc in play.scenes for sp in sc.speeches)
            self._cast[play.slug] = sorted(
                s for s, c in n.items() if c >= self.min_speeches and s.upper() not in COLLECTIVE
            )
        return self._cast[play.slug]

    def _keep(self, ref: SpeechRef) -> bool:
        cast = self.cast(ref.play)
        return ref.speech.speaker in cast and len(cast) >= 4

    def answer_of(self, ref: SpeechRef) -> str:
        return ref.speech.speaker

    def pool_of(self, ref: SpeechRef) -> list[str]:
        return self.cast(ref.play)

    def wordings(self, ref: SpeechRef) -> list[str]:
        return [
            f"Who speaks this line in {ref.play.title}?\n\n{ref.quote}",
            f"In {ref.play.title}, which character says:\n\n{ref.quote}",
            f"Here is a line from {ref.play.title}:\n\n{ref.quote}\n\nWho says it?",
        ]


class PlayTitle(_QuoteQuestion):
    """Which play is this line from? Choices: the play + 3 other titles of the corpus."""

    name = "play_title"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        if len({p.title for p in self.plays}) < 4:
            raise ValueError("play_title needs at least 4 plays for its choices")

    def answer_of(self, ref: SpeechRef) -> str:
        return ref.play.title

    def pool_of(self, ref: SpeechRef) -> list[str]:
        return [p.title for p in self.plays]

    def wordings(self, ref: SpeechRef) -> list[str]:
        return [
            f"Which of Shakespeare's plays is this line from?\n\n{ref.quote}",
            f"Name the play:\n\n{ref.quote}",
            f"{ref.quote}\n\nWhich play is that from?",
        ]


class ContinueSpeech(_PlayTask):
    """Given the first half of a speech, write the rest. Scored on the first `match_words` words."""

    name = "continue_speech"

    def __init__(self, *args, match_words: int = MIN_CONTINUATION_WORDS, **kw):
        self.match_words = match_words
        super().__init__(*args, **kw)

    def _keep(self, ref: SpeechRef) -> bool:
        return split_speech(ref.speech) is not None

    def example(self, i: int) -> Item:
        ref = self.refs[self._index(i)]
        prefix, rest = split_speech(ref.speech)
        who = ref.speech.speaker
        question = self._rng(ref.key).choice(
            [
                f"Continue this speech by {who} from {ref.play.title}:\n\n{prefix}",
                f"{who} in {ref.play.title} begins:\n\n{prefix}\n\nHow does the speech go on?",
            ]
        )
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": rest},
        ]
        return Item(messages, rest, meta={"key": ref.key, "prefix": prefix})

    def evaluate(self, item: Item, completion: str) -> bool:
        want = normalise(item.answer).split()[: self.match_words]
        return normalise(completion).split()[: len(want)] == want
