"""Tree of thoughts (Yao et al. 2023): breadth-first search over reasoning steps, keeping a beam.

A state is the question plus the thoughts written so far; a thought is one line of the reply.
From each state of the beam the model samples `branch` next thoughts (at `temperature`, stopped
at the end of a line or of the turn), each new state gets a value, and the best `beam` states
(finished ones included; they are not expanded again) make the next level. After `depth` levels
the best state is finished greedily, and its reply is scored by the task, as every mode is.

Values (`value`):
    verifier  a check that needs no reference answer: every 'a op b = c' the thoughts write is
              recomputed with the calculator, and its operands must be numbers of the question or
              results written before (a mis-copied operand is caught too); the value is the share
              of equations right, 0.5 while there are none. For tasks with numeric answers.
    self      the model judges its own state (Yao et al.'s value prompt): after the partial reply
              a user turn asks "Is the reasoning so far correct? Answer yes or no.", and the value
              is P(Yes) / (P(Yes) + P(No)) from one forward pass (yes/Yes and no/No both count).
    auto      verifier for tasks with numeric answers, self otherwise.

Compute is counted so that modes can be compared at equal cost: `gen_tokens` is every token
generated for an item (each branch, pruned ones too, and the final completion), the figure that
`gptlab eval` reports for CoT (one reply) and self-consistency (N replies); the self value's
forward passes generate nothing and are counted apart, as prompt tokens read (`value_tokens`).
Equal states (the same tokens, sampled twice) are valued once and kept once, so the beam holds
distinct states.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from gptlab.eval.generative import GenResult, answer_extractor, chat_prompt
from gptlab.eval.shots import item_shots
from gptlab.tasks.base import Item, Task, extract_number, reply_text
from gptlab.tools.calculator import CalcError
from gptlab.tools.calculator import evaluate as calculate

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike

VALUES = ("auto", "verifier", "self")
JUDGE_QUESTION = "Is the reasoning so far correct? Answer yes or no."


@dataclass
class ToTConfig:
    """The search: `branch` thoughts per state, `beam` states kept per level, `depth` levels."""

    beam: int = 2  # states kept after each level (b)
    depth: int = 3  # levels of thoughts before the best state is finished (d)
    branch: int = 3  # thoughts sampled from each state of the beam (k)
    step_tokens: int = 32  # longest thought, in tokens (a thought also ends at a line break)
    value: str = "auto"  # how states are valued: verifier, self, auto (see the module docstring)
    temperature: float = 0.8  # sampling temperature of the thoughts


@dataclass
class Node:
    """A state: the reply's tokens so far, its thoughts as text, its value, and whether it is finished."""

    ids: list[int] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    value: float = 0.0
    done: bool = False


@dataclass
class Search:
    """One item's search: the best state, the beam after each level, and the tokens generated."""

    best: Node
    levels: list[list[Node]]
    gen_tokens: int


Expand = Callable[[list[tuple[int, Node]], int], list[list[Node]]]  # (item, state) -> its children
Value = Callable[[list[tuple[int, Node]]], list[float]]  # (item, state) -> value


def beam_search(n_items: int, expand: Expand, value: Value, beam: int, depth: int, branch: int) -> list[Search]:
    """Breadth-first search with a beam for `n_items` items at once (one `expand` and one `value`
    call per level for all of them, so the engine batches across items).

    Each level expands every unfinished state of each item's beam into `branch` children, values
    the distinct new states, and keeps the `beam` best of the children and the finished states;
    ties keep the earlier state (children of a better parent come first). Tokens generated are
    the children's new tokens, counted before equal states are merged.
    """
    if min(beam, depth, branch) < 1:
        raise ValueError(f"beam, depth and branch must be >= 1, got {beam}, {depth}, {branch}")
    frontiers: list[list[Node]] = [[Node()] for _ in range(n_items)]
    levels: list[list[list[Node]]] = [[] for _ in range(n_items)]
    tokens = [0] * n_items
    for _ in range(depth):
        live = [(i, n) for i, f in enumerate(frontiers) for n in f if not n.done]
        if not live:
            break
        kids: list[list[Node]] = [[] for _ in range(n_items)]
        for (i, parent), children in zip(live, expand(live, branch)):
            seen = {tuple(n.ids) for n in kids[i]}
            for c in children:
                tokens[i] += len(c.ids) - len(parent.ids)
                if tuple(c.ids) not in seen:
                    seen.add(tuple(c.ids))
                    kids[i].append(c)
        flat = [(i, c) for i, cs in enumerate(kids) for c in cs]
        for (_, c), v in zip(flat, value(flat)):
            c.value = v
        for i in range(n_items):
            if not kids[i]:
                continue
            pool = [n for n in frontiers[i] if n.done] + kids[i]
            frontiers[i] = sorted(pool, key=lambda n: -n.value)[:beam]  # stable sort: ties keep order
            levels[i].append(frontiers[i])
    return [Search(f[0], lv, t) for f, lv, t in zip(frontiers, levels, tokens)]


# ---------------------------------------------------------------------------- values

_NUM = r"\d[\d,]*(?:\.\d+)?"
_EQUATION = re.compile(rf"({_NUM}(?:\s*[-+*/×x÷]\s*{_NUM})+)\s*=\s*(-?{_NUM})")


def equation_value(question: str, text: str) -> float:
    """Share of the equations in `text` that are right and use only known numbers; 0.5 if none.

    Known numbers: those of the question, then each equation's result once it is written.

    >>> equation_value("What is 37 * 12 + 5?", "37 * 12 = 444\\n444 + 5 = 449")
    1.0
    >>> equation_value("What is 37 * 12 + 5?", "37 * 12 = 434\\n434 + 5 = 439")  # a wrong product
    0.5
    >>> equation_value("What is 37 * 12?", "37 * 13 = 481"), equation_value("What is 2 + 2?", "Think.")
    (0.0, 0.5)
    """
    known = {n.replace(",", "") for n in re.findall(_NUM, question)}
    right = total = 0
    for lhs, rhs in _EQUATION.findall(text):
        total += 1
        lhs, rhs = lhs.replace(",", ""), rhs.replace(",", "")
        expr = lhs.replace("×", "*").replace("x", "*").replace("÷", "/")
        try:
            ok = abs(calculate(expr) - float(rhs)) < 1e-6 and all(n in known for n in re.findall(_NUM, lhs))
        except CalcError:
            ok = False
        right += ok
        known.add(rhs.lstrip("-"))
    return right / total if total else 0.5


@torch.inference_mode()
def next_token_logprobs(model: torch.nn.Module, contexts: Sequence[list[int]], batch: int = 16) -> torch.Tensor:
    """(N, V) log-probabilities of the token after each context: right-padded rows in one forward
    pass per batch (the padding comes after each row's last token, so causal attention ignores it);
    a context longer than the model's is cut from the left."""
    max_len = model.config.max_seq_len
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(contexts), batch):
        rows = [c[-max_len:] for c in contexts[s : s + batch]]
        idx = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long, device=dev)
        for r, c in enumerate(rows):
            idx[r, : len(c)] = torch.tensor(c, device=dev)
        h = model.hidden_states(idx)[torch.arange(len(rows), device=dev), torch.tensor([len(c) - 1 for c in rows], device=dev)]
        out.append(torch.log_softmax(model.lm_head(h).float(), dim=-1).cpu())
    return torch.cat(out)


def _first_ids(tok: TokenizerLike, words: Sequence[str]) -> list[int]:
    return sorted({tok.encode(w)[0] for w in words})


def self_values(engine: Engine, tok: TokenizerLike, prompts: list[list[dict]], states: list[tuple[int, str]]) -> tuple[list[float], int]:
    """P(Yes) / (P(Yes) + P(No)) that each (item, reply so far) is right, asked of the model
    itself; and the context tokens read to get them."""
    contexts = [tok.render_prompt([*prompts[i], {"role": "assistant", "content": text},
                                   {"role": "user", "content": JUDGE_QUESTION}]) for i, text in states]
    if not contexts:
        return [], 0
    logp = next_token_logprobs(engine.model, contexts, engine.cache.n_slots)
    yes, no = _first_ids(tok, ("Yes", "yes")), _first_ids(tok, ("No", "no"))
    margin = torch.logsumexp(logp[:, yes], -1) - torch.logsumexp(logp[:, no], -1)
    return torch.sigmoid(margin).tolist(), sum(map(len, contexts))


# ---------------------------------------------------------------------------- the engine's side


def newline_ids(tok: TokenizerLike) -> set[int]:
    """Ids whose text holds a line break: a thought ends at any of them."""
    return {i for i in range(tok.vocab_size) if not tok.is_special(i) and "\n" in tok.decode([i])}


def _generate(engine: Engine, rows: list[list[int]], limits: list[int], stops: set[int], **kw: Any) -> list[list[int]]:
    """engine.generate_all per distinct token limit, with `stops` added to the end-of-turn ids."""
    out: list[list[int]] = [[] for _ in rows]
    eos = engine.eos_ids
    engine.eos_ids = eos | stops
    try:
        for lim in sorted(set(limits)):
            group = [j for j, m in enumerate(limits) if m == lim]
            for j, ids in zip(group, engine.generate_all([rows[j] for j in group], lim, **kw)):
                out[j] = ids
    finally:
        engine.eos_ids = eos
    return out


def engine_expand(engine: Engine, tok: TokenizerLike, prompts: list[list[int]], cfg: ToTConfig,
                  max_new_tokens: int, seed: int) -> Expand:
    """`expand` for `beam_search`: sample `branch` thoughts per state through the engine.

    A child is finished when its thought ends the turn, or when the reply reaches `max_new_tokens`.
    """
    stops, calls = newline_ids(tok), [0]

    def expand(live: list[tuple[int, Node]], branch: int) -> list[list[Node]]:
        rows = [prompts[i] + n.ids for i, n in live for _ in range(branch)]
        limits = [min(cfg.step_tokens, max_new_tokens - len(n.ids)) for _, n in live for _ in range(branch)]
        calls[0] += 1
        new = _generate(engine, rows, limits, stops, temperature=cfg.temperature, seed=seed + 100_003 * calls[0])
        out = []
        for k, (_, n) in enumerate(live):
            kids = []
            for ids in new[k * branch : (k + 1) * branch]:
                ended = bool(ids) and ids[-1] in engine.eos_ids
                reply = n.ids + ids
                kids.append(Node(reply, [*n.steps, tok.decode(ids)], done=ended or len(reply) >= max_new_tokens))
            out.append(kids)
        return out

    return expand


def _state_text(tok: TokenizerLike, ids: list[int]) -> str:
    return reply_text(tok.parse_assistant(ids))


def resolve_value(how: str, items: Sequence[Item]) -> str:
    """`auto` as what it means for these items: the verifier when every answer is a number.

    >>> resolve_value("auto", [Item([], "42")]), resolve_value("auto", [Item([], "IAGO")])
    ('verifier', 'self')
    """
    if how not in VALUES:
        raise ValueError(f"value must be one of {VALUES}, got {how!r}")
    if how != "auto":
        return how
    return "verifier" if all(it.answer is not None and extract_number(it.answer) == it.answer for it in items) else "self"


def value_fn(engine: Engine, tok: TokenizerLike, prompts: list[list[dict]], how: str, counter: list[int]) -> Value:
    """`value` for `beam_search` by `how` (verifier or self; see the module docstring);
    `counter[0]` adds up the context tokens that self-evaluation reads."""
    if how == "verifier":
        questions = [reply_text(p[-1]["content"]) for p in prompts]
        return lambda states: [equation_value(questions[i], _state_text(tok, n.ids)) for i, n in states]
    if how != "self":
        raise ValueError(f"value must be one of {VALUES}, got {how!r}")

    def value(states: list[tuple[int, Node]]) -> list[float]:
        vals, read = self_values(engine, tok, prompts, [(i, _state_text(tok, n.ids)) for i, n in states])
        counter[0] += read
        return vals

    return value


def tot_scores(
    engine: Engine,
    tok: TokenizerLike,
    task: Task,
    items: Sequence[Item],
    cfg: ToTConfig,
    shots: int = 0,
    max_new_tokens: int = 64,
    seed: int = 0,
    progress: bool = False,
    shot_pick: str = "first",
) -> tuple[list[GenResult], dict[str, Any]]:
    """Search each item's tree, finish its best state greedily, score the reply with the task.

    The prompt is the step-by-step one (`gptlab eval --mode cot`), so the root is CoT's. Returns
    one `GenResult` per item (`gen_tokens`: every token generated for it) and the search's record
    (its settings, the value used, mean self-eval context tokens per item).
    """
    how = resolve_value(cfg.value, items)
    fewshot = item_shots(task, items, shots, shot_pick, seed)
    chats = [chat_prompt(task, it, s, cot=True) for it, s in zip(items, fewshot)]
    prompts = [tok.render_prompt(c) for c in chats]
    if any(len(p) + max_new_tokens >= engine.max_len for p in prompts):
        raise ValueError(f"a prompt and its reply do not fit the model's context ({engine.max_len}); use fewer --shots")
    read = [0]
    value = value_fn(engine, tok, chats, how, read)
    expand = engine_expand(engine, tok, prompts, cfg, max_new_tokens, seed)
    if progress:
        expand = _with_bar(expand, cfg.depth, f"{task.name} tot")
    found = beam_search(len(items), expand, value, cfg.beam, cfg.depth, cfg.branch)
    # finish each best state greedily within the reply's token budget
    todo = [k for k, s in enumerate(found) if not s.best.done]
    rest = _generate(engine, [prompts[k] + found[k].best.ids for k in todo],
                     [max_new_tokens - len(found[k].best.ids) for k in todo], set(), temperature=0.0)
    tails = dict(zip(todo, rest))
    results = []
    for k, (item, s) in enumerate(zip(items, found)):
        tail = tails.get(k, [])
        ids = s.best.ids + tail
        parts = tok.parse_assistant(ids)
        text = reply_text(parts)
        results.append(GenResult(
            correct=bool(task.evaluate(item, text)), reward=float(task.reward(item, text)), completion=text,
            answer=answer_extractor(task, item)(text), entropy=math.nan, n_tokens=len(ids),
            stopped=bool(ids) and ids[-1] in engine.eos_ids, tool_calls=sum(p["type"] == "tool_call" for p in parts),
            gen_tokens=s.gen_tokens + len(tail),
        ))
    record = {"beam": cfg.beam, "depth": cfg.depth, "branch": cfg.branch, "step_tokens": cfg.step_tokens,
              "value": how, "tot_temperature": cfg.temperature, "value_tokens": read[0] / max(1, len(items))}
    return results, record


def _with_bar(expand: Expand, depth: int, desc: str) -> Expand:
    """`expand`, moving a progress bar one level per call."""
    bar = tqdm(total=depth, desc=desc, unit="level")

    def wrapped(live: list[tuple[int, Node]], branch: int) -> list[list[Node]]:
        out = expand(live, branch)
        bar.update(1)
        return out

    return wrapped
