"""Evol-Instruct (WizardLM, Xu et al. 2023): the model rewrites instructions into harder or rarer ones.

Each round, every instruction of the current generation gets one operation, drawn at random:
- in depth, the same task made harder: `add_constraints` (one more requirement), `deepen` (ask
  about the topic in more depth), `concretize` (general concepts replaced by specific ones),
  `reasoning` (ask for several explicit steps);
- in breadth: `breadth`, a new instruction in the same domain on a rarer topic.
The model writes the rewrite (after one worked example of the operation, a departure from the paper
that a 135M model needs: without it, it answers the prompt instead), then answers it. An evolution fails (WizardLM's "elimination
evolving", here by rule instead of by a judge model) when the rewrite is the parent unchanged,
copies the rewrite prompt's words (`#Rewritten Prompt#`), shrinks under an in-depth operation, or
fails the instruction filters, or when its answer is empty, cut off, a short refusal or a loop; an
in-breadth instruction must also not be a near duplicate of the pool. A failed parent stays in the
generation and is evolved again next round (as in the paper); a successful child replaces it.

Every evolved record names its `parent`, its `operation` and its `round`; following `parent`
back leads to the self-instruct record (or seed) it grew from.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tqdm import tqdm

from gptlab.data.self_instruct import ChatFn, Record, Report, SelfInstructSettings, answer_all
from gptlab.data.self_instruct_filters import (
    RougePool,
    clean_instruction,
    evolution_problem,
    instruction_problem,
)

# operation -> (in depth?, what to do). Our own wording of the paper's operations.
OPERATIONS: dict[str, tuple[bool, str]] = {
    "add_constraints": (True, "Add one more constraint or requirement to it, so that it is harder to do."),
    "deepen": (True, "Make it ask about its topic in more depth and breadth."),
    "concretize": (True, "Replace its general concepts with more specific ones."),
    "reasoning": (True, ("If it can be done in one simple step, make it explicitly ask for several "
                         "steps of reasoning.")),
    "breadth": (False, ("Write a brand-new instruction instead, in the same domain but on a rarer "
                         "topic, of about the same length and difficulty.")),
}
# One worked rewrite per operation, shown as an earlier chat turn (written for this module). Without
# it 8 of 10 SmolLM2-135M-Instruct rewrites failed the filters on a pilot (mostly by answering the
# given prompt instead of rewriting it); with it, 5 of 10.
DEMOS: dict[str, tuple[str, str]] = {
    "add_constraints": ("Write a poem about the sea.",
                        "Write a poem about the sea in exactly four lines, without using the word \"blue\"."),
    "deepen": ("Why do leaves change colour in autumn?",
               ("Why do leaves change colour in autumn, which pigments are involved, and why do some trees "
               "turn red while others turn yellow?")),
    "concretize": ("Give advice on saving money.",
                   ("Give a student who earns 800 euros a month three concrete ways to save 100 euros on food "
                   "and transport.")),
    "reasoning": ("What is 20% of 50?",
                  ("A shirt costs 50 dollars. It is discounted by 20%, then a 10% tax is added to the "
                  "discounted price. Work out the final price step by step.")),
    "breadth": ("Write a poem about the sea.", "Write a short ballad about a lighthouse keeper's last night on duty."),
}
_DEPTH_RULES = ("Keep it one instruction that a person can read and answer without the original. "
                "Add at most 10 to 20 words. Do not answer it.")
_BREADTH_RULES = "Do not answer it."


def rewrite_request(instruction: str, operation: str) -> str:
    """The rewrite request for one instruction (a user turn); the reply is the new instruction.

    >>> print(rewrite_request("Name a bird.", "deepen"))  # doctest: +NORMALIZE_WHITESPACE
    Rewrite the given prompt into a more complex version. Make it ask about its topic in more depth
    and breadth. Keep it one instruction that a person can read and answer without the original.
    Add at most 10 to 20 words. Do not answer it.
    <BLANKLINE>
    #Given Prompt#:
    Name a bird.
    <BLANKLINE>
    Reply with the #Rewritten Prompt# only.
    """
    in_depth, how = OPERATIONS[operation]
    head = "Rewrite the given prompt into a more complex version. " if in_depth else "Use the given prompt as inspiration. "
    rules = _DEPTH_RULES if in_depth else _BREADTH_RULES
    return (f"{head}{how} {rules}\n\n#Given Prompt#:\n{instruction}\n\n"
            f"Reply with the #{'Rewritten' if in_depth else 'Created'} Prompt# only.")


def evolve_prompt(instruction: str, operation: str) -> list[dict]:
    """The operation's worked example as an earlier exchange, then the request for `instruction`."""
    demo, rewritten = DEMOS[operation]
    return [{"role": "user", "content": rewrite_request(demo, operation)},
            {"role": "assistant", "content": rewritten},
            {"role": "user", "content": rewrite_request(instruction, operation)}]


def check_evolution(text: str, parent: Record, operation: str, pool: RougePool, similarity: float,
                    finished: bool, fits: bool) -> str | None:
    """Why this rewrite of `parent` failed, or None; an in-breadth instruction that passes joins
    the pool (in-depth ones resemble their parent by design, so the pool is not asked)."""
    in_depth = OPERATIONS[operation][0]
    if not fits:
        return "prompt_too_long"
    reason = "too_long" if not finished else None
    reason = reason or instruction_problem(text) or evolution_problem(text, parent.instruction, in_depth)
    if reason is None and not in_depth:
        if pool.most_similar(text, similarity)[0] >= similarity:
            return "near_duplicate"
        pool.add(text, "")
    return reason


def evolve_round(chat: ChatFn, generation: list[Record], r: int, s: SelfInstructSettings, pool: RougePool,
                 report: Report, rng: random.Random, seed: int) -> list[Record]:
    """One round over `generation` (replaced in place by the survivors' children); returns the children."""
    st_name = f"evolve round {r}"
    st = report.stage(st_name)
    ops = [rng.choice(list(OPERATIONS)) for _ in generation]
    replies = chat([evolve_prompt(p.instruction, op) for p, op in zip(generation, ops)],
                   2 * s.max_instruction_tokens, s.temperature, seed, desc=f"evolving (round {r})")
    st["generated"] += len(generation)
    cands = []
    for i, (parent, op, reply) in enumerate(zip(generation, ops, replies)):
        text = clean_instruction(reply.text)
        reason = check_evolution(text, parent, op, pool, s.similarity, reply.finished, reply.fits)
        if reason:
            report.reject(st_name, reason, f"[{op}] {parent.instruction} -> {text}")
        else:
            cands.append((i, op, text))
    answers = answer_all(chat, [t for _, _, t in cands], s, seed + len(generation))
    children = []
    for (i, op, text), (answer, reason) in zip(cands, answers):
        if reason:
            report.reject(st_name, reason, f"[{op}] {text} => {answer}")
            continue
        child = Record(f"ev{r}-{len(children) + 1:05d}", text, answer, parent=generation[i].id, operation=op, round=r)
        generation[i] = child
        children.append(child)
    st["kept"] = len(children)
    return children


def evolve(chat: ChatFn, start: Sequence[Record], s: SelfInstructSettings, pool: RougePool, report: Report,
           progress: bool = True) -> list[Record]:
    """`s.evolve` rounds of Evol-Instruct from `start`; every successful evolution, in round order."""
    rng = random.Random(f"evol-instruct:{s.seed}")
    generation = list(start)
    out: list[Record] = []
    seed = s.seed + 10_000_000  # replies of the rounds never reuse a self-instruct reply's seed
    for r in tqdm(range(1, s.evolve + 1), desc="evolve", unit="round", disable=not progress or s.evolve < 2):
        out += evolve_round(chat, generation, r, s, pool, report, rng, seed)
        seed += 2 * len(generation)
        if progress:
            st = report.stages[f"evolve round {r}"]
            tqdm.write(f"evolve round {r}: {st['kept']}/{st['generated']} evolved")
    return out
