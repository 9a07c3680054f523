"""Run model-written Python in a separate, limited process.

    result = run_python("print(sum(range(10)))")   # SandboxResult(stdout='45\\n', ..., error=None)

What is contained, and how (layer by layer; a later layer still holds when an earlier one fails):

1. **Separate process, fresh interpreter**: `sys.executable -I -S -B -X utf8 -c PREAMBLE`.
   `-I` ignores PYTHON* variables, the user site and the current directory; `-S` skips `site`,
   so only the standard library is importable (no numpy, no torch: less to attack, faster start).
   stdin is /dev/null; no file descriptor of the parent is inherited (`close_fds`).
2. **Scrubbed environment**: the child's environment is built from nothing (PATH, LANG, HOME
   and TMPDIR pointing at its working directory); no variable of the parent (API keys,
   tokens) reaches it.
3. **Empty temporary working directory**, made for the run and deleted after it.
4. **Resource limits** set by the preamble on itself before the user code runs (soft = hard, so
   the code cannot raise them): RLIMIT_CPU (SIGXCPU, then SIGKILL a second later), RLIMIT_AS
   (address space: allocations fail with MemoryError), RLIMIT_FSIZE (largest file written,
   including its stdout/stderr files, so printing forever ends too), RLIMIT_NOFILE, RLIMIT_CORE=0,
   and RLIMIT_NPROC=0 (no fork, no threads; the kernel exempts uid 0, see "not contained").
5. **Wall timeout**: the child leads a new session (process group); at the deadline, and again
   after every run, the whole group is sent SIGKILL (covers `time.sleep` and blocked calls that
   use no CPU).
6. **No network**: where `unshare` can make namespaces (root, or unprivileged user namespaces),
   the child runs under `unshare -rn` (else `unshare -n`): a new network namespace holds only a
   loopback interface that is down, so no address, not even the parent's 127.0.0.1, is reachable.
   `-r` also puts it in a user namespace, where it holds no capability of the host (it cannot
   mount, change the clock, load modules ...). `isolation()` says which applies here.
7. **Audit hook** (PEP 578, installed by the preamble before the user code; hooks cannot be
   removed): refuses every `socket.*` event; process creation and signals (`os.fork`,
   `os.system`, `os.exec`, `os.posix_spawn`, `os.spawn`, `subprocess.Popen`, `os.kill` ...);
   `ctypes` and the C helpers that bypass audit events (`_ctypes`, `_posixsubprocess`, ...);
   file opens for writing outside the working directory and for reading outside it and the
   standard library (paths are resolved with realpath, so symlinks do not help); listing,
   creating, removing or renaming outside it; chmod/chown, links and symlinks; chdir and
   opening directories (so no `dir_fd=` can anchor a path elsewhere); and changing rlimits. A refused action raises PermissionError("sandbox: ...") in the user code.
8. **Output cap**: stdout and stderr go to unnamed temporary files; the result keeps the first
   bytes of stdout and the last of stderr (where the error is), `max_output` bytes in all.

What is NOT contained:
- The audit hook is defence in depth, not a security boundary: CPython code that finds a way
  around it (an interpreter bug, a C extension) is held only by layers 1-6.
- Without namespaces (macOS, containers or distributions that forbid user namespaces) the
  network is blocked only by the audit hook.
- When the parent runs as root, the child's real uid is 0 (also inside `unshare -r`, which maps
  0 to 0), and the kernel does not apply RLIMIT_NPROC to uid 0: fork and threads are then
  stopped by the audit hook, and stray processes by the group kill (a child that calls setsid
  escapes that kill). There is no seccomp filter.
- The child runs as the parent's user: the operating system does not stop it from reading
  what that user can read (e.g. /etc/passwd, /proc/<parent>/environ); only the audit hook does.
  Run the server as an unprivileged user.
- The existence of files (os.stat, os.path.exists) is not hidden; there is no audit event.
- RLIMIT_FSIZE caps each file, not the number of files: the code can fill the disk with many
  files up to its CPU/wall budget (the directory is deleted afterwards).
- macOS does not enforce RLIMIT_AS; Windows has no `resource` module and is refused.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# The child runs this before the user code; argv: [-c, workdir, "cpu,mem,fsize,nofile", code].
# It imports what it needs first (reading the standard library stays allowed afterwards anyway).
PREAMBLE = r'''
import os, sys, resource, traceback

def _gptlab_sandbox():
    work, limits, code = sys.argv[1], sys.argv[2], sys.argv[3]
    cpu, mem, fsize, nofile = (int(x) for x in limits.split(","))
    R = resource
    for res, soft, hard in ((R.RLIMIT_CPU, cpu, cpu + 1), (R.RLIMIT_AS, mem, mem),
                            (R.RLIMIT_FSIZE, fsize, fsize), (R.RLIMIT_NOFILE, nofile, nofile),
                            (R.RLIMIT_CORE, 0, 0), (R.RLIMIT_NPROC, 0, 0)):
        try:
            R.setrlimit(res, (soft, hard))
        except (ValueError, OSError):  # e.g. a hard limit already lower: keep it
            pass
    real = os.path.realpath
    work = real(work)
    readable = tuple(real(p) for p in sys.path if p) + ("/dev/null", "/dev/urandom")
    banned_modules = {"ctypes", "_ctypes", "_posixsubprocess", "_testcapi", "_testinternalcapi",
                      "_xxsubinterpreters", "_xxinterpchannels", "_testmultiphase"}
    banned_events = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                     "os.forkpty", "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill",
                     "os.chmod", "os.chown", "os.chflags", "os.lchmod", "os.lchown", "os.link",
                     "os.symlink", "os.setxattr", "os.removexattr", "resource.setrlimit",
                     "resource.prlimit", "os.startfile", "sys.remote_exec", "os.chdir"}
    write_events = {"os.mkdir": 1, "os.rmdir": 1, "os.remove": 1, "os.rename": 2,
                    "os.truncate": 1, "os.utime": 1}
    read_events = {"os.listdir": 1, "os.scandir": 1, "os.getxattr": 1, "os.listxattr": 1}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path, roots):
        if path is None or isinstance(path, int):  # None = ".", ints are open descriptors
            return True
        p = real(os.fsdecode(os.fspath(path)))
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    def deny(what):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = bool((flags or 0) & write_flags) or any(c in (mode or "") for c in "wax+")
            if not inside(path, (work,) if writing else (work,) + readable):
                deny(f"opening {path!r}" + (" for writing" if writing else "")
                     + " outside the working directory")
            # A directory descriptor other than the cwd could anchor `dir_fd=` paths, which the
            # open event does not report: the cwd (fixed: chdir is refused) is the only one.
            if not isinstance(path, int) and os.path.isdir(path) and real(path) != work:
                deny(f"opening the directory {path!r}")
        elif event in banned_events or event.startswith(("socket.", "ctypes.")):
            deny(event)
        elif event == "import" and args[0].partition(".")[0] in banned_modules:
            deny(f"importing {args[0]}")
        elif event in write_events or event in read_events:
            roots = (work,) if event in write_events else (work,) + readable
            for path in args[: write_events.get(event) or read_events.get(event)]:
                if not inside(path, roots):
                    deny(f"{event} on {path!r} outside the working directory")

    sys.addaudithook(hook)
    sys.argv = ["<sandbox>"]
    try:
        compiled = compile(code, "<sandbox>", "exec")
    except (SyntaxError, ValueError) as e:
        traceback.print_exception(type(e), e, None)
        sys.exit(1)
    try:
        exec(compiled, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit:
        raise
    except BaseException as e:  # hide the preamble's own frame from the traceback
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        sys.exit(1)

_gptlab_sandbox()
'''


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run. Defaults suit a chat tool: small, quick computations."""

    wall_s: float = 5.0  # wall-clock deadline; the process group is killed at it
    cpu_s: float = 2.0  # CPU seconds (rounded up to whole seconds: RLIMIT_CPU's unit)
    memory_mb: int = 256  # address space (includes the interpreter's own ~20 MB)
    file_mb: float = 1.0  # largest single file written, stdout/stderr included
    max_files: int = 32  # open descriptors (RLIMIT_NOFILE)
    max_output: int = 8192  # bytes of stdout + stderr kept in the result
    max_code_chars: int = 50_000  # longer code is refused (it travels as one argv string)


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    returncode: int | None  # None when the process never started; negative: killed by signal
    timed_out: bool
    error: str | None  # one line saying what went wrong; None when the code ran and exited 0

    @property
    def ok(self) -> bool:
        return self.error is None


@functools.cache
def _namespace_prefix(python: str) -> tuple[str, ...]:
    """The `unshare` command that works on this machine (probed once per interpreter), or ()."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    for flags in ("-rn", "-n"):
        try:
            probe = subprocess.run(
                [unshare, flags, python, "-I", "-S", "-c", "pass"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_child_env("/"),
                timeout=10, check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return (unshare, flags)
    return ()


def isolation() -> dict[str, object]:
    """What contains the child on this machine, e.g. {"network_namespace": True, ...}."""
    prefix = _namespace_prefix(sys.executable)
    return {
        "network_namespace": bool(prefix),
        "user_namespace": prefix[1:] == ("-rn",),
        "rlimits": _has_resource(),
        "audit_hook": True,
        "command_prefix": list(prefix),
    }


def _has_resource() -> bool:
    try:  # a probe: `resource` is Unix-only
        import resource  # noqa: F401
    except ImportError:
        return False
    return True


def _child_env(workdir: str) -> dict[str, str]:
    # Built from nothing: no variable of the parent (secrets, proxies, PYTHONPATH) is passed on.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": workdir, "TMPDIR": workdir}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_capped(f, keep: int, tail: bool) -> str:
    """The first (or last) `keep` bytes of a file, with a note when some were dropped."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - keep) if tail else 0)
    data = f.read(keep)
    text = data.decode("utf-8", errors="replace")
    if size > keep:
        note = f"[... {size - keep} bytes of output dropped ...]"
        text = f"{note}\n{text}" if tail else f"{text}\n{note}"
    return text


def _describe_failure(returncode: int, stderr: str, limits: SandboxLimits) -> str:
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return f"CPU time limit exceeded ({max(1, math.ceil(limits.cpu_s))} s)"
        if sig == signal.SIGXFSZ:
            return f"file size limit exceeded ({limits.file_mb:g} MB)"
        if sig == signal.SIGKILL:  # the hard RLIMIT_CPU, one second after SIGXCPU, or the OOM killer
            return "killed (SIGKILL): CPU or memory limit exceeded"
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return f"killed by signal {name}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exited with status {returncode}"


def run_python(
    code: str, limits: SandboxLimits | None = None, *, audit_hook: bool = True,
    namespace: bool | None = None,
) -> SandboxResult:
    """Run `code` as a Python program in the sandbox and collect its output.

    Never raises for anything the code does: failures come back in `error`. `audit_hook=False`
    and `namespace=False` switch those layers off so that tests can show each remaining layer
    holds on its own; `namespace=None` uses a network namespace when the machine allows one.
    """
    limits = limits or SandboxLimits()
    if not isinstance(code, str):
        return SandboxResult("", "", None, False, "code must be text")
    if len(code) > limits.max_code_chars:
        return SandboxResult("", "", None, False,
                             f"code longer than {limits.max_code_chars} characters")
    if "\0" in code:
        return SandboxResult("", "", None, False, "code contains a NUL character")
    if os.name != "posix" or not _has_resource():
        return SandboxResult("", "", None, False, "the python sandbox needs a POSIX system")

    prefix = _namespace_prefix(sys.executable) if namespace in (None, True) else ()
    if namespace and not prefix:
        return SandboxResult("", "", None, False, "network namespaces are not available here")
    rl = ",".join(str(int(v)) for v in (
        max(1, math.ceil(limits.cpu_s)), limits.memory_mb * 2**20,
        int(limits.file_mb * 2**20), limits.max_files,
    ))
    preamble = PREAMBLE if audit_hook else PREAMBLE.replace("sys.addaudithook(hook)", "pass")
    workdir = tempfile.mkdtemp(prefix="gptlab-sandbox-")
    cmd = [*prefix, sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", preamble, workdir, rl, code]
    timed_out = False
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    cmd, cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, close_fds=True, start_new_session=True,
                )
            except OSError as e:
                return SandboxResult("", "", None, False, f"could not start the sandbox: {e}")
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                proc.wait()
            _kill_group(proc.pid)  # anything the code left behind in its group dies with it
            stderr = _read_capped(err, limits.max_output // 4, tail=True)
            stdout = _read_capped(out, max(0, limits.max_output - len(stderr.encode())), tail=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rc = proc.returncode
    if timed_out:
        error: str | None = f"timed out after {limits.wall_s:g} s"
    elif rc != 0:
        error = _describe_failure(rc, stderr, limits)
    else:
        error = None
    return SandboxResult(stdout, stderr, rc, timed_out, error)
