"""Candidates: K answers to one prompt, not yet ranked. Sampling them, ordering them by a score
(dropping ties), and the candidates file that `gptlab rank generate` writes and `rank label` and
`rank judge` read.

Sampled answers keep what the model wrote: a reply with a tool call is stored as its text
(`responses`, what rules and people read) and, in `meta["contents"]`, as message parts, so the
reward model scores the same tokens the RL policy will produce. Whether each answer ended its
turn or was cut by the token budget is kept too (`ended`): a rule can rank a cut answer below one
that ended, and DPO scores a cut answer without the end-of-turn token the chat template adds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gptlab.algos.rollout import reply_messages
from gptlab.data.conversations import BadRecord
from gptlab.data.preferences import Ranking, _prompt
from gptlab.errors import InputError
from gptlab.fileio import atomic_open, json_loads
from gptlab.infer.engine import Engine
from gptlab.tokenizer.protocol import TokenizerLike

Content = str | list[dict]


@dataclass
class Candidates:
    """K answers to one prompt, not yet ranked (what `rank generate` writes and `rank label` reads)."""

    prompt: list[dict]
    responses: list[str]  # reply text, tool results included
    contents: list[Content] | None = None  # the same replies as message content (parts kept)
    meta: dict = field(default_factory=dict)
    ended: list[bool] | None = None  # each reply ended its turn (False: cut by the token budget); None: unknown

    def ranked(self, order: list[int], **meta: Any) -> Ranking:
        """These answers in a person's or judge's order, keeping their parts and end-of-turn flags."""
        m = dict(self.meta, **meta)
        if self.contents is not None:
            m["contents"] = self.contents
        if self.ended is not None:
            m["ended"] = self.ended
        return Ranking(self.prompt, list(self.responses), list(order), m)


# ---------------------------------------------------------------------------- sampling


def sample_responses(
    engine: Engine,
    tok: TokenizerLike,
    prompts: Sequence[list[dict]],
    k: int,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[Candidates | None]:
    """K samples per prompt (None for a prompt too long to answer), batched through the engine.

    Answer j of the flat list uses seed + j, so results do not depend on batch size. All answers
    go to the engine in one call: a slot freed by a short answer takes the next prompt at once,
    where chunks of one batch each waited for their longest answer.
    """
    ids = [tok.render_prompt(p) for p in prompts]
    fits = [len(x) + max_new_tokens <= engine.max_len for x in ids]
    flat = [(i, x) for i, x in enumerate(ids) if fits[i] for _ in range(k)]
    outs: dict[int, list[tuple[str, Content]]] = defaultdict(list)
    bar = tqdm(total=len(flat), desc="sampling", unit="answer", disable=not progress, leave=False)
    new = engine.generate_all([x for _, x in flat], max_new_tokens, temperature=temperature, top_k=top_k,
                              seed=seed, on_done=lambda _: bar.update(1))
    bar.close()
    ended: dict[int, list[bool]] = defaultdict(list)
    for (i, _), gen in zip(flat, new):
        outs[i].append(reply_messages(tok, gen))
        ended[i].append(bool(gen) and gen[-1] in engine.eos_ids)
    result: list[Candidates | None] = []
    for i, p in enumerate(prompts):
        if not fits[i]:
            result.append(None)
            continue
        texts, contents = [t for t, _ in outs[i]], [c for _, c in outs[i]]
        result.append(Candidates(p, texts, contents if any(isinstance(c, list) for c in contents) else None,
                                 ended=ended[i]))
    return result


# ---------------------------------------------------------------------------- scores -> rankings


def rankings_from_scores(cands: Candidates, scores: Sequence[float], meta: dict | None = None) -> list[Ranking]:
    """Order K answers by score (higher is better), dropping tied pairs.

    >>> c = Candidates([{"role": "user", "content": "2+2?"}], ["4", "5", "four"])
    >>> [r.order for r in rankings_from_scores(c, [1.0, 0.0, 0.5])]
    [[0, 2, 1]]
    >>> [(r.responses, r.order) for r in rankings_from_scores(c, [1.0, 0.0, 1.0])]
    [(['4', '5'], [0, 1]), (['5', 'four'], [1, 0])]
    >>> rankings_from_scores(c, [0.0, 0.0, 0.0])
    []
    """
    k = len(cands.responses)
    if len(scores) != k:
        raise ValueError(f"{len(scores)} scores for {k} responses")
    base = dict(cands.meta, **(meta or {}))

    def meta_of(picked: list[int]) -> dict:
        m = dict(base, scores=[scores[i] for i in picked])
        if cands.contents is not None:
            m["contents"] = [cands.contents[i] for i in picked]
        if cands.ended is not None:
            m["ended"] = [cands.ended[i] for i in picked]
        return m

    if len(set(scores)) == k:
        order = sorted(range(k), key=lambda i: -scores[i])
        return [Ranking(cands.prompt, list(cands.responses), order, meta_of(list(range(k))))]
    out = []
    for i in range(k):
        for j in range(i + 1, k):
            if scores[i] == scores[j]:
                continue
            order = [0, 1] if scores[i] > scores[j] else [1, 0]
            out.append(Ranking(cands.prompt, [cands.responses[i], cands.responses[j]], order, meta_of([i, j])))
    return out



# ---------------------------------------------------------------------------- candidate files


def save_candidates(path: str | Path, cands: Sequence[Candidates]) -> None:
    """JSONL of {"prompt", "responses", "contents"?, "meta"?}, written atomically."""
    with atomic_open(path, "w") as f:
        for c in cands:
            rec: dict[str, Any] = {"prompt": c.prompt, "responses": c.responses}
            if c.contents is not None:
                rec["contents"] = c.contents
            if c.meta:
                rec["meta"] = c.meta
            if c.ended is not None:
                rec["ended"] = c.ended
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def load_candidates(path: str | Path) -> list[Candidates]:
    """Read a candidates file; InputError with the line number on any bad record."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "candidates file not found (write one with `gptlab rank generate`)")
    out = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json_loads(line)
            except json.JSONDecodeError:
                raise InputError(path, "line is not valid JSON", line=no) from None
            if not isinstance(rec, dict) or "prompt" not in rec or "responses" not in rec:
                raise InputError(path, "record needs 'prompt' and 'responses'", line=no)
            resp = rec["responses"]
            if not isinstance(resp, list) or len(resp) < 2 or not all(isinstance(r, str) for r in resp):
                raise InputError(path, "'responses' must be a list of at least 2 strings", line=no)
            contents = rec.get("contents")
            if contents is not None and (not isinstance(contents, list) or len(contents) != len(resp)):
                raise InputError(path, "'contents' must list one content per response", line=no)
            try:
                prompt = _prompt(rec["prompt"])
            except BadRecord as e:
                raise InputError(path, str(e), line=no) from None
            ended = rec.get("ended")
            if ended is not None and (not isinstance(ended, list) or len(ended) != len(resp)
                                      or not all(isinstance(e, bool) for e in ended)):
                raise InputError(path, "'ended' must list one true/false per response", line=no)
            out.append(Candidates(prompt, resp, contents, rec.get("meta") or {}, ended))
    return out
