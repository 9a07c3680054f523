"""Shared helpers: dtype choice, atomic writes, run folders, error formatting."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from gptlab.common import cpu_has_bf16_matmul, format_duration, pick_autocast_dtype, run_dir
from gptlab.errors import InputError
from gptlab.fileio import (
    atomic_folder,
    atomic_open,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
)


def test_autocast_dtype_choice():
    assert pick_autocast_dtype("cpu", "fp32") is None
    assert pick_autocast_dtype("cuda:0", "bf16") is torch.bfloat16
    expected = torch.bfloat16 if cpu_has_bf16_matmul() else None
    assert pick_autocast_dtype("cpu", "auto") is expected
    with pytest.raises(ValueError, match="fp16"):
        pick_autocast_dtype("cpu", "fp16")


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"step": 1})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write('{"step": 2, "half')
        raise RuntimeError("killed mid-write")
    assert read_json(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_atomic_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_atomic_path_publishes_a_file_written_by_name(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]
    old = os.umask(0o022)
    try:
        with atomic_path(path) as tmp:
            assert tmp.parent == tmp_path and tmp != path
            tmp.write_bytes(b"new")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_folder_replaces_the_whole_folder_or_nothing(tmp_path):
    dst = tmp_path / "export"
    with atomic_folder(dst) as tmp:
        (tmp / "a.txt").write_text("1")
    assert sorted(p.name for p in dst.iterdir()) == ["a.txt"]
    with pytest.raises(RuntimeError), atomic_folder(dst) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in dst.iterdir()) == ["a.txt"]  # the old folder, untouched
    old = os.umask(0o022)
    try:
        with atomic_folder(dst) as tmp:
            (tmp / "b.txt").write_text("2")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "c.txt").write_text("3")
    finally:
        os.umask(old)
    assert sorted(p.name for p in dst.iterdir()) == ["b.txt", "sub"]  # replaced as a whole
    assert (dst / "sub" / "c.txt").read_text() == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temp or old folder left
    assert stat.S_IMODE(dst.stat().st_mode) == 0o755
    assert stat.S_IMODE((dst / "b.txt").stat().st_mode) == 0o644


def test_read_json_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(InputError) as e:
        read_json(bad)
    assert str(e.value).startswith(f"{bad}:3: invalid JSON")
    with pytest.raises(InputError, match="file not found"):
        read_json(tmp_path / "missing.json")


def test_run_dir_and_durations(tmp_path):
    assert run_dir("tiny", "base").as_posix() == "runs/tiny/base"
    assert run_dir(str(tmp_path / "x"), "sft") == tmp_path / "x" / "sft"
    assert [format_duration(s) for s in (7.5, 125, 3725)] == ["7.5s", "2m05s", "1h02m"]
