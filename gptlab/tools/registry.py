"""Tool registry: turns the text of a tool call into a result, and results into forced tokens.

A call is `"<tool name>: <input>"` (the first ":" separates; one space after it is dropped), as
the chat format writes it between `<|tool_call|>` and `<|tool_call_end|>`:

    reg = ToolRegistry()
    reg.run("calculator: 12*7")   -> ToolResult(text="84", ok=True)
    reg.run("weather: Paris")     -> ToolResult(text="error: unknown tool 'weather' ...", ok=False)

The registry never raises: a bad call is an answer the model can read and recover from. The
engine stays ignorant of tools: `make_tool_hook` gives it a function from the call's token ids
to the token ids to force in (`<|tool_result|>` + result + `<|tool_result_end|>`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gptlab.tokenizer.special import TOOL_RESULT, TOOL_RESULT_END
from gptlab.tools.calculator import CalcError, calculate
from gptlab.tools.python_tool import run_python_tool
from gptlab.tools.sandbox import SandboxLimits


@dataclass
class ToolResult:
    text: str
    ok: bool


class ToolRegistry:
    """The calculator is always on; `python=True` adds the sandboxed Python tool.

    `timeout_s` is the Python tool's wall deadline (its CPU limit is the same, at least 1 s).
    `max_chars` caps the result text forced back into the model's context.
    """

    def __init__(self, python: bool = False, timeout_s: float = 5.0, max_chars: int = 2000):
        self.max_chars = max_chars
        self._tools: dict[str, Callable[[str], tuple[str, bool]]] = {"calculator": _calculator}
        if python:
            limits = SandboxLimits(wall_s=timeout_s, cpu_s=timeout_s)
            self._tools["python"] = lambda code: run_python_tool(code, limits)

    def names(self) -> list[str]:
        return list(self._tools)

    def run(self, call_text: str) -> ToolResult:
        """Run one call; unknown tools, bad input and tool crashes come back as ok=False."""
        name, sep, arg = str(call_text).partition(":")
        name = name.strip()
        if not sep or not name:
            return ToolResult(f"error: a tool call is 'name: input', got {call_text[:60]!r}", False)
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(
                f"error: unknown tool {name[:40]!r} (available: {', '.join(self._tools)})", False
            )
        arg = arg.removeprefix(" ")
        try:
            text, ok = tool(arg)
        except Exception as e:  # noqa: BLE001 (a tool bug must not take the chat down: report it)
            text, ok = f"error: {name} failed: {type(e).__name__}: {e}", False
        if len(text) > self.max_chars:
            text = text[: self.max_chars] + "\n[... truncated]"
        return ToolResult(text, ok)


def _calculator(expr: str) -> tuple[str, bool]:
    try:
        return calculate(expr), True
    except CalcError as e:
        return f"error: {e}", False


def make_tool_hook(tok, registry: ToolRegistry) -> Callable[[list[int]], list[int]]:
    """Engine hook: ids of a tool call's inner text -> ids to force in.

    The result text is encoded as ordinary text, so a tool that prints "<|end|>" cannot forge a
    special token.
    """
    start, end = tok.token_id(TOOL_RESULT), tok.token_id(TOOL_RESULT_END)

    def hook(call_ids: list[int]) -> list[int]:
        result = registry.run(tok.decode(call_ids))
        return [start, *tok.encode(result.text), end]

    return hook
