"""The compact LSH index against datasketch's MinHashLSH: the same bands, the same candidates, and
the same verdicts from the deduplicator built on it, in less memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from gptlab.data.dedup import Deduplicator
from gptlab.data.lsh import BandIndex, optimal_bands


@pytest.mark.parametrize("threshold, weights", [(0.5, (0.5, 0.5)), (0.8, (0.1, 0.9)), (0.9, (0.5, 0.5)), (0.7, (0.3, 0.7))])
def test_bands_are_the_ones_datasketch_picks(threshold, weights):
    assert optimal_bands(threshold, 128, *weights) == _optimal_param(threshold, 128, *weights)


PERMS = MinHash(num_perm=128, seed=1).permutations  # drawn once: a MinHash built without them draws its own


def sketch(sig: np.ndarray) -> MinHash:
    return MinHash(num_perm=128, hashvalues=sig, permutations=PERMS, scheme="affine32")


def planted(n: int = 600, seed: int = 0) -> np.ndarray:
    """Random signatures, every fifth a copy of an earlier one with some values redrawn."""
    rng = np.random.default_rng(seed)
    sigs = rng.integers(0, 2**32, (n, 128), dtype=np.uint64).astype(np.uint32)
    for i in range(5, n, 5):
        src = rng.integers(0, i)
        sigs[i] = sigs[src]
        redraw = rng.random(128) < rng.choice([0.02, 0.1, 0.3, 0.6])
        sigs[i, redraw] = rng.integers(0, 2**32, int(redraw.sum()), dtype=np.uint64).astype(np.uint32)
    return sigs


def test_candidates_equal_datasketch_minhash_lsh():
    sigs = planted()
    ours = BandIndex(0.8, 128, weights=(0.1, 0.9))
    theirs = MinHashLSH(threshold=0.8, num_perm=128, weights=(0.1, 0.9))
    found = 0
    for i, sig in enumerate(sigs):
        want = sorted(theirs.query(sketch(sig)))
        got = ours.query(sig)
        assert got == want, i
        found += bool(got)
        assert ours.insert(sig) == i
        theirs.insert(i, sketch(sig))
    assert found > 50  # the planted copies were found, not only the empty answer compared
    assert np.array_equal(ours.signature(123), sigs[123]) and ours.size == len(sigs)
    with pytest.raises(IndexError):
        ours.signature(len(sigs))
    with pytest.raises(ValueError, match="128"):
        ours.insert(sigs[0][:64])


def test_the_index_holds_a_third_of_datasketchs_bytes_per_document():
    sigs, n = planted(4096, seed=1), 4096  # one block of the index

    def traced(fill) -> float:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        keep = fill()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del keep
        return used / n

    def ours():
        d = Deduplicator(0.8)
        for i, sig in enumerate(sigs):
            d.remember(i.to_bytes(16, "little"), sig)
        return d

    def theirs():
        lsh, keys, kept = MinHashLSH(threshold=0.8, num_perm=128, weights=(0.1, 0.9)), set(), []
        for i, sig in enumerate(sigs):  # what the deduplicator held before: a set of keys, LSH, uint32 copies
            keys.add(i.to_bytes(16, "little"))
            lsh.insert(i, sketch(sig))
            kept.append(sig.copy())
        return lsh, keys, kept

    ratio = traced(ours) / traced(theirs)
    assert ratio < 0.5, ratio
