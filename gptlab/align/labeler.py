"""`gptlab rank label`: a person orders K answers per prompt in the terminal.

Each prompt is shown with its answers lettered a, b, c, ...; the labeller types the letters best
first ("bdac"; the last letter may be left out), or `s` to skip, `u` to undo the last answer,
`q` to stop. After every answer the progress (`<out>.progress.json`) and the rankings (`<out>`,
`ranked` JSONL) are rewritten atomically, so closing the terminal loses nothing and the next
run starts at the first unanswered prompt.

Input and output are injectable (`ask`, `show`), so tests drive it with a list of keys.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from pathlib import Path

from gptlab.align.candidates import Candidates
from gptlab.data.preferences import Ranking, save_rankings
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json, read_json
from gptlab.tasks.base import reply_text

HELP = "order best first (e.g. 'bac'), s = skip, u = undo, q = quit"


def parse_order(text: str, k: int) -> list[int] | None:
    """'bdac' -> [1, 3, 0, 2]; the last letter may be omitted; None if it is not an order of K.

    >>> parse_order("bda", 4), parse_order("b d a c", 4), parse_order("bb", 2), parse_order("z", 2)
    ([1, 3, 0, 2], [1, 3, 0, 2], None, None)
    """
    letters = [c for c in text.lower() if not c.isspace() and c not in ",>"]
    idx = [string.ascii_lowercase.find(c) for c in letters]
    if any(i < 0 or i >= k for i in idx) or len(set(idx)) != len(idx) or len(idx) < k - 1:
        return None
    return idx + [i for i in range(k) if i not in idx]


class Labeler:
    """Walks the candidates in order, recording one answer (an order, or a skip) per prompt."""

    def __init__(
        self,
        cands: Sequence[Candidates],
        out: str | Path,
        ask: Callable[[str], str] | None = None,
        show: Callable[[str], None] | None = None,
        rater: str = "human",
    ):
        for i, c in enumerate(cands):
            if len(c.responses) > 26:
                raise InputError(out, f"prompt {i} has {len(c.responses)} answers; at most 26 can be lettered")
        self.cands, self.out, self.rater = list(cands), Path(out), rater
        # looked up at call time (not bound as defaults) so tests can swap builtins.input
        self.ask = ask or (lambda msg: input(msg))
        self.show = show or print
        self.progress_path = self.out.with_name(self.out.name + ".progress.json")
        self.answers: list[dict] = []  # {"item": i, "order": [...] | None (skipped)}, in answer order
        if self.progress_path.exists():
            state = read_json(self.progress_path)
            if state.get("items") != len(self.cands):
                raise InputError(
                    self.progress_path,
                    f"progress is for {state.get('items')} prompts but the candidates hold {len(self.cands)}; "
                    "use the same candidates file or another --out",
                )
            self.answers = state["answers"]

    def next_item(self) -> int | None:
        done = {a["item"] for a in self.answers}
        return next((i for i in range(len(self.cands)) if i not in done), None)

    def rankings(self) -> list[Ranking]:
        out = []
        for a in sorted(self.answers, key=lambda a: a["item"]):
            if a["order"] is None:
                continue
            out.append(self.cands[a["item"]].ranked(a["order"], source="human", rater=self.rater, item=a["item"]))
        return out

    def save(self) -> None:
        """Rankings first, then progress: a crash between the two only re-asks one prompt."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        save_rankings(self.out, self.rankings())
        atomic_write_json(self.progress_path, {"items": len(self.cands), "answers": self.answers})

    def _render(self, i: int) -> str:
        c = self.cands[i]
        lines = [f"--- prompt {i + 1}/{len(self.cands)} ({len(self.answers)} answered) ---"]
        lines += [f"[{m['role']}] {reply_text(m['content'])}" for m in c.prompt]
        for j, r in enumerate(c.responses):
            lines.append(f"\n({string.ascii_lowercase[j]}) {r}")
        return "\n".join(lines)

    def run(self) -> int:
        """Ask until every prompt is answered, or `q` / end of input; returns answers recorded."""
        start = len(self.answers)
        while (i := self.next_item()) is not None:
            self.show(self._render(i))
            try:
                key = self.ask(f"{HELP}\n> ").strip().lower()
            except EOFError:
                break
            if key == "q":
                break
            if key == "u":
                if self.answers:
                    undone = self.answers.pop()
                    self.save()
                    self.show(f"undid prompt {undone['item'] + 1}")
                else:
                    self.show("nothing to undo")
                continue
            if key == "s":
                self.answers.append({"item": i, "order": None})
                self.save()
                continue
            order = parse_order(key, len(self.cands[i].responses))
            if order is None:
                self.show(f"not understood: {key!r} ({HELP})")
                continue
            self.answers.append({"item": i, "order": order})
            self.save()
        n = len(self.rankings())
        self.show(f"{n} rankings in {self.out} ({len(self.answers)}/{len(self.cands)} prompts answered)")
        return len(self.answers) - start
