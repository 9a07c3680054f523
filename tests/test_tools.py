"""Tools: the AST calculator, the Python sandbox (adversarial: each attack must be contained),
the registry, and the engine hook that forces tool results back in as tokens."""

from __future__ import annotations

import os
import socket
import warnings

import pytest

from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tools.calculator import MAX_CHARS, CalcError, calculate, evaluate, format_number
from gptlab.tools.registry import ToolRegistry, ToolResult, make_tool_hook
from gptlab.tools.sandbox import SandboxLimits, isolation, run_python

needs_posix = pytest.mark.skipif(os.name != "posix", reason="the sandbox needs POSIX rlimits")
SMALL = SandboxLimits(wall_s=3.0, cpu_s=1.0, memory_mb=128, file_mb=0.25, max_output=2048)


# ---------------------------------------------------------------- calculator
@pytest.mark.parametrize("expr, want", [
    ("12*7", "84"), ("84/2", "42"), ("84.0", "84"), ("1/3", "0.3333333333"), ("0.1+0.2", "0.3"),
    ("2**10", "1024"), ("2^10", "1024"), ("2^3*2", "16"), ("-2^2", "-4"), ("7//2", "3"),
    ("-7 % 3", "2"), ("(2 + 3) * -4", "-20"), ("+5", "5"), ("1_000 * 3", "3000"), ("2.5e3", "2500"),
    ("sqrt(16)", "4"), ("abs(-3.5)", "3.5"), ("round(2.567, 2)", "2.57"), ("max(1, 9, 3)", "9"),
    ("min(4, 2)", "2"), ("floor(2.7) + ceil(2.1)", "5"), ("log(e)", "1"), ("2**-2", "0.25"),
    ("12*7 =", "84"), ("10**20", "100000000000000000000"), ("1e20", "1e+20"),
])
def test_calculator_values(expr, want):
    assert calculate(expr) == want


@pytest.mark.parametrize("expr, why", [
    ("__import__('os').system('ls')", "unknown function"), ("x + 1", "unknown name"),
    ("(1).real", "Attribute"), ("[1, 2][0]", "Subscript"), ("'a' * 3", "only numbers"),
    ("True + 1", "only numbers"), ("1 < 2", "Compare"), ("2j", "only numbers"),
    ("lambda: 1", "Lambda"), ("round(2.5, ndigits=1)", "positional"), ("sqrt(*[4])", "positional"),
    ("1/0", "division by zero"), ("5 % 0", "division by zero"), ("0**-1", "division by zero"),
    ("sqrt(-1)", "math error"), ("(-8)**(1/3)", "not a real number"), ("1e308*10", "not finite"),
    ("10**400/3", "too large"), ("9**9**9", "too large"), ("2**100000", "too large"),
    ("(10**1000)*(10**1000)", "too large"), ("-" * 200 + "1", "nested deeper"),
    ("1+" * 300 + "1", "longer than"), ("", "empty"), ("2 +", "not an arithmetic"),
    ("exp(1000)", "too large"), ("sqrt()", "arguments"),
])
def test_calculator_rejects(expr, why):
    with pytest.raises(CalcError, match=why):
        evaluate(expr)


def test_calculator_input_cap_is_checked_before_parsing():
    with pytest.raises(CalcError, match=f"longer than {MAX_CHARS}"):
        evaluate("(" * 10_000 + "1" + ")" * 10_000)


def test_format_number_is_canonical():
    assert [format_number(x) for x in (84, 84.0, -0.0, 2 / 3, 1e-7, 123456789.123)] == \
        ["84", "84", "0", "0.6666666667", "1e-07", "123456789.1"]


# ---------------------------------------------------------------- sandbox: normal use
@needs_posix
def test_sandbox_runs_code_and_cleans_up_its_directory():
    r = run_python("import os, json, math\nopen('a.txt', 'w').write('hi')\n"
                   "print(open('a.txt').read(), json.dumps(math.factorial(5)), os.getcwd())", SMALL)
    assert r.ok and r.returncode == 0 and not r.timed_out, r
    hi, fact, cwd = r.stdout.split()
    assert (hi, fact) == ("hi", "120")
    assert "gptlab-sandbox-" in cwd and not os.path.exists(cwd)  # deleted after the run


@needs_posix
def test_sandbox_reports_exceptions_syntax_errors_and_exit_codes():
    r = run_python("print('before')\n1/0", SMALL)
    assert r.stdout == "before\n" and r.error == "ZeroDivisionError: division by zero"
    assert "<sandbox>" in r.stderr and "_gptlab_sandbox" not in r.stderr  # preamble frame hidden
    assert run_python("def f(:", SMALL).error.startswith("SyntaxError")
    r = run_python("import sys; sys.exit(3)", SMALL)
    assert r.returncode == 3 and not r.ok


def test_sandbox_refuses_bad_code_without_starting():
    assert run_python("x" * 100, SandboxLimits(max_code_chars=10)).error.startswith("code longer")
    assert run_python("print(1)\0", SMALL).error == "code contains a NUL character"


# ---------------------------------------------------------------- sandbox: adversarial
@needs_posix
def test_infinite_loop_hits_the_cpu_limit():
    r = run_python("while True: pass", SandboxLimits(wall_s=20, cpu_s=1))
    assert not r.ok and not r.timed_out and "CPU time limit" in r.error


@needs_posix
def test_sleeping_code_hits_the_wall_timeout():
    r = run_python("import time\nprint('start', flush=True)\ntime.sleep(60)",
                   SandboxLimits(wall_s=0.5))
    assert r.timed_out and r.error == "timed out after 0.5 s" and r.stdout == "start\n"


@needs_posix
@pytest.mark.parametrize("code", ["x = bytearray(4 * 1024**3)", "x = [0] * 10**9",
                                  "x = []\nwhile True: x.append(' ' * 10**6)"])
def test_huge_allocation_hits_the_memory_limit(code):
    r = run_python(code, SMALL)
    assert not r.ok and r.error == "MemoryError"


@needs_posix
@pytest.mark.parametrize("code, blocked", [
    ("import os\nwhile True: os.fork()", "os.fork"),
    ("import os\nos.system('echo pwned')", "os.system"),
    ("import subprocess\nsubprocess.run(['echo', 'pwned'])", "_posixsubprocess"),
    ("import os\nos.execv('/bin/echo', ['echo', 'pwned'])", "os.exec"),
    ("import ctypes", "ctypes"),
    ("import os\nos.kill(os.getppid(), 9)", "os.kill"),
])
def test_process_creation_is_refused(code, blocked):
    r = run_python(code, SMALL)
    assert r.error.startswith("PermissionError: sandbox:") and blocked in r.error
    assert "pwned" not in r.stdout


@needs_posix
@pytest.mark.parametrize("code", [
    "print(open('/etc/passwd').read())",
    "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())",  # the parent's secrets
    "print(open('../' * 20 + 'etc/passwd').read())",
    "import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())",
    "import os\nos.chdir('/etc')\nprint(open('passwd').read())",
    "import os\nos.mkdir('a')\nos.chdir('a')",  # a moved cwd would skew dir_fd checks
    "import os\nfd = os.open('/etc', os.O_RDONLY)\nprint(os.open('passwd', os.O_RDONLY, dir_fd=fd))",
    "import os\nprint(os.listdir('/'))",
    f"open({__file__!r}, 'a').write('pwned')",  # writing outside, here into this test file
    "import sys\nopen(sys.path[1] + '/evil.py', 'w')",  # stdlib is readable, never writable
])
def test_files_outside_the_working_directory_are_out_of_reach(code):
    r = run_python(code, SMALL)
    assert r.error.startswith("PermissionError: sandbox:"), r
    assert "root:" not in r.stdout and r.stdout == ""


@needs_posix
def test_parent_environment_secrets_do_not_reach_the_child(monkeypatch):
    monkeypatch.setenv("GPTLAB_TEST_SECRET", "hunter2-secret")
    r = run_python("import os\nprint(sorted(os.environ.items()))", SMALL)
    assert r.ok and "hunter2-secret" not in r.stdout and "GPTLAB_TEST_SECRET" not in r.stdout
    assert "PATH" in r.stdout


@needs_posix
@pytest.mark.parametrize("audit_hook", [True, False])
def test_no_network_connection_reaches_a_listening_socket(audit_hook):
    if not audit_hook and not isolation()["network_namespace"]:
        pytest.skip("no network namespaces here: the audit hook is the only network layer")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "s.sendall(b'leak')\nprint('connected')")
        r = run_python(code, SMALL, audit_hook=audit_hook)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever arrived in the accept queue
            server.accept()
    assert not r.ok and "connected" not in r.stdout
    if audit_hook:
        assert "PermissionError: sandbox: socket." in r.error
    else:  # the namespace alone: its loopback is down, nothing is reachable
        assert "OSError" in r.error or "unreachable" in r.error.lower()


@needs_posix
def test_huge_file_hits_the_file_size_limit():
    r = run_python("import os\nf = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 65536)", SMALL)
    assert not r.ok and "File too large" in r.error


@needs_posix
def test_huge_output_is_cut_and_capped():
    r = run_python("while True:\n    print('x' * 100)", SMALL)
    assert not r.ok and "File too large" in r.error  # stdout is a file capped by RLIMIT_FSIZE
    assert len(r.stdout.encode()) + len(r.stderr.encode()) <= SMALL.max_output + 200
    assert "bytes of output dropped" in r.stdout


# ---------------------------------------------------------------- registry
def test_registry_calculator_and_errors_are_values():
    reg = ToolRegistry()
    assert reg.names() == ["calculator"]
    assert reg.run("calculator: 12*7") == ToolResult("84", True)
    assert reg.run("calculator:2+3") == ToolResult("5", True)
    bad = reg.run("calculator: 1/0")
    assert bad == ToolResult("error: division by zero", False)
    assert reg.run("python: print(1)").text.startswith("error: unknown tool 'python'")
    assert not reg.run("no separator").ok and not reg.run(": 1").ok


@needs_posix
def test_registry_python_tool():
    reg = ToolRegistry(python=True, timeout_s=1.0)
    assert reg.names() == ["calculator", "python"]
    assert reg.run("python: print(6*7)") == ToolResult("42", True)
    fenced = "python:\n```python\nfor i in range(3):\n    print(i)\n```"
    assert reg.run(fenced) == ToolResult("0\n1\n2", True)
    assert reg.run("python: print(1)\n1/0") == \
        ToolResult("1\nerror: ZeroDivisionError: division by zero", False)
    assert reg.run("python: import time\ntime.sleep(9)") == \
        ToolResult("error: timed out after 1 s", False)
    long = ToolRegistry(python=True, max_chars=50).run("python: print('y' * 500)")
    assert long.ok and long.text == "y" * 50 + "\n[... truncated]"


# ---------------------------------------------------------------- engine hook
def test_make_tool_hook_forces_result_tokens():
    text = ("To be, or not to be, that is the question. 12*7 = 84; calculator: 2+3 = 5. " * 40)
    tok = Tokenizer.train([text], vocab_size=300)
    hook = make_tool_hook(tok, ToolRegistry())
    start, end = tok.token_id("<|tool_result|>"), tok.token_id("<|tool_result_end|>")
    out = hook(tok.encode("calculator: 12*7"))
    assert out[0] == start and out[-1] == end and tok.decode(out[1:-1]) == "84"
    err = hook(tok.encode("calculator: 1/0"))
    assert tok.decode(err[1:-1]) == "error: division by zero"
    # a result that spells a special token stays plain text: tools cannot forge control tokens
    assert tok.token_id("<|end|>") not in hook(tok.encode("weather: <|end|>"))


def test_calculator_refuses_model_typos_without_warnings():
    """'3x+1' (a model's typo) is an error result, and Python's SyntaxWarning stays out of the chat."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CalcError, match="not an arithmetic expression"):
            calculate("3x+1")
