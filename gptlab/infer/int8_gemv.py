"""The CPU product of an int8 decode step, compiled from int8_gemv.c on first use.

torch's `_weight_int8pack_mm` is compute-bound at batch 1 (6-8 GB/s per thread where the memory
gives 12), and a step of an int8 decode is little else. The C kernel streams packed weights with a
software prefetch and reads fp32 activations as they are (no bf16 round trip). It is built once per
machine with the system's C compiler (`$CC`, else `cc`, with OpenMP), cached under
`cache_dir()/kernels/` by a hash of the source, the flags and the CPU's feature flags, and loaded
with ctypes. Where it cannot be built (no compiler, no OpenMP, another OS), `available()` is False
and the decode step keeps torch's kernel: slower, same answers up to rounding.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.common import cache_dir

SOURCE = Path(__file__).with_name("int8_gemv.c")
BLOCK = 64  # W in int8_gemv.c: output columns per packed block
FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-fopenmp"))


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round each row of w (out, in) to 255 levels spread over its largest magnitude: symmetric,
    weight-only, one fp32 scale per row. Returns (q int8 (out, in), scale fp32 (out,))."""
    w = w.detach().float()
    scale = w.abs().amax(1).clamp_min(1e-12) / 127
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
    return q, scale


def _cpu_fingerprint() -> str:
    """What -march=native depends on: a cache shared by two CPU types must not share a build."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def _build(compiler: str, flags: tuple[str, ...], out: Path) -> bool:
    """Compile the kernel to `out` atomically (a half-written library is never loaded); False on any
    failure, a cache folder that cannot be written included."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
    except OSError:
        return False
    try:
        cmd = [compiler, *flags, "-shared", "-fPIC", str(SOURCE), "-o", tmp]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            return False
        os.replace(tmp, out)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


@functools.cache
def _kernel() -> Callable[..., None] | None:
    """The loaded `int8_gemv` function, built if this machine has none yet; None if it cannot be."""
    if sys.platform != "linux":  # tested there only (OpenMP and the loader's libgomp sharing)
        return None
    compiler = os.environ.get("CC", "cc")
    source, cpu = SOURCE.read_bytes(), _cpu_fingerprint().encode()
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(), cpu])).hexdigest()[:16]
        lib = cache_dir() / "kernels" / f"int8_gemv-{key}.so"
        if lib.exists() or _build(compiler, flags, lib):
            try:
                fn = ctypes.CDLL(str(lib)).int8_gemv
            except OSError:
                continue
            fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_int]
            fn.restype = None
            return fn
    print(f"note: the int8 kernel could not be built (it needs a C compiler with OpenMP, $CC or cc, and a "
          f"writable {cache_dir() / 'kernels'}); int8 decoding uses torch's slower kernel", file=sys.stderr)
    return None


def available() -> bool:
    """True when the compiled kernel can be used (built now if needed)."""
    return _kernel() is not None


@dataclass
class PackedInt8:
    """An int8 matrix in the kernel's layout: blocks of 64 output columns, (blocks, in, 64), zero
    columns padding the last block; fp32 row scales (padded the same way)."""

    q: torch.Tensor  # (blocks, in, BLOCK) int8
    scale: torch.Tensor  # (blocks * BLOCK,) fp32
    n_out: int

    @classmethod
    def of(cls, w: torch.Tensor) -> PackedInt8:
        """Quantize w (out, in) with `quantize_rows` and pack it."""
        q, scale = quantize_rows(w)
        n_out, n_in = q.shape
        pad = -n_out % BLOCK
        if pad:
            q = torch.cat((q, q.new_zeros(pad, n_in)))
            scale = torch.cat((scale, scale.new_zeros(pad)))
        packed = q.view(-1, BLOCK, n_in).transpose(1, 2).contiguous()
        return cls(packed, scale.contiguous(), n_out)

    def dequantized(self) -> torch.Tensor:
        """The (out, in) fp32 matrix this stands for (for tests and checks)."""
        blocks, n_in, _ = self.q.shape
        w = self.q.transpose(1, 2).reshape(blocks * BLOCK, n_in).float() * self.scale[:, None]
        return w[: self.n_out]

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x (rows, in) -> (rows, out) fp32, on the calling torch thread count."""
        fn = _kernel()
        if fn is None:
            raise RuntimeError("the int8 kernel is not available on this machine (see int8_gemv.available())")
        if x.dim() != 2 or x.size(1) != self.q.size(1) or not x.is_cpu:
            raise ValueError(f"expected CPU rows of width {self.q.size(1)}, got shape {tuple(x.shape)} on {x.device}")
        x = x.float().contiguous()
        n_pad = self.scale.numel()
        y = torch.empty(x.size(0), n_pad)
        fn(x.data_ptr(), self.q.data_ptr(), self.scale.data_ptr(), y.data_ptr(), x.size(0), x.size(1), n_pad,
           torch.get_num_threads())
        return y if n_pad == self.n_out else y[:, : self.n_out].contiguous()
