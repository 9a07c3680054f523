"""Self-instruct (Wang et al. 2022): grow instruction data from a few seed tasks with the model itself.

Each step shows the model `examples` instructions sampled from the pool (seed tasks, plus up to a
third machine-written ones once there are some; the paper used 6 + 2) and asks for one more; the
model then answers each new instruction. A new instruction joins the data only when it passes
the filters of `self_instruct_filters` (length, banned words, not a fragment, ...) and its ROUGE-L
against every instruction in the pool stays below `similarity` (0.7 in the paper), and its answer
passes too (not empty, finished, not a refusal, not a loop).

Departures from the paper, and why:
- The examples are earlier chat turns ("Write a new task for an assistant." -> a seed instruction,
  repeated), not a numbered list to continue: chat models such as SmolLM2-135M-Instruct answer a
  list by repeating it, and write one new task when the task is the assistant's turn.
- No classification/instance split and no separate input field: the model answers the
  instruction directly (as Alpaca did), and the answer becomes the assistant turn.

Generation goes through a `ChatFn` (message lists in, replies out, batched), which the command
builds on the inference engine; this module knows no model, so tests can script the replies.
The records are SFT conversations (`{"messages": [...]}`) with their lineage beside them:
`id`, `parent` (None here), `operation` ("self-instruct"), `round` (0) and the `examples` shown.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from gptlab.data.conversations import BadRecord, read_records, to_messages
from gptlab.data.self_instruct_filters import (
    REASONS,
    RougePool,
    answer_problem,
    clean_instruction,
    instruction_problem,
)
from gptlab.data.sources import Skips
from gptlab.errors import InputError
from gptlab.fileio import atomic_open

DEFAULT_SEEDS = Path(__file__).with_name("self_instruct_seeds.json")
FIRST_ASK = "Write a new task for an assistant."
NEXT_ASK = "Write another, different task."


@dataclass
class Reply:
    """One generated reply: its text, and whether it ended at end-of-turn (not at the token limit)."""

    text: str
    finished: bool
    fits: bool = True  # False: the prompt left no room to reply (text is empty)


class ChatFn(Protocol):
    """Batched chat: one reply per message list; row j samples with seed + j."""

    def __call__(self, prompts: Sequence[list[dict]], max_new_tokens: int, temperature: float, seed: int,
                 desc: str = "") -> list[Reply]: ...


@dataclass
class Record:
    """One instruction with its answer and where it came from."""

    id: str
    instruction: str
    answer: str | None
    parent: str | None = None  # the instruction this one was evolved from
    operation: str = "seed"  # seed, self-instruct, or an Evol-Instruct operation
    round: int = 0  # evolution round (0: seed or self-instruct)
    examples: list[str] = field(default_factory=list)  # ids of the instructions shown in the prompt

    def to_json(self) -> dict[str, Any]:
        """The SFT conversation plus lineage: `gptlab sft --data` reads `messages`, ignores the rest."""
        msgs = [{"role": "user", "content": self.instruction}, {"role": "assistant", "content": self.answer or ""}]
        rec: dict[str, Any] = {"messages": msgs, "id": self.id, "parent": self.parent,
                               "operation": self.operation, "round": self.round}
        if self.examples:
            rec["examples"] = self.examples
        return rec


@dataclass
class SelfInstructSettings:
    """How many examples to grow, how they are sampled, and how strictly they are filtered."""

    n: int = 100  # self-instruct examples to keep
    evolve: int = 0  # Evol-Instruct rounds over the kept examples (0: self-instruct only)
    examples: int = 6  # instructions shown per prompt (up to a third machine-written once there are some)
    similarity: float = 0.7  # ROUGE-L with a pool instruction at or above which a new one is a near duplicate
    max_tries: int | None = None  # stop after this many generated instructions (default: 5 x --n)
    max_instruction_tokens: int = 64  # longest instruction, in tokens (evolved ones get twice this)
    max_answer_tokens: int = 256  # longest answer, in tokens (cut-off answers are rejected)
    temperature: float = 0.8  # sampling temperature for writing instructions (diversity)
    answer_temperature: float = 0.3  # sampling temperature for answers (0: greedy)
    seed: int = 0  # example sampling, evolution operations and reply sampling


class Report:
    """Generated / kept / rejected-by-reason counts per stage ("self-instruct", "evolve round 1", ...),
    and the first few texts each reason threw away, so a reader can judge the rule."""

    def __init__(self, keep_examples: int = 3) -> None:
        self.stages: dict[str, dict[str, Any]] = {}
        self.keep_examples = keep_examples

    def stage(self, name: str) -> dict[str, Any]:
        return self.stages.setdefault(name, {"generated": 0, "kept": 0, "rejected": Counter(), "examples": {}})

    def reject(self, stage: str, reason: str, text: str) -> None:
        st = self.stage(stage)
        st["rejected"][reason] += 1
        shown = st["examples"].setdefault(reason, [])
        if len(shown) < self.keep_examples:
            shown.append(text[:300])

    def to_dict(self) -> dict[str, Any]:
        return {name: {"generated": s["generated"], "kept": s["kept"], "rejected": dict(s["rejected"]),
                       "rejected_examples": s["examples"]} for name, s in self.stages.items()}

    def table(self) -> str:
        """Reasons as rows, stages as columns; only reasons that threw something away."""
        names = list(self.stages)
        used = [r for r in REASONS if any(s["rejected"][r] for s in self.stages.values())]
        width = max([len("generated"), *map(len, used)])
        cols = [max(len(n), 6) for n in names]
        lines = [f"{'':<{width}}  " + "  ".join(f"{n:>{c}}" for n, c in zip(names, cols))]
        for row in ("generated", "kept"):
            lines.append(f"{row:<{width}}  " + "  ".join(f"{self.stages[n][row]:>{c}}" for n, c in zip(names, cols)))
        lines.append("rejected:")
        for r in used:
            cells = "  ".join(f"{self.stages[n]['rejected'][r]:>{c}}" for n, c in zip(names, cols))
            lines.append(f"{r:<{width}}  {cells}  {REASONS[r]}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- seeds and output


def read_seeds(path: str | Path) -> list[Record]:
    """Seed tasks from a JSONL/JSON file of conversation records (Alpaca `instruction`/`output`,
    OpenAI `messages` or ShareGPT): the first user turn is the instruction, the first assistant
    turn (optional) its answer. InputError names the file and line of a bad record."""
    path = Path(path)
    seeds: list[Record] = []
    for line, rec in read_records(path, Skips(lenient=False)):
        try:
            _, msgs = to_messages(rec, require_reply=False)
        except BadRecord as e:
            raise InputError(path, f"not a seed task: {e}", line=line) from None
        user = next((m["content"] for m in msgs if m["role"] == "user"), None)
        if not isinstance(user, str) or not user.strip():
            raise InputError(path, "a seed task needs a user turn (its instruction) with text", line=line)
        answer = next((m["content"] for m in msgs if m["role"] == "assistant"), None)
        seeds.append(Record(f"seed-{len(seeds) + 1:03d}", user.strip(), answer if isinstance(answer, str) else None))
    if not seeds:
        raise InputError(path, "no seed tasks in the file")
    return seeds


def write_records(path: str | Path, records: Sequence[Record]) -> None:
    """JSONL, one conversation with its lineage a line, written atomically."""
    with atomic_open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------- prompts


def instruction_prompt(examples: Sequence[str]) -> list[dict]:
    """Few-shot chat: each example is the assistant's reply to a request for a task; the model
    writes the next one.

    >>> [m["content"] for m in instruction_prompt(["Add 2 and 3."])]
    ['Write a new task for an assistant.', 'Add 2 and 3.', 'Write another, different task.']
    """
    msgs: list[dict] = []
    for i, ex in enumerate(examples):
        msgs += [{"role": "user", "content": FIRST_ASK if i == 0 else NEXT_ASK}, {"role": "assistant", "content": ex}]
    return msgs + [{"role": "user", "content": NEXT_ASK if examples else FIRST_ASK}]


def sample_examples(rng: random.Random, seeds: Sequence[Record], made: Sequence[Record], k: int) -> list[Record]:
    """k instructions for one prompt: up to k // 3 machine-written, the rest seeds, shuffled."""
    n_made = min(len(made), k // 3)
    n_seed = min(len(seeds), k - n_made)
    picked = rng.sample(list(seeds), n_seed) + rng.sample(list(made), n_made)
    rng.shuffle(picked)
    return picked


# ---------------------------------------------------------------------------- answering


def answer_all(chat: ChatFn, instructions: Sequence[str], s: SelfInstructSettings, seed: int,
               ) -> list[tuple[str, str | None]]:
    """(answer, reason it is unusable or None) per instruction, in one batched call."""
    if not instructions:
        return []
    replies = chat([[{"role": "user", "content": x}] for x in instructions], s.max_answer_tokens,
                   s.answer_temperature, seed, desc="answering")
    out = []
    for x, r in zip(instructions, replies):
        text = r.text.strip()
        out.append((text, "prompt_too_long" if not r.fits else answer_problem(text, x, r.finished)))
    return out


def check_instruction(reply: Reply, pool: RougePool, similarity: float) -> tuple[str, str | None]:
    """(cleaned instruction, reason to reject or None); a kept one joins the pool at once, so
    two near-identical instructions in one batch do not both pass."""
    text = clean_instruction(reply.text)
    if not reply.fits:
        return text, "prompt_too_long"
    reason = "too_long" if not reply.finished else instruction_problem(text)
    if reason is None and pool.most_similar(text, similarity)[0] >= similarity:
        reason = "near_duplicate"
    if reason is None:
        pool.add(text, "")
    return text, reason


# ---------------------------------------------------------------------------- the loop


def self_instruct(chat: ChatFn, seeds: Sequence[Record], s: SelfInstructSettings, report: Report,
                  pool: RougePool | None = None, batch_size: int = 32, progress: bool = True) -> list[Record]:
    """Up to `s.n` new (instruction, answer) records grown from `seeds`; stops early after
    `s.max_tries` generated instructions. `pool` (default: the seeds) is the ROUGE-L pool; kept
    instructions are added to it."""
    if pool is None:
        pool = RougePool()
        for r in seeds:
            pool.add(r.instruction, r.id)
    rng = random.Random(f"self-instruct:{s.seed}")
    max_tries = s.max_tries if s.max_tries is not None else 5 * s.n
    st = report.stage("self-instruct")
    kept: list[Record] = []
    call = 0
    bar = tqdm(total=s.n, desc="self-instruct", unit="kept", disable=not progress)
    while len(kept) < s.n and st["generated"] < max_tries:
        b = min(batch_size, max_tries - st["generated"])
        shown = [sample_examples(rng, seeds, kept, s.examples) for _ in range(b)]
        replies = chat([instruction_prompt([r.instruction for r in ex]) for ex in shown], s.max_instruction_tokens,
                       s.temperature, s.seed + call, desc="writing instructions")
        call += b
        st["generated"] += b
        cands = []
        for ex, reply in zip(shown, replies):
            text, reason = check_instruction(reply, pool, s.similarity)
            if reason:
                report.reject("self-instruct", reason, text)
            else:
                cands.append((text, ex))
        answers = answer_all(chat, [t for t, _ in cands], s, s.seed + call)
        call += len(cands)
        for (text, ex), (answer, reason) in zip(cands, answers):
            if reason is None and len(kept) >= s.n:
                reason = "surplus"
            if reason:
                report.reject("self-instruct", reason, text if reason == "surplus" else f"{text} => {answer}")
                continue
            kept.append(Record(f"si-{len(kept) + 1:05d}", text, answer, operation="self-instruct",
                               examples=[r.id for r in ex]))
            bar.update(1)
        bar.set_postfix(tried=st["generated"])
    bar.close()
    st["kept"] = len(kept)
    return kept
