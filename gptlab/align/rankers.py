"""Where rankings come from when no person ranks: a rule, ratings, demonstrations, or a judge.

- **rule**: sample K answers per task prompt from the SFT model and order them by the task's
  own `reward(item, completion)` (a verifier: the arithmetic result, the right speaker).
- **ratings**: chitchat's people rated whole chats 1-10 (witty + upbeat + interesting); chats
  that grew from the same suggested opening topic are K answers to one prompt.
- **demos**: what a person wrote (a chat turn, a real speech) above the model's own sample to
  the same prompt, each cut to a random length within the shorter, so that length tells nothing.
- **judge**: a model asked "is this a good answer? yes or no"; the score is logit(yes) - logit(no).

Ties carry no signal (Bradley-Terry learns nothing from "equally good"), and a `Ranking` has no
ties, so `rankings_from_scores` keeps one K-ranking when all scores differ, and otherwise only the
pairs across different scores (each a K = 2 ranking; the reward stage batches every ranking of one
prompt together, so they still share a batch as InstructGPT's K(K-1)/2 pairs do).

Sampled answers keep what the model wrote: a reply with a tool call is stored as its text
(`responses`, what rules and people read) and, in `meta["contents"]`, as message parts, so the
reward model scores the same tokens the RL policy will produce.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.data.preferences import Ranking
from gptlab.errors import InputError
from gptlab.fileio import atomic_open

if TYPE_CHECKING:
    import torch

    from gptlab.data.chats import Chat
    from gptlab.eval.tasks.base import Task
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.bpe import Tokenizer

Content = str | list[dict]


@dataclass
class Candidates:
    """K answers to one prompt, not yet ranked (what `rank generate` writes and `rank label` reads)."""

    prompt: list[dict]
    responses: list[str]  # reply text, tool results included
    contents: list[Content] | None = None  # the same replies as message content (parts kept)
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- sampling


def reply_content(tok: Tokenizer, ids: list[int]) -> tuple[str, Content]:
    """Generated ids -> (reply text, message content): plain text stays a string, tool use parts."""
    from gptlab.eval.tasks.base import reply_text
    from gptlab.tokenizer.chat import parse_assistant

    parts = parse_assistant(tok, ids)
    if all(p["type"] == "text" for p in parts):
        text = "".join(p["text"] for p in parts)
        return text, text
    return reply_text(parts), parts


def sample_responses(
    engine: Engine,
    tok: Tokenizer,
    prompts: Sequence[list[dict]],
    k: int,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[Candidates | None]:
    """K samples per prompt (None for a prompt too long to answer), batched through the engine.

    Sample j of the flat list uses seed + j, so results do not depend on batch size or chunking.
    """
    from tqdm import tqdm

    from gptlab.tokenizer.chat import render_prompt

    ids = [render_prompt(tok, p) for p in prompts]
    fits = [len(x) + max_new_tokens <= engine.max_len for x in ids]
    flat = [(i, x) for i, x in enumerate(ids) if fits[i] for _ in range(k)]
    outs: dict[int, list[tuple[str, Content]]] = defaultdict(list)
    chunk = max(1, engine.cache.n_slots)
    bar = tqdm(total=len(flat), desc="sampling", unit="answer", disable=not progress, leave=False)
    for start in range(0, len(flat), chunk):
        part = flat[start : start + chunk]
        new = engine.generate_all(
            [x for _, x in part], max_new_tokens, temperature=temperature, top_k=top_k, seed=seed + start
        )
        for (i, _), gen in zip(part, new):
            outs[i].append(reply_content(tok, gen))
        bar.update(len(part))
    bar.close()
    result: list[Candidates | None] = []
    for i, p in enumerate(prompts):
        if not fits[i]:
            result.append(None)
            continue
        texts, contents = [t for t, _ in outs[i]], [c for _, c in outs[i]]
        result.append(Candidates(p, texts, contents if any(isinstance(c, list) for c in contents) else None))
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
    if len(set(scores)) == k:
        order = sorted(range(k), key=lambda i: -scores[i])
        m = dict(base, scores=list(scores))
        if cands.contents is not None:
            m["contents"] = list(cands.contents)
        return [Ranking(cands.prompt, list(cands.responses), order, m)]
    out = []
    for i in range(k):
        for j in range(i + 1, k):
            if scores[i] == scores[j]:
                continue
            m = dict(base, scores=[scores[i], scores[j]])
            if cands.contents is not None:
                m["contents"] = [cands.contents[i], cands.contents[j]]
            order = [0, 1] if scores[i] > scores[j] else [1, 0]
            out.append(Ranking(cands.prompt, [cands.responses[i], cands.responses[j]], order, m))
    return out


def with_reference(c: Candidates, item: Any) -> Candidates:
    """The candidates plus the task's reference reply (the demonstration) as one more answer.

    A weak policy rarely gets a task right, so its K samples often tie (all wrong) and give no
    pair; ranking the demonstration beside them (as InstructGPT's labelers saw the written
    answer beside the model's) gives every prompt a signal.
    """
    ref = item.messages[-1]["content"]
    from gptlab.eval.tasks.base import reply_text

    contents = list(c.contents) if c.contents is not None else list(c.responses)
    return Candidates(c.prompt, [*c.responses, reply_text(ref)], [*contents, ref], dict(c.meta, reference=len(c.responses)))


def rule_rankings(
    engine: Engine, tok: Tokenizer, task: Task, n: int, k: int, progress: bool = True,
    reference: bool = False, **sampling: Any
) -> tuple[list[Ranking], dict[str, Any]]:
    """Rankings of K sampled answers to the first `n` prompts of `task`, by `task.reward`
    (with `reference`, the task's own reference reply is ranked among them).

    Returns (rankings, stats); stats counts prompts, prompts with any signal, pairs, mean reward.
    """
    items = [task.example(i) for i in range(min(n, len(task)))]
    cands = sample_responses(engine, tok, [task.prompt(it) for it in items], k, progress=progress, **sampling)
    rankings: list[Ranking] = []
    rewards: list[float] = []
    useful = 0
    for item, c in zip(items, cands):
        if c is None:
            continue
        if reference:
            c = with_reference(c, item)
        scores = [float(task.reward(item, text)) for text in c.responses]
        rewards += scores
        got = rankings_from_scores(c, scores, {"source": "rule", "task": task.name})
        useful += bool(got)
        rankings += got
    stats = {
        "task": task.name,
        "prompts": len(items),
        "prompts_with_signal": useful,
        "rankings": len(rankings),
        "pairs": sum(len(r.pairs()) for r in rankings),
        "mean_reward": sum(rewards) / max(len(rewards), 1),
    }
    return rankings, stats


# ---------------------------------------------------------------------------- demonstrations


def cut_words(text: str, n_chars: int) -> str:
    """The longest run of whole words from the start of `text` within `n_chars` (at least one word).

    >>> cut_words("to be or not to be", 9), cut_words("to be", 40), cut_words("wherefore art", 3)
    ('to be or', 'to be', 'wherefore')
    """
    if len(text) <= n_chars:
        return text
    head = text[: n_chars + 1]
    cut = max(head.rfind(" "), head.rfind("\n"))
    return text[:cut].rstrip() if cut > 0 else text.split(maxsplit=1)[0]


def demo_turn(messages: list[dict], max_prompt_tokens: int, tok: Tokenizer) -> tuple[list[dict], str] | None:
    """(prompt, reference reply) at the latest assistant text turn whose prompt fits, else None."""
    from gptlab.tokenizer.chat import render_prompt

    for j in range(len(messages) - 1, 0, -1):
        m = messages[j]
        written = m["role"] == "assistant" and isinstance(m["content"], str) and m["content"].strip()
        if written and len(render_prompt(tok, messages[:j])) <= max_prompt_tokens:
            return messages[:j], m["content"]
    return None


def demo_rankings(
    engine: Engine, tok: Tokenizer, task: Task, n: int, k: int, max_new_tokens: int = 48,
    seed: int = 0, cut: tuple[float, float] = (0.5, 1.0), progress: bool = True, **sampling: Any
) -> tuple[list[Ranking], dict[str, Any]]:
    """The written reply (a person's chat turn, the rest of a real speech) ranked above each of K
    replies sampled from the model to the same prompt, each cut to a random length within the shorter.

    The preference of SPIN-style self-play: what people wrote beats what the model says. Left
    as they are, such pairs teach length (a person's turn is usually longer than a short sample),
    so each text is cut, at a word boundary, to its own random fraction in `cut` of the shorter
    reply's characters. Neither length nor "which one was cut" then tells the winner (either text
    is the longer, or the uncut one, by chance), and because lengths still vary within a pair, a
    reward model that scored shortness would lose accuracy for it (with equal lengths it could
    prefer short text for free, and PPO then learned to answer in a few words). What is left to
    learn is how the words read.
    Returns (rankings, stats); each ranking is one K = 2 pair with meta source "demos".
    """
    rng = random.Random(f"demos:{task.name}:{seed}")
    room = engine.max_len - max_new_tokens
    items, prompts, refs = [], [], []
    for i in range(len(task)):
        if len(items) == n:
            break
        got = demo_turn(task.example(i).messages, room, tok)
        if got is not None:
            items.append(i)
            prompts.append(got[0])
            refs.append(got[1])
    cands = sample_responses(engine, tok, prompts, k, max_new_tokens, seed=seed, progress=progress, **sampling)
    rankings: list[Ranking] = []
    skipped = 0
    for i, ref, c in zip(items, refs, cands):
        if c is None:
            continue
        for j, sample in enumerate(c.responses):
            if c.contents is not None and not isinstance(c.contents[j], str):
                skipped += 1  # a tool call: no written counterpart to compare with
                continue
            sample = sample.strip()
            shorter = min(len(ref), len(sample))
            a = cut_words(ref, int(shorter * rng.uniform(*cut)))
            b = cut_words(sample, int(shorter * rng.uniform(*cut)))
            if len(a.split()) < 3 or len(b.split()) < 3 or a == b:
                skipped += 1
                continue
            meta = {"source": "demos", "task": task.name, "item": i, "sample": j}
            rankings.append(Ranking(c.prompt, [a, b], [0, 1], meta))
    stats = {"task": task.name, "prompts": len(items), "pairs": len(rankings), "skipped": skipped}
    return rankings, stats


# ---------------------------------------------------------------------------- chitchat ratings


def chat_score(chat: Chat, skip_default: bool = True) -> int | None:
    """witty + upbeat + interesting (3-30), or None when unrated.

    5/5/5 is the rating form's untouched default (41% of rated chats): `skip_default` treats it
    as unrated rather than as a real middling verdict.
    """
    if not chat.ratings:
        return None
    values = list(chat.ratings.values())
    if skip_default and values and all(v == 5 for v in values):
        return None
    return sum(values)


def transcript(chat: Chat, max_chars: int = 600) -> str:
    """The chat as "A: ...\\nB: ..." lines, cut at a line end before `max_chars`."""
    lines, size = [], 0
    for t in chat.turns:
        for j, text in enumerate(t.text.split("\n")):
            line = f"{t.speaker}: {text}" if j == 0 else text
            if size + len(line) + 1 > max_chars and lines:
                return "\n".join(lines)
            lines.append(line)
            size += len(line) + 1
    return "\n".join(lines)


def ratings_rankings(
    chats: Sequence[Chat],
    n: int,
    k: int = 4,
    seed: int = 0,
    max_chars: int = 600,
    skip_default: bool = True,
    min_gap: int = 1,
) -> list[Ranking]:
    """Up to `n` rankings of K rated chats that share an opening topic, best-rated first.

    The prompt is the topic as a user turn; each response is one chat's transcript. Chats in a
    ranking have scores at least `min_gap` apart (ties carry no signal, and a one-point
    difference between two raters' sums is mostly noise); topics take turns so all are used.
    """
    if min_gap < 1:
        raise ValueError(f"min_gap must be at least 1, got {min_gap}")
    rng = random.Random(seed)
    by_topic: dict[str, list[tuple[Chat, int]]] = defaultdict(list)
    for c in chats:
        s = chat_score(c, skip_default)
        if c.prompt and s is not None and len(c.turns) >= 2:
            by_topic[c.prompt].append((c, s))
    groups: dict[str, list[list[tuple[Chat, int]]]] = {}
    for topic in sorted(by_topic):
        pool = by_topic[topic]
        rng.shuffle(pool)
        done: list[list[tuple[Chat, int]]] = []
        open_: list[list[tuple[Chat, int]]] = []
        for cs in pool:  # first open group without this score takes the chat
            g = next((g for g in open_ if all(abs(s - cs[1]) >= min_gap for _, s in g)), None)
            if g is None:
                g = []
                open_.append(g)
            g.append(cs)
            if len(g) == k:
                open_.remove(g)
                done.append(g)
        groups[topic] = done
    out: list[Ranking] = []
    rnd = 0
    while len(out) < n and any(rnd < len(g) for g in groups.values()):
        for topic, g in groups.items():
            if rnd < len(g) and len(out) < n:
                members = g[rnd]
                scores = [s for _, s in members]
                order = sorted(range(k), key=lambda i: -scores[i])
                meta = {"source": "ratings", "ids": [c.id for c, _ in members], "scores": scores}
                prompt = [{"role": "user", "content": topic}]
                out.append(Ranking(prompt, [transcript(c, max_chars) for c, _ in members], order, meta))
        rnd += 1
    return out


# ---------------------------------------------------------------------------- judge model

JUDGE_TEMPLATE = "Question: {question}\nAnswer: {answer}\nIs this a good answer? Reply yes or no."


def judge_scores(
    model: torch.nn.Module, tok: Tokenizer, prompt: list[dict], responses: Sequence[str], batch_size: int = 16
) -> list[float]:
    """logit("yes") - logit("no") of the judge's first reply token, one per response."""
    import torch

    from gptlab.eval.tasks.base import reply_text
    from gptlab.tokenizer.chat import render_prompt

    yes, no = tok.encode("yes")[0], tok.encode("no")[0]
    question = "\n".join(reply_text(m["content"]) for m in prompt if m["role"] == "user")
    limit = model.config.max_seq_len
    rows = []
    for r in responses:
        ids = render_prompt(tok, [{"role": "user", "content": JUDGE_TEMPLATE.format(question=question, answer=r)}])
        rows.append(ids if len(ids) <= limit else ids[:1] + ids[len(ids) - limit + 1 :])
    device = next(model.parameters()).device
    scores: list[float] = []
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            part = rows[s : s + batch_size]
            width = max(map(len, part))
            idx = torch.full((len(part), width), tok.eot_id, dtype=torch.long, device=device)
            for b, ids in enumerate(part):
                idx[b, : len(ids)] = torch.tensor(ids)
            last = torch.tensor([len(ids) - 1 for ids in part], device=device)
            h = model.hidden_states(idx)[torch.arange(len(part), device=device), last]
            logits = model.lm_head(h).float()
            scores += (logits[:, yes] - logits[:, no]).tolist()
    return scores


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
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def load_candidates(path: str | Path) -> list[Candidates]:
    """Read a candidates file; InputError with the line number on any bad record."""
    from gptlab.data.conversations import BadRecord
    from gptlab.data.preferences import _prompt

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "candidates file not found (write one with `gptlab rank generate`)")
    out = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
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
            out.append(Candidates(prompt, resp, contents, rec.get("meta") or {}))
    return out
