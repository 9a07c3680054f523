"""The calculator tool: arithmetic on an abstract syntax tree, never `eval`.

The input is parsed with `ast.parse(mode="eval")` and walked by a whitelist: number literals
(int, float), the operators + - * / // % ** (and `^`, read as `**`, as people write it), unary
+ and -, parentheses, the constants `pi` and `e`, and a few functions called by bare name
(`sqrt abs round min max floor ceil log log2 log10 exp sin cos tan`). Everything else (other
names, attributes, subscripts, strings, comparisons, keyword arguments, lambdas ...) is an error.

Work is bounded before it is done: the input is at most `MAX_CHARS` characters and `MAX_DEPTH`
nodes deep, a power whose integer result would exceed `MAX_INT_BITS` bits is refused before it is
computed (so `9**9**9` costs nothing), and every integer result is checked against the same cap.
Division by zero, overflow, non-finite or complex results are errors.

Results are canonical text: ints as ints, floats with 10 significant digits, and integral floats
as ints. `calculate("12*7") == "84"`, `calculate("84/2") == "42"`, `calculate("1/3") ==
"0.3333333333"`, `calculate("0.1+0.2") == "0.3"`, `calculate("2^10") == "1024"`.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable

MAX_CHARS = 500
MAX_DEPTH = 40
MAX_INT_BITS = 4096  # ~1233 decimal digits: far below Python's int->str limit (4300 digits)
MAX_ARGS = 32

Number = int | float


class CalcError(ValueError):
    """A calculator input that is not allowed, or whose result is not a finite real number."""


_BINOPS: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,  # guarded in _power before it is called
}
_UNARY: dict[type, Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise CalcError("round: digits must be an integer between -100 and 100")
    return round(x, ndigits)


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {  # name -> (fn, min args, max args)
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, MAX_ARGS),
    "max": (max, 1, MAX_ARGS),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "log": (_log, 1, 2),
    "log2": (math.log2, 1, 1),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
}


def _check(x: object) -> Number:
    """Every intermediate result passes here: a finite real number of bounded size."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise CalcError("result is not a real number")
    if isinstance(x, int) and x.bit_length() > MAX_INT_BITS:
        raise CalcError(f"result too large (more than {MAX_INT_BITS} bits)")
    if isinstance(x, float) and not math.isfinite(x):
        raise CalcError("result is not finite")
    return x


def _power(base: Number, exp: Number) -> Number:
    # |base|**exp has at least (bit_length-1)*exp bits: refuse before doing the work.
    if (isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1
            and ((abs(base).bit_length() - 1) * exp > MAX_INT_BITS or exp > MAX_INT_BITS)):
        raise CalcError(f"result too large (more than {MAX_INT_BITS} bits)")
    return base**exp


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalcError(f"expression nested deeper than {MAX_DEPTH}")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalcError(f"only numbers are allowed, not {node.value!r}")
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _check(_power(left, right))
        return _check(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalcError(f"unknown name {node.id!r}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise CalcError(f"unknown function; allowed: {', '.join(_FUNCTIONS)}")
        fn, lo, hi = _FUNCTIONS[node.func.id]
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise CalcError(f"{node.func.id}: only plain positional arguments are allowed")
        if not lo <= len(node.args) <= hi:
            raise CalcError(f"{node.func.id}: takes {lo}..{hi} arguments, got {len(node.args)}")
        return _check(fn(*(_eval(a, depth + 1) for a in node.args)))
    raise CalcError(f"not allowed in a calculation: {type(node).__name__}")


def evaluate(expr: str) -> Number:
    """Evaluate an arithmetic expression to an int or float; CalcError on anything else.

    >>> evaluate("(2 + 3) * 4 - 2**3")
    12
    """
    if not isinstance(expr, str):
        raise CalcError("expression must be text")
    # `^` is power as people write it; replaced in the text so precedence is that of `**`.
    text = expr.strip().rstrip("=").strip().replace("^", "**")
    if not text:
        raise CalcError("empty expression")
    if len(text) > MAX_CHARS:
        raise CalcError(f"expression longer than {MAX_CHARS} characters")
    try:
        with warnings.catch_warnings():  # model-written input like "3x": an error, not a warning
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalcError(f"not an arithmetic expression: {text!r}") from None
    try:
        return _eval(tree, 0)
    except CalcError:
        raise
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except OverflowError:
        raise CalcError("result too large") from None
    except (ValueError, TypeError) as e:  # sqrt(-1), log(0), min of mixed junk ...
        raise CalcError(f"math error: {e}") from None


def format_number(x: Number) -> str:
    """Canonical text: 84 -> "84", 84.0 -> "84", 1/3 -> "0.3333333333", 1e20 -> "1e+20"."""
    if isinstance(x, int):
        return str(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    text = f"{x:.10g}"
    return "0" if text == "-0" else text


def calculate(expr: str) -> str:
    """evaluate() then format_number(): the calculator tool's answer text."""
    return format_number(evaluate(expr))
