"""Procedural tasks from reasoning-gym (optional dependency), scored by its own `score_answer`.

reasoning-gym (Apache-2.0, offline) generates problems with verifiable answers; we take a few
simple ones, sized for a small model. A question's split is a stable hash of its text, so a
question generated for both splits lands in one. `reward` is reasoning-gym's score (it gives
partial credit on some tasks); `evaluate` is score == 1. Importing this module does not import
reasoning_gym; `available()` says whether it is installed.
"""

from __future__ import annotations

import importlib.util

from gptlab.data.splits import in_test
from gptlab.tasks.base import Item, Task, extract_number

# name -> reasoning-gym config overrides: few terms and digits, so a small model has a chance.
DEFAULT_DATASETS: dict[str, dict] = {
    "basic_arithmetic": {"max_terms": 3, "max_digits": 2},
    "chain_sum": {"max_terms": 3, "max_digits": 2},
    "gcd": {"max_value": 100},
}


def available() -> bool:
    return importlib.util.find_spec("reasoning_gym") is not None


class Gym(Task):
    """`size` questions per dataset (default 2000 train / 200 test), interleaved then shuffled."""

    name = "gym"

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        datasets: dict[str, dict] | None = None,
        size: int | None = None,
        test_frac: float = 0.1,
    ):
        super().__init__(split, seed)
        if not available():
            raise ImportError("the gym task needs reasoning-gym: pip install reasoning-gym")
        import reasoning_gym

        size = size if size is not None else (2000 if split == "train" else 200)
        share = test_frac if split == "test" else 1 - test_frac
        self.sources: dict = {}
        self.entries: list[tuple[str, dict]] = []
        for k, (ds_name, cfg) in enumerate((datasets or DEFAULT_DATASETS).items()):
            # Draw ~2x what this split needs, keep this split's share, drop repeats.
            n_draw = int(2 * size / max(share, 1e-3)) + 10
            ds = reasoning_gym.create_dataset(ds_name, size=n_draw, seed=seed * 1000 + k, **cfg)
            self.sources[ds_name] = ds
            seen: set[str] = set()
            for j in range(len(ds)):
                e = ds[j]
                q = e["question"]
                if q not in seen and in_test(f"{ds_name}:{q}", test_frac) == (split == "test"):
                    seen.add(q)
                    self.entries.append((ds_name, e))
                    if len(seen) == size:
                        break
        self._rng("order").shuffle(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def example(self, i: int) -> Item:
        ds_name, e = self.entries[self._index(i)]
        messages = [
            {"role": "user", "content": e["question"]},
            {"role": "assistant", "content": str(e["answer"])},
        ]
        return Item(messages, str(e["answer"]), meta={"dataset": ds_name, "entry": e})

    def reward(self, item: Item, completion: str) -> float:
        """reasoning-gym's score of the whole reply, or of its last number, whichever is higher."""
        ds = self.sources[item.meta["dataset"]]
        tries = {completion.strip(), (completion.strip().splitlines() or [""])[-1].strip()}
        if (num := extract_number(completion)) is not None:
            tries.add(num)
        return max(float(ds.score_answer(answer=t, entry=item.meta["entry"])) for t in tries)

    def evaluate(self, item: Item, completion: str) -> bool:
        return self.reward(item, completion) >= 1.0
