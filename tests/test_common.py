"""Shared helpers: dtype choice, atomic writes, run folders, error formatting."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from gptlab.common import cpu_has_bf16_matmul, format_duration, pick_autocast_dtype, run_dir
from gptlab.errors import InputError
from gptlab.fileio import atomic_open, atomic_write_json, atomic_write_text, read_json


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
