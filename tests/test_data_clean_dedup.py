"""Quality filters (each fails the document it should, and only that one) and deduplication:
exact copies up to case and whitespace, near copies with a few words changed, and distinct
documents all kept, on prose of a few hundred words made deterministically from a word list."""

from __future__ import annotations

import doctest
import random

import pytest

from gptlab.data import clean, dedup
from gptlab.data.clean import Filters, load_blocklist
from gptlab.data.dedup import Deduplicator, shingles
from gptlab.errors import InputError

WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if", "so", "no", "will", "can", "more", "about", "said", "what", "out", "up", "them", "into", "some", "could", "him", "time", "only", "new", "other", "then", "now", "may", "these", "its", "two", "like", "people", "first", "any", "very", "after", "most", "made", "over", "such", "where", "years", "through", "back", "much", "before", "good", "should", "because", "each", "those", "long", "little", "world", "still", "own", "well", "between", "never", "under", "last", "might", "great", "same", "while", "another", "house", "river", "morning", "night", "garden", "letter", "window", "road", "city", "water", "light", "voice", "friend", "mother", "father", "child", "king", "stone", "field", "bread", "fire", "winter", "summer", "market", "ship", "sea", "mountain", "forest", "village", "teacher", "doctor", "soldier", "farmer", "music", "story", "paper", "table", "door", "street", "evening", "honest", "quiet", "bright", "heavy", "gentle", "ancient", "careful", "sudden", "narrow"]


def prose(seed: int, n_words: int = 300) -> str:
    """Deterministic sentences of 8-16 words from WORDS, capitalised and punctuated."""
    rng = random.Random(seed)
    out, count = [], 0
    while count < n_words:
        k = min(rng.randint(8, 16), n_words - count)
        sentence = [rng.choice(WORDS) for _ in range(k)]
        out.append(" ".join(sentence).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
        count += k
    return " ".join(out)


def change_words(text: str, positions: list[int], seed: int = 0) -> str:
    words = text.split(" ")
    rng = random.Random(seed)
    for p in positions:
        words[p] = rng.choice(
            [w for w in ("lantern", "harbour", "meadow", "copper") if w != words[p]]
        )
    return " ".join(words)


def test_docstring_examples():
    assert doctest.testmod(clean).failed == 0
    assert doctest.testmod(dedup).failed == 0


@pytest.mark.parametrize(
    "text, failed",
    [
        ("Too short.", "too_short"),
        ("word " * 300, "too_long"),
        (
            "<div class='x'>{{ a | b }}</div> <div>{{ c | d }}</div> <p>[1] & [2] #3 @4 $5</p>",
            "symbols",
        ),
        (
            "Buy cheap pills now\n" * 5 + "A genuine closing sentence of some length.",
            "duplicate_lines",
        ),
        ("A perfectly ordinary letter about the garden and the weather.", "blocklist"),
        ("A perfectly ordinary letter about the harbour, the river and the ships.", None),
    ],
)
def test_each_filter_drops_what_it_should(text, failed):
    filters = Filters(min_chars=20, max_chars=1000, blocklist=["WEATHER", "spam"])
    assert filters.check(text) == failed


def test_filters_switch_off_with_none():
    f = Filters(
        min_chars=None, max_chars=None, max_symbol_ratio=None, max_duplicate_line_fraction=None
    )
    for text in ["x", "{}" * 100, "same\n" * 10]:
        assert f.check(text) is None


def test_blocklist_file_is_whole_word_and_any_case(tmp_path):
    path = tmp_path / "block.txt"
    path.write_text("# words we do not want\nSpam\n\nbad word\n")
    f = Filters(min_chars=None, blocklist=load_blocklist(path))
    assert f.settings()["blocklist_words"] == 2
    assert f.check("Eggs and SPAM for breakfast.") == "blocklist"
    assert f.check("A Bad  Word here? No: 'bad word' here.") == "blocklist"
    assert f.check("The spammer sent spamming mail; a badword.") is None  # not whole words
    (tmp_path / "empty.txt").write_text("# only a comment\n")
    with pytest.raises(InputError, match="blocklist holds no words"):
        load_blocklist(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="blocklist file not found"):
        load_blocklist(tmp_path / "none.txt")


def test_shingles_are_word_5grams():
    assert shingles("One two, three four five six!") == {
        b"one two three four five",
        b"two three four five six",
    }


def test_exact_and_near_duplicates_removed_distinct_kept():
    docs = [prose(seed) for seed in range(20)]
    planted_near = change_words(docs[3], [40, 140, 240])  # 3 of 300 words changed
    planted_exact = "  " + docs[7].upper().replace(" ", "\n  ") + "\n"  # re-cased, re-wrapped
    half_new = " ".join(docs[5].split(" ")[:150] + prose(99).split(" ")[:150])  # ~1/3 similar: kept
    stream = docs[:10] + [planted_near, planted_exact] + docs[10:] + [half_new]
    d = Deduplicator(near_threshold=0.8)
    verdicts = [d.check(t) for t in stream]
    assert verdicts == [None] * 10 + ["near", "exact"] + [None] * 10 + [None]
    # The first copy seen wins: fed in the other order, the original is the duplicate.
    d = Deduplicator()
    assert [d.check(planted_near), d.check(docs[3])] == [None, "near"]


def test_exact_only_mode_keeps_near_copies():
    text = prose(1)
    d = Deduplicator(near_threshold=None)
    assert [d.check(text), d.check(change_words(text, [10])), d.check(text.lower())] == [
        None,
        None,
        "exact",
    ]
    assert d.settings()["near_threshold"] is None


def test_threshold_is_checked():
    with pytest.raises(ValueError):
        Deduplicator(near_threshold=1.5)
