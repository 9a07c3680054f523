"""Prompt search: which instruction or trigger phrase helps a model on a task, chosen on one split
and reported on another.

Kojima et al. (2022) found that one sentence at the start of the answer, "Let's think step by
step.", took a large model from 17.7% to 78.7% on MultiArith, and tabled its rivals: other
instructive phrases scored nearly as well, misleading and irrelevant ones about as badly as none.
APE (Zhou et al. 2022) turned the choice into a search: score many candidate instructions on a
few examples, keep the best. Choosing the best of N on the same items that report it flatters it
(the winner's curse), so here candidates are scored on the task's *train* split (the dev set),
ranked there, and the table is reported on the *test* split; the gain of the chosen phrase over
no phrase is paired on the same held-out items.

Where the phrase goes (`placement`):
    reply        the assistant's reply starts with it, as Kojima et al. wrote "A: Let's think step
                 by step." (the phrase's tokens are forced; only what follows is scored)
    question     appended to the user's question (what `gptlab eval --mode cot` does)
    instruction  before the question, as APE's instructions are

Replies are greedy and scored by the task's own verifier through `generate_scores`, the same
decoding and scoring as `gptlab eval`; so the no-phrase row on held-out items equals
`gptlab eval --mode gen` on the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from gptlab.errors import InputError
from gptlab.eval.generative import chat_prompt, generate_scores, shot_messages
from gptlab.eval.metrics import bootstrap_ci, paired_gain
from gptlab.tasks.base import Item, Task

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike

PLACEMENTS = ("reply", "question", "instruction")
NONE = ""  # the baseline: no phrase at all

# The zero-shot trigger table of Kojima et al. (2022, table 4), by category, plus APE's best
# phrase. A few of each kind: instructive, misleading, irrelevant.
BUILTIN: dict[str, str] = {
    "Let's think step by step.": "instructive",
    "First,": "instructive",
    "Let's think about this logically.": "instructive",
    "Let's solve this problem by splitting it into steps.": "instructive",
    "Let's work this out in a step by step way to be sure we have the right answer.": "instructive (APE)",
    "Let's think": "instructive",
    "The answer is after the proof.": "misleading",
    "Don't think. Just feel.": "misleading",
    "Abrakadabra!": "irrelevant",
    "It's a beautiful day.": "irrelevant",
}


def read_candidates(path: Path) -> list[str]:
    """One phrase per line of a text file; blank lines and lines starting with '#' are skipped."""
    if not path.is_file():
        raise InputError(path, "candidates file not found (one phrase per line)")
    out: list[str] = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text in out:
            raise InputError(path, f"phrase {text!r} is listed twice (first on an earlier line)", line=no)
        out.append(text)
    if not out:
        raise InputError(path, "no phrases in file (one per line; '#' starts a comment)")
    return out


def render(
    tok: TokenizerLike, task: Task, item: Item, phrase: str, placement: str, shots: Sequence[dict] = ()
) -> list[int]:
    """The prompt ids of `item` with `phrase` placed as `placement` says (the module docstring).

    >>> from gptlab.tasks import get_task
    >>> from gptlab.tokenizer.bpe import Tokenizer
    >>> tok = Tokenizer.train(["What is 2 + 3? First, add."] * 20, 270)
    >>> task = get_task("arithmetic", "test", size=1)
    >>> ids = render(tok, task, task.example(0), "First,", "reply")
    >>> tok.decode(ids[-len(tok.encode("First,")):])
    'First,'
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    messages = chat_prompt(task, item, shots)
    if phrase and placement != "reply":
        last = messages[-1]
        q = last["content"]
        last["content"] = f"{q}\n\n{phrase}" if placement == "question" else f"{phrase}\n\n{q}"
    ids = tok.render_prompt(messages)
    return ids + tok.encode(phrase) if phrase and placement == "reply" else ids


def score_phrases(
    engine: Engine, tok: TokenizerLike, task: Task, items: Sequence[Item], phrases: Sequence[str],
    placement: str, shots: int = 0, max_new_tokens: int = 64, desc: str = "",
) -> dict[str, list[int]]:
    """{phrase: 0/1 per item}: greedy replies scored by the task's verifier."""
    fewshot = shot_messages(task, shots)
    out: dict[str, list[int]] = {}
    bar = tqdm(phrases, desc=desc or task.split, unit="phrase")
    for phrase in bar:
        ids = [render(tok, task, it, phrase, placement, fewshot) for it in items]
        res = generate_scores(engine, tok, task, items, "gen", max_new_tokens=max_new_tokens, prompt_ids=ids)
        out[phrase] = [int(r.correct) for r in res]
        bar.set_postfix(acc=f"{np.mean(out[phrase]):.3f}")
    return out


def search(
    engine: Engine, tok: TokenizerLike, dev: tuple[Task, Sequence[Item]], test: tuple[Task, Sequence[Item]],
    phrases: Sequence[str], placement: str = "reply", shots: int = 0, max_new_tokens: int = 64,
    top: int | None = None, n_boot: int = 2000, seed: int = 0,
) -> dict[str, Any]:
    """Rank `phrases` (and no phrase) on the dev items, report the `top` of them (all by default;
    no phrase and the best phrase always) on the test items; the first on dev is the one chosen.

    Dev ties keep the listed order with no phrase first, so a phrase must beat nothing to be chosen.
    Returns {"rows": [...] in dev order, "chosen", "gain" (the chosen over no phrase, paired,
    held-out), "best_phrase" and "best_phrase_gain" (the best on dev but no phrase, the same
    way: what a trigger does even when none beat nothing on dev), ...}, plain JSON.
    """
    listed = [NONE, *dict.fromkeys(p for p in phrases if p != NONE)]
    if len(listed) < 2:
        raise ValueError("prompt search needs at least one phrase besides no phrase")
    dev_scores = score_phrases(engine, tok, *dev, listed, placement, shots, max_new_tokens, "dev")
    order = sorted(listed, key=lambda p: (-np.mean(dev_scores[p]), listed.index(p)))
    best_phrase = next(p for p in order if p != NONE)
    keep = order if top is None else [p for p in order if p in order[:top] or p in (NONE, best_phrase)]
    test_scores = score_phrases(engine, tok, *test, keep, placement, shots, max_new_tokens, "held-out")
    test_rank = sorted(keep, key=lambda p: (-np.mean(test_scores[p]), keep.index(p)))
    rows = []
    for i, p in enumerate(order):
        row: dict[str, Any] = {"phrase": p, "kind": BUILTIN.get(p, "none" if p == NONE else "given"),
                               "dev_rank": i + 1, "dev_acc": float(np.mean(dev_scores[p]))}
        if p in test_scores:
            row.update(test_acc=float(np.mean(test_scores[p])),
                       test_ci95=list(bootstrap_ci(test_scores[p], n=n_boot, seed=seed)),
                       test_rank=test_rank.index(p) + 1)
        rows.append(row)
    chosen = order[0]
    return {
        "placement": placement,
        "n_dev": len(dev[1]),
        "n_test": len(test[1]),
        "rows": rows,
        "chosen": chosen,
        "gain": paired_gain(test_scores[NONE], test_scores[chosen], n=n_boot, seed=seed),
        "best_phrase": best_phrase,
        "best_phrase_gain": paired_gain(test_scores[NONE], test_scores[best_phrase], n=n_boot, seed=seed),
        "per_item": {p: s for p, s in test_scores.items()},
    }


def table(result: dict[str, Any]) -> str:
    """The result as a Markdown table, dev order, with the chosen phrase's paired gain below."""
    lines = ["| dev rank | phrase | kind | dev acc | held-out acc (95% CI) | held-out rank |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        held = "not run"
        if "test_acc" in r:
            lo, hi = r["test_ci95"]
            held = f"{r['test_acc']:.3f} ({lo:.3f} to {hi:.3f})"
        phrase = f'"{r["phrase"]}"' if r["phrase"] else "(none)"
        lines.append(f"| {r['dev_rank']} | {phrase} | {r['kind']} | {r['dev_acc']:.3f} | {held} | "
                     f"{r.get('test_rank', '')} |")
    chosen = f'"{result["chosen"]}"' if result["chosen"] else "no phrase"
    lines.append(f"\nchosen on dev ({result['n_dev']} items): {chosen}; held-out ({result['n_test']} items) "
                 f"gain over no phrase {_gain(result['gain'])}")
    if result["chosen"] == NONE:  # say what the best phrase would have done all the same
        lines.append(f'best phrase on dev: "{result["best_phrase"]}"; held-out gain over no phrase '
                     f"{_gain(result['best_phrase_gain'])}")
    return "\n".join(lines)


def _gain(g: dict[str, Any]) -> str:
    """'+0.030 (95% CI -0.010 to +0.070), fixed 5 / broken 2, sign test p = 0.453'."""
    text = f"{g['gain']:+.3f} (95% CI {g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f})"
    if "fixed" in g:
        text += f", fixed {g['fixed']} / broken {g['broken']}, sign test p = {g['sign_test_p']:.3g}"
    return text
