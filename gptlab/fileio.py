"""Atomic file writes: a crash at any instant leaves either the old file or the new one.

Everything gptlab writes that a later stage reads (checkpoints, shards, reports, tokenizers,
exported folders) goes through these helpers: write to a temporary name in the same folder,
fsync, rename. `atomic_open` is for writers that take a file object, `atomic_path` for those
that take a file name (safetensors), `atomic_folder` for a folder of files published at once.

No torch here: the data commands import this module and never load torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from gptlab.errors import InputError


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask can only set)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def public_mode() -> int:
    """0o666 minus the process umask: the mode a plain open() would have given."""
    return 0o666 & ~_umask()


def fsync_file(path: str | Path) -> None:
    """Flush a written file's bytes to disk (before a rename publishes it)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries: a rename is durable only once its directory entry is on disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp file name beside `path` for writers that open files by name (safetensors);
    on clean exit the file is fsynced, made readable and renamed over `path`.

    >>> with atomic_path("out/model.safetensors") as tmp:   # doctest: +SKIP
    ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)
        os.chmod(tmp, public_mode())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside `path`; on clean exit fsync it and rename it over `path`."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


@contextmanager
def atomic_folder(dst: str | Path) -> Iterator[Path]:
    """A temp folder beside `dst` to fill; on clean exit every file in it is fsynced and made
    readable, and the folder replaces `dst` (an old `dst` is moved aside, then removed), so
    `dst` is always absent, the old folder, or the whole new one.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        _make_durable_and_public(tmp)
        _publish(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_durable_and_public(folder: Path) -> None:
    """fsync every file (and subfolder) before a rename publishes them; give them the modes a
    plain open()/mkdir() would have (temp files are created 0600, mkdtemp folders 0700)."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
            os.chmod(Path(root) / name, 0o666 & ~mask)
        for name in dirs:
            os.chmod(Path(root) / name, 0o777 & ~mask)
        fsync_dir(root)
    os.chmod(folder, 0o777 & ~mask)


def _publish(tmp: Path, dst: Path) -> None:
    """Rename the finished `tmp` folder to `dst`, moving an old `dst` aside first."""
    old = None
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    os.replace(tmp, dst)  # an empty directory at `dst` is replaced by the rename itself
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def json_loads(text: str | bytes) -> Any:
    """`json.loads`, where input nested deeper than Python's parser can recurse (a line of 100,000
    `[`) is a JSONDecodeError like any other malformed JSON, not a RecursionError: every reader
    that reports bad JSON as one line then reports this too.

    >>> json_loads("[" * 100_000)
    Traceback (most recent call last):
    json.decoder.JSONDecodeError: nested too deeply: line 1 column 1 (char 0)
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


def read_json(path: str | Path) -> Any:
    """Read a JSON file, raising InputError (with the file name) when it is missing or broken."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        return json_loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON: {e.msg}", line=e.lineno) from None
