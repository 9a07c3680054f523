"""Rendered conversations -> packed, padded (B, T) batches for supervised finetuning.

Each conversation is rendered once to `(ids, mask)` (gptlab.tokenizer.chat.render_conversation;
mask 1 on what the assistant writes, incl. its closing `<|end|>`). Rows are filled greedily
with whole conversations (each starts with `<|endoftext|>`, as documents do in pretraining) and
padded with `<|pad|>`:

    row tokens  s = conv_a + conv_b + pad ...        (at most T + 1 tokens)
    x[t] = s[t]                                      (t < T)
    y[t] = s[t + 1] if mask[t + 1] == 1 else -1      (the model learns only the assistant's tokens)

so y is -1 exactly where the next token is not the assistant's (prompts, tool results, padding),
and `GPT(x, y)` averages the loss over assistant tokens only. Packing several short
conversations into one row (arithmetic questions are ~30 tokens) wastes far less compute than
one padded row each; a conversation longer than T + 1 tokens is cut to fit.

Order: epoch e shuffles the conversations with `(seed, e)` and packs them, so the rows of an
epoch are a pure function of `(seed, epoch)`; `(epoch, position)` is all a checkpoint needs
(the same contract as gptlab.data.loader.PackedLoader). Ranks take disjoint slices of each
global batch, so N ranks see what one process with batch size N * B sees.

Worked example (T = 4, one conversation [BOS, U, hi, END, A, yo, END] with mask
[0, 0, 0, 0, 0, 1, 1] cut to T + 1 = 5 tokens):
    x = [BOS, U, hi, END], y = [-1, -1, -1, -1]   (the 5th token, A, has mask 0)
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptlab.common import print0
from gptlab.data.conversations import load_conversations

Example = tuple[list[int], list[int]]  # (ids, loss mask), same length


def load_conversation_files(
    files: Sequence[str | Path], fmt: str = "auto", lenient: bool = False
) -> list[list[dict]]:
    """Every file's conversations in order (OpenAI messages / ShareGPT / Alpaca; JSONL, JSON,
    parquet or hf:NAME specs); bad records raise InputError file:line unless `lenient`."""
    convs: list[list[dict]] = []
    for path in files:
        got, counts = load_conversations(path, fmt=fmt, lenient=lenient)
        skipped = f", skipped {counts['skipped']}" if counts["skipped"] else ""
        print0(f"data: {path}: {len(got):,} conversations ({counts['formats']}{skipped})")
        convs += got
    return convs


def split_val(
    convs: Sequence[list[dict]], frac: float, max_val: int, seed: int
) -> tuple[list[list[dict]], list[list[dict]]]:
    """(train, val): a seeded random `frac` of the conversations (at most `max_val`) held out.

    At least one is held out once there are 10 or more, so a small file still gets a val loss.
    """
    n_val = min(max_val, round(frac * len(convs))) if frac > 0 else 0
    if frac > 0 and len(convs) >= 10:
        n_val = max(1, n_val)
    order = list(range(len(convs)))
    random.Random(f"sft-val:{seed}").shuffle(order)
    held = set(order[:n_val])
    return [c for i, c in enumerate(convs) if i not in held], [convs[i] for i in order[:n_val]]


def render_examples(
    tok: Any, conversations: Sequence[list[dict]], max_tokens: int
) -> list[Example]:
    """Render each conversation, cut to `max_tokens`; drop those left with nothing to learn."""
    out = []
    for conv in conversations:
        ids, mask = tok.render_conversation(conv, max_tokens=max_tokens)
        if any(mask[1:]):  # position 0 is never a target
            out.append((ids, mask))
    return out


def pack_rows(
    examples: Sequence[Example], order: Sequence[int], row_tokens: int
) -> list[list[int]]:
    """Greedy packing: indices of whole examples per row, in `order`, each row <= row_tokens tokens.

    pack_rows([([1]*3, m), ([1]*2, m), ([1]*4, m)], [0, 1, 2], 5) -> [[0, 1], [2]]
    """
    rows: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        n = min(len(examples[i][0]), row_tokens)
        if current and used + n > row_tokens:
            rows.append(current)
            current, used = [], 0
        current.append(int(i))
        used += n
    if current:
        rows.append(current)
    return rows


def make_row(
    examples: Sequence[Example], members: Sequence[int], seq_len: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 arrays of length seq_len for one packed row (see the module docstring)."""
    ids: list[int] = []
    mask: list[int] = []
    for i in members:
        e_ids, e_mask = examples[i]
        ids.extend(e_ids)
        mask.extend(e_mask)
    ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
    pad = seq_len + 1 - len(ids)
    s = np.array(ids + [pad_id] * pad, dtype=np.int64)
    m = np.array(mask + [0] * pad, dtype=bool)
    x = s[:-1]
    y = np.where(m[1:], s[1:], -1)
    return x, y


class SFTBatches:
    """Endless iterator of (x, y) int64 (B, T) batches of packed conversations on `device`.

    `state_dict()` -> {"epoch", "position", "seed"}; `load_state_dict()` resumes exactly there.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        seq_len: int,
        pad_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
    ):
        if not examples:
            raise ValueError("no conversations to train on")
        self.examples = list(examples)
        self.B, self.T, self.pad_id = batch_size, seq_len, pad_id
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.device = torch.device(device)
        self.global_rows = batch_size * world_size
        self.epoch, self.position = 0, 0
        self._rows: list[list[int]] | None = None
        n_rows = len(self._epoch_rows())
        if n_rows < self.global_rows:
            raise ValueError(
                f"{len(self.examples)} conversations pack into {n_rows} rows of {seq_len} tokens: fewer than one "
                f"batch of {batch_size} x {world_size} ranks; lower --batch-size or add data"
            )

    def _epoch_rows(self) -> list[list[int]]:
        if self._rows is None:
            n = len(self.examples)
            if self.shuffle:
                order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            else:
                order = np.arange(n)
            self._rows = pack_rows(self.examples, order.tolist(), self.T + 1)
        return self._rows

    @property
    def rows_per_epoch(self) -> int:
        return len(self._epoch_rows())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._epoch_rows()
        if self.position + self.global_rows > len(rows):  # drop the ragged tail of an epoch
            self.epoch, self.position, self._rows = self.epoch + 1, 0, None
            rows = self._epoch_rows()
        first = self.position + self.rank * self.B
        mine = rows[first : first + self.B]
        self.position += self.global_rows
        pairs = [make_row(self.examples, r, self.T, self.pad_id) for r in mine]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device)
        y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
        return x, y

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position, self._rows = int(state["epoch"]), int(state["position"]), None
        self.seed = int(state.get("seed", self.seed))


def eval_batches(
    examples: Sequence[Example],
    batch_size: int,
    seq_len: int,
    pad_id: int,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every example once, packed in order, as (B, T) batches (the last one may be short).

    The same rows every call, so validation loss is comparable across steps. Ranks take every
    world_size-th row (a rank may get one batch fewer; callers reduce sums, not means).
    """
    rows = pack_rows(examples, range(len(examples)), seq_len + 1)[rank::world_size]
    for i in range(0, len(rows), batch_size):
        pairs = [make_row(examples, r, seq_len, pad_id) for r in rows[i : i + batch_size]]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
        y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
        yield x, y
