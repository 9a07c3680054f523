"""What self-instruct and Evol-Instruct throw away: near duplicates by ROUGE-L, and generations a
text-only assistant should not learn from.

ROUGE-L (Lin 2004) scores two texts by their longest common subsequence (LCS) of words:
precision `lcs / len(candidate)`, recall `lcs / len(reference)`, and their F1,
`2 * lcs / (len(candidate) + len(reference))`. Self-instruct (Wang et al. 2022) keeps a new
instruction only when its ROUGE-L against every instruction already in the pool is below 0.7.

    >>> round(rouge_l("the cat sat on the mat", "the cat lay on the mat"), 4)   # LCS 5 of 6 and 6
    0.8333

The LCS is the bit-parallel algorithm of Allison and Dix (1986) as Hyyro (2004) wrote it: one
Python integer holds a row of the dynamic-programming table as bits, so a word of the candidate
costs four integer operations instead of a pass over the reference; checking a candidate against
a pool of a thousand instructions stays in the milliseconds.

Each filter returns the first reason that applies (a key of `REASONS`) or None, so the report can
say how many generations each rule threw away.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+")

# Why a generation was thrown away, in the order the checks run; the report prints these.
REASONS: dict[str, str] = {
    "prompt_too_long": "the prompt left no room for a reply in the model's context",
    "empty": "the instruction is empty",
    "too_short": "fewer than 3 words",
    "too_long": "over 150 words, or cut off at the token limit",
    "non_ascii": "mostly characters outside ASCII (other scripts, broken bytes)",
    "punctuation_start": "starts with punctuation instead of a word",
    "banned_word": "asks for what a text model cannot do (image, audio, file, ...)",
    "copies_prompt": "repeats the generation prompt's own words",
    "not_a_task": "neither a question nor a request (no task verb, no question mark)",
    "no_change": "the evolved instruction is (nearly) the parent unchanged",
    "shrank": "an in-depth evolution came out shorter than its parent",
    "near_duplicate": "ROUGE-L against an instruction in the pool at or above the threshold",
    "answer_empty": "the answer is empty or only punctuation",
    "answer_truncated": "the answer was cut off at the token limit",
    "answer_refuses": "the answer apologises or says it cannot (short refusal)",
    "answer_copies_instruction": "the answer repeats the instruction",
    "answer_repetitive": "the answer loops (repeated lines or word 3-grams)",
    "answer_non_ascii": "the answer is mostly non-ASCII or has broken bytes",
    "surplus": "kept, but --n was already reached in the same batch",
}

MIN_WORDS, MAX_WORDS = 3, 150

# Things a text-only model cannot see, hear, draw or open (Self-instruct and Alpaca drop
# instructions naming them); matched as whole words. Not "plot" (of a story), "sound" or "link"
# (between ideas): as often text tasks as not.
BANNED = (
    "image", "images", "picture", "pictures", "photo", "photos", "photograph", "video", "videos",
    "audio", "recording", "draw", "drawing", "sketch", "diagram", "chart", "graph", "graphs",
    "map", "maps", "file", "files", "attachment", "attached", "url", "webpage", "website",
    "screenshot", "flowchart",
)
_BANNED = re.compile(r"\b(" + "|".join(BANNED) + r")\b", re.IGNORECASE)

# The words of our own generation prompts (self-instruct's requests and Evol-Instruct's markers):
# an instruction that contains them copied the prompt instead of writing a task.
PROMPT_WORDS = (
    "#given prompt#", "#rewritten prompt#", "#created prompt#", "given prompt", "rewritten prompt",
    "created prompt", "rewritten instruction", "write another, different task", "task for an assistant",
)

# First words that start a request or a question. Generous on purpose: the check only catches
# fragments like "A reward for a customer's failings." that a small model writes as a "task".
_TASK_WORDS = """add analyze analyse answer arrange ask assume brainstorm build calculate can categorize change
    check choose classify combine compare compose compute construct convert correct could count create
    decide define describe design detect determine develop devise discuss do does edit estimate evaluate
    explain express extract fill find fix flag for formulate generate give given group guess help
    highlight how identify if illustrate imagine improve in is list make match name offer order organize
    organise outline paraphrase pick plan predict prepare pretend produce propose provide put rank rate
    read recommend reorder rephrase replace respond restate rewrite say select share should show simplify
    solve sort spell state suggest summarise summarize suppose take teach tell think transform translate
    turn use using verify what when where which who whom whose why will work would write"""
TASK_STARTS = frozenset(_TASK_WORDS.split())
_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|sorry, but|i (can ?not|can't|cannot|am unable|'m unable|am not able)"
    r"|as an ai|i don't have (access|the ability)|unable to (help|assist|provide))\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!:;])\s+|\n+")  # where a new sentence (or line) starts
_NUMBERING = re.compile(r"^\s*(?:(?:new |another )?task\s*\d*\s*[:.)-]|\d+\s*[.):-]|[-*]\s)\s*", re.IGNORECASE)


# ---------------------------------------------------------------------------- ROUGE-L


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits, ROUGE's tokens.

    >>> words("Don't stop -- 2 times!")
    ['don', 't', 'stop', '2', 'times']
    """
    return _WORD.findall(text.lower())


def _masks(ref: Sequence[str]) -> dict[str, int]:
    """word -> bit mask of the positions where it occurs in `ref` (bit i for ref[i])."""
    masks: dict[str, int] = {}
    for i, w in enumerate(ref):
        masks[w] = masks.get(w, 0) | (1 << i)
    return masks


def _lcs_bits(masks: dict[str, int], n_ref: int, cand: Sequence[str]) -> int:
    """LCS length of `cand` and the reference that `masks` describes (Hyyro's bit-vector form)."""
    full = (1 << n_ref) - 1
    v = full
    for w in cand:
        u = v & masks.get(w, 0)
        v = ((v + u) | (v - u)) & full
    return n_ref - v.bit_count()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two word lists.

    >>> lcs_length("a b c d".split(), "a c b d".split())
    3
    """
    return _lcs_bits(_masks(a), len(a), b)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of two texts (0.0 when either has no words)."""
    c, r = words(candidate), words(reference)
    if not c or not r:
        return 0.0
    return 2 * lcs_length(r, c) / (len(c) + len(r))


class RougePool:
    """Instructions kept so far; `most_similar` finds the closest one by ROUGE-L.

    Each entry keeps its word masks, so a check costs one bit-parallel LCS per pool entry; entries
    too short or too long to reach the threshold are skipped (the F1 is at most 2*min/(m+n)).
    """

    def __init__(self) -> None:
        self._entries: list[tuple[str, int, dict[str, int]]] = []  # (key, n words, masks)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, text: str, key: str) -> None:
        w = words(text)
        self._entries.append((key, len(w), _masks(w)))

    def most_similar(self, text: str, threshold: float = 0.0) -> tuple[float, str | None]:
        """(best ROUGE-L, its key); stops at the first entry at or above `threshold` when > 0."""
        c = words(text)
        best, best_key = 0.0, None
        if not c:
            return best, best_key
        for key, n, masks in self._entries:
            if n == 0 or 2 * min(n, len(c)) / (n + len(c)) <= best:
                continue
            score = 2 * _lcs_bits(masks, n, c) / (n + len(c))
            if score > best:
                best, best_key = score, key
                if 0 < threshold <= score:
                    break
        return best, best_key


# ---------------------------------------------------------------------------- single texts


def clean_instruction(text: str) -> str:
    """A generated instruction without list numbering, a "Task:" label or wrapping quotes.

    >>> clean_instruction('  Task 7: "Name a bird that cannot fly."  ')
    'Name a bird that cannot fly.'
    """
    text = _NUMBERING.sub("", text.strip(), count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def non_ascii_share(text: str) -> float:
    """Share of characters outside ASCII, not counting typographic punctuation (curly quotes,
    dashes: U+2000-U+206F), which models write often in English. U+FFFD counts 10 times: it is a
    broken byte sequence, never text.

    >>> non_ascii_share("It’s fine")
    0.0
    """
    if not text:
        return 0.0
    bad = sum(10 if ch == "\ufffd" else 1 for ch in text if ord(ch) > 127 and not 0x2000 <= ord(ch) <= 0x206F)
    return min(1.0, bad / len(text))


def is_repetitive(text: str) -> bool:
    """A reply that loops: a non-empty line three or more times, or (30+ words) under half of its
    word 3-grams distinct.

    >>> is_repetitive("go on. " * 20), is_repetitive("One line.\\nAnother line.")
    (True, False)
    """
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 3]
    if lines and max(lines.count(ln) for ln in set(lines)) >= 3:
        return True
    w = words(text)
    if len(w) < 30:
        return False
    grams = list(zip(w, w[1:], w[2:]))
    return len(set(grams)) < 0.5 * len(grams)


def instruction_problem(text: str) -> str | None:
    """Why a generated instruction is unusable, or None (order: the REASONS order).

    A task is a question, or has a sentence that starts with a request word ("A shirt costs 50
    dollars. Work out ..." is one; "A reward for a customer's failings." is not).

    >>> [instruction_problem(t) for t in ("Describe the picture.", "Name a bird that cannot fly.")]
    ['banned_word', None]
    """
    if not text.strip():
        return "empty"
    if len(text.split()) < MIN_WORDS:
        return "too_short"
    if len(text.split()) > MAX_WORDS:
        return "too_long"
    if non_ascii_share(text) > 0.1:
        return "non_ascii"
    if not (text[0].isalnum() or text[0] in "\"'#$"):
        return "punctuation_start"
    if _BANNED.search(text):
        return "banned_word"
    low = text.lower()
    if any(p in low for p in PROMPT_WORDS):
        return "copies_prompt"
    firsts = [w[0] for w in map(words, _SENTENCE.split(text)) if w]
    if "?" not in text and not any(w in TASK_STARTS for w in firsts):
        return "not_a_task"
    return None


def answer_problem(answer: str, instruction: str, finished: bool) -> str | None:
    """Why an answer is unusable, or None. A refusal is short and apologetic (WizardLM's rule:
    "sorry" in an answer under 80 words); a long answer that mentions it cannot do one part stays."""
    if not any(ch.isalnum() for ch in answer):
        return "answer_empty"
    if not finished:
        return "answer_truncated"
    if _REFUSAL.search(answer) and len(answer.split()) < 80:
        return "answer_refuses"
    if rouge_l(answer, instruction) >= 0.9 or answer.strip().lower().startswith(instruction.strip().lower()):
        return "answer_copies_instruction"
    if is_repetitive(answer):
        return "answer_repetitive"
    if non_ascii_share(answer) > 0.2:
        return "answer_non_ascii"
    return None


def evolution_problem(new: str, parent: str, in_depth: bool, same: float = 0.9) -> str | None:
    """Why an evolved instruction failed to evolve, or None (WizardLM's elimination rules, by
    rule instead of by asking a judge model): unchanged (ROUGE-L >= `same` with the parent), or
    shorter than the parent for an in-depth operation, which should only ever add."""
    if " ".join(words(new)) == " ".join(words(parent)) or rouge_l(new, parent) >= same:
        return "no_change"
    if in_depth and len(words(new)) < len(words(parent)):
        return "shrank"
    return None
