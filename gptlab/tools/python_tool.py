"""The "python" tool: run the model's code in the sandbox and answer with what it printed.

The answer is the program's stdout (trailing newlines stripped). When the program fails, the
answer is what it printed before failing plus one `error: ...` line (the exception's last
traceback line, or the limit it hit), so the model sees the cause in a few tokens:

    run_python_tool("print(6*7)")        -> ("42", True)
    run_python_tool("print(1)\\n1/0")     -> ("1\\nerror: ZeroDivisionError: division by zero", False)
"""

from __future__ import annotations

import textwrap

from gptlab.tools.sandbox import SandboxLimits, run_python


def prepare_code(text: str) -> str:
    """Strip a Markdown code fence and common indentation, as models often wrap their code."""
    code = text.strip("\n")
    lines = code.strip().splitlines()
    if len(lines) >= 2 and lines[0].lstrip().startswith("```") and lines[-1].strip() == "```":
        code = "\n".join(lines[1:-1])
    return textwrap.dedent(code).strip("\n") + "\n"


def run_python_tool(text: str, limits: SandboxLimits | None = None) -> tuple[str, bool]:
    """Run `text` as Python in the sandbox; returns (answer text, ok)."""
    code = prepare_code(text)
    if not code.strip():
        return "error: no code given", False
    result = run_python(code, limits)
    out = result.stdout.rstrip("\n")
    if result.ok:
        return out, True
    return (f"{out}\n" if out else "") + f"error: {result.error}", False
