"""Small arithmetic problems whose reference answer uses the calculator tool.

    user:      "What is 37 * 12?"  (or a word problem: "Ada has 5 apples and buys 3 bags ...")
    assistant: [text "Let me compute that.", tool_call "calculator: 37*12",
                tool_result "444", text "The answer is 444."]

The model learns to hand the sum to the tool rather than guess it; `evaluate` reads the last
number of the reply. A problem's split is a stable hash of its expression ("37*12"), so no
expression is in both splits, however it is worded.
"""

from __future__ import annotations

from gptlab.data.splits import split_of
from gptlab.tasks.base import Item, Task, extract_number
from gptlab.tools.calculator import CalcError, format_number
from gptlab.tools.calculator import (
    evaluate as run_calculator,  # the tool; `Arithmetic.evaluate` is the verifier
)

NAMES = ["Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon"]
THINGS = ["apple", "marble", "book", "coin", "pencil", "sticker", "cookie", "stamp", "shell"]

# Word problems: (template, ops). Operands fill {a} {b} {c} in order; the expression keeps them
# in that order too, so "a + b * c" is what the words mean under usual precedence.
WORD = [
    ("{n} has {a} {t}s and gets {b} more. How many {t}s does {n} have now?", ["+"]),
    ("{n} has {a} {t}s and gives {b} to a friend. How many {t}s are left?", ["-"]),
    ("{n} buys {a} boxes with {b} {t}s in each box. How many {t}s is that?", ["*"]),
    (
        "{n} has {a} {t}s and buys {b} bags of {c} {t}s. How many {t}s does {n} have now?",
        ["+", "*"],
    ),
    (
        "{n} has {a} {t}s, gives away {b}, then finds {c} more. How many {t}s does {n} have?",
        ["-", "+"],
    ),
]
BARE = ["What is {e}?", "Compute {e}.", "Calculate {e}.", "{e} = ?"]


def calculate(operands: list[int], ops: list[str]) -> int:
    """Left to right, `*` first: the precedence Python and the calculator use.

    >>> calculate([2, 3, 4], ["+", "*"]), calculate([10, 4, 3], ["-", "-"]), calculate([6, 7], ["*"])
    (14, 3, 42)
    """
    terms, signs = [operands[0]], []
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1] *= x
        else:
            terms.append(x)
            signs.append(op)
    total = terms[0]
    for sign, t in zip(signs, terms[1:]):
        total = total + t if sign == "+" else total - t
    return total


def expression(operands: list[int], ops: list[str], sep: str = "") -> str:
    """[37, 12], ['*'] -> '37*12' (sep=' ' -> '37 * 12')."""
    out = [str(operands[0])]
    for op, x in zip(ops, operands[1:]):
        out += [op, str(x)]
    return sep.join(out)


def tool_answer(expr: str, result: int) -> list[dict]:
    """The reference assistant content: say, call the calculator, read its result."""
    return [
        {"type": "text", "text": "Let me compute that."},
        {"type": "tool_call", "text": f"calculator: {expr}"},
        {"type": "tool_result", "text": str(result)},
        {"type": "text", "text": f"The answer is {result}."},
    ]


class Arithmetic(Task):
    """`size` distinct problems of 2-3 operands (+ - *), about 40% of them word problems."""

    name = "arithmetic"
    generated = True  # drawn, not read: `size=` makes exactly as many as asked (no repeats)
    word_frac = 0.4  # share of word problems; the rest are bare expressions
    n_ops = (1, 1, 2)  # operators per bare expression, drawn uniformly from this tuple

    def __init__(
        self, split: str = "train", seed: int = 0, size: int | None = None, test_frac: float = 0.1
    ):
        super().__init__(split, seed)
        size = size if size is not None else (5000 if split == "train" else 500)
        self.problems: list[dict] = []
        seen: set[str] = set()
        j = 0
        # Draw candidates from a seeded stream and keep those whose expression hashes into this
        # split; the cap only guards against a test_frac of 0 looping forever.
        while len(self.problems) < size and j < 1000 * (size + 10):
            p = self._draw(j)
            j += 1
            if p["expression"] not in seen and split_of(p["expression"], test_frac) == split:
                seen.add(p["expression"])
                self.problems.append(p)

    def _draw(self, j: int) -> dict:
        rng = self._rng(j)
        if rng.random() < self.word_frac:
            kind = rng.randrange(len(WORD))
            template, ops = WORD[kind]
        else:
            kind, template = -1, rng.choice(BARE)
            ops = [rng.choice("+-*") for _ in range(rng.choice(self.n_ops))]
        operands = [rng.randint(2, 99)]
        for op in ops:
            operands.append(rng.randint(2, 12 if op == "*" and len(ops) > 1 else 99))
        if kind >= 0 and ops[0] == "-" and operands[1] > operands[0]:
            operands[:2] = operands[1], operands[0]  # nobody gives away more than they have
        names = {"n": rng.choice(NAMES), "t": rng.choice(THINGS)}
        expr = expression(operands, ops)
        if kind >= 0:
            question = template.format(**names, **dict(zip("abc", operands)))
        else:
            question = template.format(e=expression(operands, ops, " "))
        return {
            "question": question,
            "expression": expr,
            "operands": operands,
            "ops": ops,
            "result": calculate(operands, ops),
            "word": kind >= 0,
        }

    def __len__(self) -> int:
        return len(self.problems)

    def example(self, i: int) -> Item:
        p = self.problems[self._index(i)]
        messages = [
            {"role": "user", "content": p["question"]},
            {"role": "assistant", "content": tool_answer(p["expression"], p["result"])},
        ]
        meta = {k: p[k] for k in ("expression", "operands", "ops", "word")}
        return Item(messages, str(p["result"]), meta=meta)

    def evaluate(self, item: Item, completion: str) -> bool:
        return extract_number(completion) == item.answer

    def reward(self, item: Item, completion: str) -> float:
        r"""Graded, so RL sees progress before the first fully right answer (accuracy stays strict).

        0.5 for a calculator call whose expression has the right value (the operands were
        copied right), 0.5 for the right final number; a wrong final number that at least
        repeats the tool's result gets 0.2 of that half.

        >>> t = Arithmetic(size=10)
        >>> it = Item([], "12", meta={})
        >>> t.reward(it, "calculator: 3*4\n12\nThe answer is 12."), t.reward(it, "calculator: 3*5\n15\nIt is 15.")
        (1.0, 0.1)
        >>> t.reward(it, "calculator: 2*6\n12\nThe answer is 13."), t.reward(it, "I think 7.")
        (0.5, 0.0)
        """
        right_call = False
        result = None
        for line in completion.splitlines():
            if line.strip().startswith("calculator:"):
                try:
                    result = format_number(run_calculator(line.split(":", 1)[1]))
                except CalcError:
                    continue
                right_call = right_call or result == item.answer
        final = extract_number(completion)
        score = 0.5 * right_call
        if final == item.answer:
            score += 0.5
        elif final is not None and final == result:
            score += 0.1
        return score


class LongArithmetic(Arithmetic):
    """Bare expressions of 3-4 operands: the SFT mixture's longest kind and one longer.

    Once SFT has learned to copy a 2-3 operand expression into the calculator (the tiny model
    answers ~0.97 of `arithmetic`), RL on `arithmetic` has nothing left to gain. Here the SFT model
    copies ~0.4 of the expressions right, so a verifiable reward has room to teach the longer
    copy. The split is the same hash of the expression as `arithmetic`'s, so no held-out
    expression here is one that SFT trained on.
    """

    name = "arithmetic_long"
    word_frac = 0.0
    n_ops = (2, 3)
