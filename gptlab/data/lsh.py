"""A compact MinHash LSH index: each band reduced to one 64-bit integer, signatures in blocks.

The index is the only dedup state that grows with the corpus. datasketch's `MinHashLSH` keys
each band by the bytes of its values and keeps a set of documents per key: 5,366 bytes per
indexed document at 128 permutations and 14 bands (tracemalloc, docs/benchmarks.md), so a
million kept documents need 5.4 GB. Here a band's r values become one integer (a random linear
hash mod 2^64), a band's table maps it to the first document's index (a list only when several
documents share the band), and the signatures live in preallocated uint32 blocks, not one
array object each.

The bands are datasketch's (the same (b, r) for a threshold and weights, the same slices of the
signature), so the candidates are the same. A 64-bit collision between two different bands can
only add a candidate, and the caller confirms every candidate by its estimated Jaccard.
"""

from __future__ import annotations

import functools

import numpy as np

_BLOCK = 4096  # signatures per preallocated block


@functools.cache  # ~50 ms of integrals; each worker's Deduplicator asks again
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows per band) minimising fp_weight * P(false positive) + fn_weight * P(false negative),
    each the integral of the S-curve 1 - (1 - s^r)^b below / above the threshold (datasketch's rule).

    >>> optimal_bands(0.8, 128, 0.1, 0.9)
    (14, 9)
    """
    s_lo, s_hi = np.linspace(0.0, threshold, 2001), np.linspace(threshold, 1.0, 2001)
    best, opt = float("inf"), (1, 1)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - s_lo**r) ** b, s_lo)
            fn = np.trapezoid((1 - s_hi**r) ** b, s_hi)
            err = fp * fp_weight + fn * fn_weight
            if err < best:
                best, opt = err, (b, r)
    return opt


class BandIndex:
    """Insert signatures (uint32, num_perm values) under consecutive ids; `query` returns the ids
    that share at least one band with a signature; `signature(i)` gives one back."""

    def __init__(self, threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5), seed: int = 1):
        self.num_perm = num_perm
        self.bands, self.rows = optimal_bands(threshold, num_perm, *weights)
        rng = np.random.default_rng(seed)
        self._mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._blocks: list[np.ndarray] = []
        self.size = 0

    def band_keys(self, sig: np.ndarray) -> list[int]:
        """One integer per band: sum of value * multiplier, wrapping mod 2^64."""
        bands = np.asarray(sig[: self.bands * self.rows], dtype=np.uint64).reshape(self.bands, self.rows)
        return (bands * self._mult).sum(axis=1, dtype=np.uint64).tolist()

    def query(self, sig: np.ndarray, keys: list[int] | None = None) -> list[int]:
        """Ids sharing a band with `sig`, each once, in insertion order."""
        found: set[int] = set()
        for table, key in zip(self._tables, keys if keys is not None else self.band_keys(sig)):
            hit = table.get(key)
            if hit is None:
                continue
            if isinstance(hit, list):
                found.update(hit)
            else:
                found.add(hit)
        return sorted(found)

    def insert(self, sig: np.ndarray, keys: list[int] | None = None) -> int:
        """Index `sig` under the next id (returned); the values are copied."""
        if len(sig) != self.num_perm:
            raise ValueError(f"signature of {len(sig)} values, the index holds {self.num_perm}")
        idx = self.size
        if idx % _BLOCK == 0:
            self._blocks.append(np.empty((_BLOCK, self.num_perm), dtype=np.uint32))
        self._blocks[-1][idx % _BLOCK] = sig
        for table, key in zip(self._tables, keys if keys is not None else self.band_keys(sig)):
            hit = table.get(key)
            if hit is None:
                table[key] = idx
            elif isinstance(hit, list):
                hit.append(idx)
            else:
                table[key] = [hit, idx]
        self.size += 1
        return idx

    def signature(self, idx: int) -> np.ndarray:
        if not 0 <= idx < self.size:
            raise IndexError(f"no signature {idx} (the index holds {self.size})")
        return self._blocks[idx // _BLOCK][idx % _BLOCK]
