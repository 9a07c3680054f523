"""The KV cache: keys and values of every past position, per layer, per slot.

A slot holds one sequence. Slots fill and empty independently, so a server can put a new request
into a free slot while others are mid-answer (continuous batching). A forward pass works on a
chosen set of rows (`select(rows)`), each continuing its own sequence at its own length.

Shapes:
  k, v:     (n_layer, n_slots, n_kv_head, max_len, head_dim), allocated on first write in the
            dtype the model computes in (bf16 under autocast, fp32 otherwise), or the fixed
            `dtype` given: then writes in another dtype are cast to it (an int8 decode step in
            fp32 continues a prompt prefilled under bf16 autocast)
  lengths:  tokens stored per slot (kept as Python ints; `lengths` gives them as a tensor)
  rows:     (B,) slot index of each row of the current forward pass
"""

from __future__ import annotations

import torch

from gptlab.model.config import ModelConfig

# Default room per slot when none is asked for. A long-context model (SmolLM2: 8,192 positions)
# would otherwise reserve 5.6 GiB for 16 slots up front; ask for more with `max_len`.
DEFAULT_MAX_LEN = 2048


class KVCache:
    def __init__(
        self,
        cfg: ModelConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        self.cfg = cfg
        self.dtype = dtype
        self.n_slots = batch_size
        self.max_len = min(max_len or DEFAULT_MAX_LEN, cfg.max_seq_len)
        self.device = torch.device(device or "cpu")
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        # Lengths live in Python: a decode step then needs no tensor op (or device sync) to
        # find positions, the span to attend over, or whether a mask is needed at all.
        self._len = [0] * batch_size
        self._rows_list: list[int] = list(range(batch_size))
        self._rows = torch.arange(batch_size, device=self.device)
        self._all_rows = True
        self._pos: torch.Tensor | None = None
        self._write_rows: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._span = 0
        self._write_at: int | None = None  # one token for all slots at one position: a plain slice write

    @property
    def lengths(self) -> torch.Tensor:
        """(n_slots,) int64: tokens stored per slot (a copy; `set_length` changes one)."""
        return torch.tensor(self._len, dtype=torch.long)

    def length(self, slot: int) -> int:
        return self._len[slot]

    def set_length(self, slot: int, n: int) -> None:
        """Declare that `slot` holds n tokens (after a padded prefill: the prompt's own length)."""
        if not 0 <= n <= self.max_len:
            raise ValueError(f"length {n} outside [0, {self.max_len}]")
        self._len[slot] = n

    @torch.inference_mode()
    def copy_slot(self, src: int, dst: int, n: int) -> None:
        """Give slot `dst` the first n keys and values of slot `src` (one prefill, shared prompt)."""
        if self.k is not None and self.v is not None:
            self.k[:, dst, :, :n] = self.k[:, src, :, :n]
            self.v[:, dst, :, :n] = self.v[:, src, :, :n]

    def reset(self, slot: int | None = None) -> None:
        """Empty one slot (or all). The stale keys stay but are masked out and overwritten."""
        if slot is None:
            self._len = [0] * self.n_slots
        else:
            self._len[slot] = 0

    def select(self, rows: list[int] | torch.Tensor | None) -> KVCache:
        """Set the slots the next forward pass works on, one per row of its input (None: all)."""
        if rows is None:
            rows_list = list(range(self.n_slots))
        elif isinstance(rows, torch.Tensor):
            rows_list = rows.view(-1).tolist()
        else:
            rows_list = [int(r) for r in rows]
        if rows_list != self._rows_list:  # decode steps reuse the same rows: no new tensor then
            self._rows_list = rows_list
            self._rows = torch.tensor(rows_list, dtype=torch.long, device=self.device)
            self._all_rows = rows_list == list(range(self.n_slots))
        return self

    def positions(self, T: int) -> torch.Tensor:
        """(B, T) absolute positions of T new tokens per selected row; prepares the mask."""
        starts = [self._len[r] for r in self._rows_list]
        lo, hi = min(starts), max(starts)
        self._span = hi + T
        if self._span > self.max_len:
            raise ValueError(f"KV cache full: a sequence would reach {self._span} tokens > max_len={self.max_len}")
        if lo == hi:
            pos = torch.arange(lo, lo + T, device=self.device).expand(len(starts), T)
        else:
            pos = torch.tensor(starts, device=self.device)[:, None] + torch.arange(T, device=self.device)[None, :]
        if T == 1 and lo == hi:
            self._mask = None  # one new token per row, every row at the same length: it sees all keys
        else:
            # mask[b, 0, t, j]: query t of row b may see key position j (its own past and itself).
            keys = torch.arange(self._span, device=self.device)
            self._mask = (keys[None, None, :] <= pos[:, :, None]).unsqueeze(1)  # (B, 1, T, span)
        self._pos = pos
        self._write_rows = self._rows[:, None].expand_as(pos)  # (B, T)
        # The common decode step (every slot, one token, same length) writes through a slice:
        # a third the time of the general indexed write, which a 4-layer step pays 8 times.
        self._write_at = lo if (T == 1 and lo == hi and self._all_rows) else None
        return pos

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Store new k/v (B, n_kv, T, hd) of `layer`; return keys/values (B, n_kv, span, hd) and
        the mask (None when every query may see every returned key)."""
        if self.dtype is not None:
            k, v = k.to(self.dtype), v.to(self.dtype)
        if self.k is None or self.k.dtype != k.dtype:
            shape = (self.cfg.n_layer, self.n_slots, self.cfg.n_kv_head, self.max_len, self.cfg.head_dim)
            self.k = torch.zeros(shape, dtype=k.dtype, device=self.device)
            self.v = torch.zeros(shape, dtype=k.dtype, device=self.device)
        assert self._pos is not None and self.v is not None, "positions() must be called before update()"
        if self._write_at is not None:
            self.k[layer].narrow(2, self._write_at, 1).copy_(k)
            self.v[layer].narrow(2, self._write_at, 1).copy_(v)
        else:
            # Advanced indices on dims 0 and 2 move to the front: the target is (B, T, n_kv, hd).
            self.k[layer][self._write_rows, :, self._pos] = k.transpose(1, 2)
            self.v[layer][self._write_rows, :, self._pos] = v.transpose(1, 2)
        if self._all_rows:
            return self.k[layer, :, :, : self._span], self.v[layer, :, :, : self._span], self._mask
        return (
            self.k[layer, self._rows, :, : self._span],
            self.v[layer, self._rows, :, : self._span],
            self._mask,
        )

    def advance(self, T: int) -> None:
        """The forward pass is done: the selected rows now hold T more tokens."""
        for r in self._rows_list:
            self._len[r] += T
        self._pos = self._mask = self._write_rows = self._write_at = None
