"""The compiled int8 product: the matrix it stands for, at any batch and thread count, built once
per machine, and a clean fallback where no compiler is found."""

from __future__ import annotations

import pytest
import torch

from gptlab.infer import int8_gemv
from gptlab.infer.int8_gemv import PackedInt8, quantize_rows


@pytest.fixture
def compiled() -> None:
    """Skip where the kernel cannot be built (asked at run time, not while tests are collected)."""
    if not int8_gemv.available():
        pytest.skip("no C compiler with OpenMP here")


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """An empty kernel cache and no loaded kernel: the next call builds (or fails to)."""
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "home"))
    int8_gemv._kernel.cache_clear()
    yield tmp_path / "home" / "kernels"
    int8_gemv._kernel.cache_clear()


def test_rows_round_to_half_a_level_of_their_own_scale() -> None:
    w = torch.randn(7, 32) * torch.logspace(-2, 1, 7)[:, None]  # rows of very different sizes
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() == 127 and scale.dtype == torch.float32
    assert ((q.float() * scale[:, None] - w).abs() <= 0.5 * scale[:, None] + 1e-7).all()


@pytest.mark.parametrize("n_out", [64, 100, 200])  # whole blocks, and a padded last block
@pytest.mark.parametrize("rows", [1, 3, 4, 9])  # the kernel's groups of 4 rows and their remainder
def test_the_kernel_multiplies_by_the_dequantized_matrix(compiled, n_out: int, rows: int) -> None:
    torch.manual_seed(0)
    w = PackedInt8.of(torch.randn(n_out, 48))
    x = torch.randn(rows, 48)
    got = w.matmul(x)
    want = (x.double() @ w.dequantized().double().t()).float()
    assert got.shape == (rows, n_out) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_rows_product_does_not_depend_on_its_batch_or_the_thread_count(compiled, one_thread) -> None:
    """Each output sums in a fixed order: a row decodes the same alone or in a batch, on 1 or 2 threads."""
    torch.manual_seed(1)
    w = PackedInt8.of(torch.randn(192, 80))
    x = torch.randn(6, 80)
    alone = torch.cat([w.matmul(x[i : i + 1]) for i in range(6)])
    batched = w.matmul(x)
    torch.set_num_threads(2)
    assert torch.equal(batched, alone) and torch.equal(w.matmul(x), alone)


def test_the_kernel_rejects_rows_of_the_wrong_width(compiled) -> None:
    w = PackedInt8.of(torch.randn(64, 16))
    with pytest.raises(ValueError, match="width 16"):
        w.matmul(torch.randn(1, 17))


def test_the_kernel_is_built_once_and_then_loaded_from_the_cache(compiled, fresh_build, monkeypatch) -> None:
    assert int8_gemv.available()
    built = [p.name for p in fresh_build.iterdir()]
    assert len(built) == 1 and built[0].startswith("int8_gemv-")  # the library only, no temporary left
    int8_gemv._kernel.cache_clear()
    monkeypatch.setattr(int8_gemv, "_build", lambda *a: pytest.fail("rebuilt a cached kernel"))
    assert int8_gemv.available()


def test_without_a_compiler_the_kernel_is_unavailable_and_says_so(fresh_build, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    assert not int8_gemv.available()
    assert "torch's slower kernel" in capsys.readouterr().err
    assert not list(fresh_build.glob("*"))  # no half-written library left behind
    with pytest.raises(RuntimeError, match="not available"):
        PackedInt8.of(torch.randn(64, 8)).matmul(torch.randn(1, 8))


def test_a_cache_folder_that_cannot_be_written_falls_back_instead_of_failing(fresh_build, monkeypatch) -> None:
    fresh_build.parent.mkdir(parents=True)
    fresh_build.write_text("a file where the kernels folder should be")  # mkdir raises here
    assert not int8_gemv.available()
