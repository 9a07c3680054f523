"""Prompting without training: few-shot examples, "Let's think step by step", self-consistency.

    messages = few_shot_messages([("2+2?", "4"), ("3+5?", "8")], "7+6?", system="Answer with a number.")
    messages = step_by_step(messages)                       # zero-shot chain of thought
    answer, votes = self_consistency(engine, tok, messages, n=8, extract=last_number, temperature=0.8)

- Few-shot (Brown et al. 2020, GPT-3): solved examples as earlier chat turns show the format
  and the task; the model continues the pattern.
- Zero-shot chain of thought (Kojima et al. 2022): appending "Let's think step by step." makes
  a model write its reasoning before the answer.
- Self-consistency (Wang et al. 2022): sample N reasoning paths at temperature > 0 and keep the
  most frequent final answer. The N samples are one batched engine call (one prompt, N rows,
  seeds seed..seed+N-1), so they cost about one answer's latency on a parallel device.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import InputError
from gptlab.fileio import json_loads
from gptlab.infer.chat_session import reply_text

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike

STEP_BY_STEP = "Let's think step by step."
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def _pair(ex: Any) -> tuple[str, str]:
    """An example as (question, answer): a 2-sequence, or a dict with user/assistant or question/answer."""
    if isinstance(ex, dict):
        for q, a in (("user", "assistant"), ("question", "answer"), ("prompt", "completion")):
            if q in ex and a in ex:
                return str(ex[q]), str(ex[a])
        raise ValueError(
            "an example needs keys user/assistant, question/answer or prompt/completion"
        )
    q, a = ex
    return str(q), str(a)


def few_shot_messages(
    examples: Iterable[Any], question: str, system: str | None = None
) -> list[dict]:
    """System (optional), one user/assistant turn pair per example, then the question.

    >>> few_shot_messages([("2+2?", "4")], "3+3?")
    [{'role': 'user', 'content': '2+2?'}, {'role': 'assistant', 'content': '4'}, {'role': 'user', 'content': '3+3?'}]
    """
    return [*system_and_examples(examples, system), {"role": "user", "content": question}]


def system_and_examples(examples: Iterable[Any], system: str | None = None) -> list[dict]:
    """The few-shot prefix alone (system + example turns), which a chat session keeps pinned."""
    out: list[dict] = [{"role": "system", "content": system}] if system else []
    for ex in examples:
        q, a = _pair(ex)
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


def read_examples(path: str | Path) -> list[tuple[str, str]]:
    """Few-shot examples from a JSONL file: one {"user": .., "assistant": ..} (or question/answer,
    prompt/completion) object per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                out.append(_pair(json_loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(path, f"not valid JSON ({e.msg})", line=lineno) from None
            except (ValueError, TypeError) as e:
                raise InputError(path, f"bad example: {e}", line=lineno) from None
    if not out:
        raise InputError(path, "no examples in the file")
    return out


def step_by_step(messages: list[dict], cue: str = STEP_BY_STEP) -> list[dict]:
    """A copy of `messages` whose last user turn ends with the chain-of-thought cue.

    >>> step_by_step([{"role": "user", "content": "What is 3*4+2?"}])[-1]["content"]
    "What is 3*4+2?\\n\\nLet's think step by step."
    """
    out = [dict(m) for m in messages]
    last = out[-1]
    if last.get("role") != "user" or not isinstance(last.get("content"), str):
        raise ValueError("step_by_step needs messages that end with a plain user turn")
    last["content"] = f"{last['content']}\n\n{cue}"
    return out


def last_number(text: str) -> str | None:
    """The last number in `text` (commas dropped), the usual final-answer extractor for arithmetic.

    >>> last_number("3*4 = 12, plus 2 is 1,014.")
    '1014'
    >>> last_number("no digits") is None
    True
    """
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def normalized_text(text: str) -> str | None:
    """The whole reply, stripped and lower-cased (for short free-text answers); None if empty."""
    t = " ".join(text.split()).lower().rstrip(".")
    return t or None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "number": last_number,
    "text": normalized_text,
}


def self_consistency(
    engine: Engine,
    tok: TokenizerLike,
    messages: list[dict],
    n: int,
    extract: Callable[[str], str | None] = last_number,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    max_new_tokens: int = 256,
    seed: int | None = None,
) -> tuple[str | None, Counter]:
    """Sample `n` replies in one batched engine call; return (majority answer, votes).

    Each reply is parsed with `parse_assistant`; `extract` maps its text (tool results included)
    to an answer, or None when it found none (no vote). Ties go to the answer seen first, so the
    result is deterministic for a fixed seed. No votes at all -> (None, Counter()).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    prompt = tok.render_prompt(messages)
    outs = engine.generate_all(
        [prompt] * n, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
    )
    votes: Counter = Counter()
    for ids in outs:
        answer = extract(reply_text(tok.parse_assistant(ids)))
        if answer is not None:
            votes[answer] += 1
    if not votes:
        return None, votes
    return votes.most_common(1)[0][0], votes
