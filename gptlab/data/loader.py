"""Packed (B, T) batches from token shards: shuffled, rank-sharded, resumable.

Shard format (`gptlab data tokenize` writes it): `<dir>/index.json` =
`{"format": "gptlab-shards-v1", "dtype": "uint16"|"uint32", "vocab_size", "eot_id", "tokenizer",
"splits": {"train": [{"file", "tokens", "documents"}, ...], "val": [...]}}`; each `.bin` is a raw
little-endian array of that dtype, and every document is preceded by `<|endoftext|>`, so a window
that crosses a document boundary sees the delimiter (seed slides: rows of shape (B, T), documents
delimited by that token).

Windows: a split is one long token stream (the shards concatenated). Window i is
tokens[i*T : i*T + T + 1]; x = its first T tokens, y = its last T (next-token targets).
Windows do not overlap, so an epoch sees each token once as a target.

Order: each epoch is a permutation of the windows drawn from `(seed, epoch)`, so the order is a
pure function of the state `(epoch, position)`: that pair is all a checkpoint needs.

Ranks: one step of the global batch is the next `B * world_size` windows of the permutation;
rank r takes rows [r*B, (r+1)*B) of it. Together the ranks see exactly the batch a single
process with batch size B * world_size sees, which is what makes N-rank data parallel equal to
one process (test_distributed.py).

    >>> loader = PackedLoader("runs/tiny/shards", "train", batch_size=8, seq_len=256)  # doctest: +SKIP
    >>> x, y = next(loader); x.shape                                                  # doctest: +SKIP
    torch.Size([8, 256])
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptlab.data.shards import ShardIndex
from gptlab.errors import InputError


class TokenStream:
    """The shards of one split as one random-access token array (memory-mapped, never copied whole)."""

    def __init__(self, index: ShardIndex, split: str):
        self.arrays = index.arrays(split)
        sizes = [len(a) for a in self.arrays]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_tokens = int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """tokens[start : start + length] across shard boundaries, as int64."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        while filled < length:
            local = start + filled - int(self.starts[i])
            take = min(length - filled, len(self.arrays[i]) - local)
            out[filled : filled + take] = self.arrays[i][local : local + take]
            filled += take
            i += 1
        return out


class PackedLoader:
    """Endless iterator of (x, y) int64 batches of shape (B, T) on `device`.

    `state_dict()` -> {"epoch", "position"} after the batches handed out so far;
    `load_state_dict()` resumes exactly there.
    """

    def __init__(
        self,
        folder: str | Path,
        split: str = "train",
        batch_size: int = 8,
        seq_len: int = 256,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
    ):
        self.info = ShardIndex.load(folder)
        self.stream = TokenStream(self.info, split)
        self.split, self.B, self.T = split, batch_size, seq_len
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.device = torch.device(device)
        self.n_windows = (self.stream.n_tokens - 1) // seq_len
        self.global_rows = batch_size * world_size
        if self.n_windows < self.global_rows:
            raise InputError(
                folder,
                f"{split!r} split has {self.stream.n_tokens} tokens: fewer than one global batch "
                f"({batch_size} x {world_size} ranks rows of {seq_len + 1} tokens); lower --batch-size or --seq-len",
            )
        self.epoch, self.position = 0, 0
        self._order: np.ndarray | None = None
        # Pinned host memory lets the copy to the GPU overlap with compute (non_blocking=True).
        self._pin = self.device.type == "cuda"

    @property
    def vocab_size(self) -> int:
        return self.info.vocab_size

    @property
    def eot_id(self) -> int:
        return self.info.eot_id

    @property
    def batches_per_epoch(self) -> int:
        return self.n_windows // self.global_rows

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch])
                self._order = rng.permutation(self.n_windows)
            else:
                self._order = np.arange(self.n_windows)
        return self._order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position + self.global_rows > self.n_windows:  # drop the ragged tail of an epoch
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        order = self._epoch_order()
        first = self.position + self.rank * self.B
        rows = order[first : first + self.B]
        self.position += self.global_rows
        T = self.T
        buf = np.stack([self.stream.read(int(w) * T, T + 1) for w in rows])
        t = torch.from_numpy(buf)
        if self._pin:
            t = t.pin_memory()
        t = t.to(self.device, non_blocking=True)
        return t[:, :-1], t[:, 1:]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None
        self.seed = int(state.get("seed", self.seed))


def eval_batches(
    folder: str | Path,
    split: str,
    batch_size: int,
    seq_len: int,
    max_tokens: int | None,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first `max_tokens` target tokens of a split in order, as (B, T) batches, rank-sharded.

    The same windows every call, so val loss is comparable across steps and runs. All ranks get
    the same number of batches (the ragged tail is dropped) so collective reductions line up.
    """
    loader = PackedLoader(
        folder,
        split,
        batch_size,
        seq_len,
        rank=rank,
        world_size=world_size,
        device=device,
        shuffle=False,
    )
    n_batches = loader.batches_per_epoch
    if max_tokens is not None:
        n_batches = min(n_batches, max(1, max_tokens // (batch_size * seq_len * world_size)))
    for _ in range(n_batches):
        yield next(loader)
