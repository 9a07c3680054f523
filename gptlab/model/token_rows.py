"""Train a few rows of the embedding (and output head) beside LoRA: the special tokens' rows.

LoRA leaves the embedding frozen. That is right for ordinary tokens, but a token the base model
never saw (the tool tokens `gptlab import` adds, or gptlab's own chat tokens before SFT) has a
row nobody trained: with a frozen row the model can read it only as the row's initial guess, and
can write it only by steering its hidden state onto that guess. So a LoRA run also trains copies
of those rows, as PEFT's `trainable_token_indices` does, at d numbers per token.

    wrap_rows(model, [49152, 49153])      # model.embed_tokens / model.lm_head now use trainable rows
    rows_state_dict(model)                # {"embed_tokens.rows": (2, d)} (+ "lm_head.rows" if untied)
    merge_rows(model)                     # rows written into the weights; plain modules back

With tied embeddings the head reads the same trained rows as the embedding (one tensor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBED_ROWS = "embed_tokens.rows"
HEAD_ROWS = "lm_head.rows"


class RowsEmbedding(nn.Module):
    """A frozen embedding whose rows `ids` come from the trainable `rows` instead."""

    def __init__(self, base: nn.Embedding, ids: list[int]):
        super().__init__()
        self.base = base
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long, device=base.weight.device))
        slot = torch.full((base.num_embeddings,), -1, dtype=torch.long, device=base.weight.device)
        slot[self.ids] = torch.arange(len(ids), device=base.weight.device)
        self.register_buffer("slot", slot)  # token id -> its row in `rows`, -1 for frozen ones
        self.rows = nn.Parameter(base.weight.detach()[self.ids].clone())

    @property
    def weight(self) -> torch.Tensor:  # what code reading `embed_tokens.weight` expects
        return self.base.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        s = self.slot[idx]
        # F.embedding, not self.rows[...]: an indexing gather's backward adds into the rows from
        # several threads in no fixed order on CPU, so two runs of one SFT differed from step 2.
        own = F.embedding(s.clamp(min=0), self.rows)
        return torch.where((s >= 0).unsqueeze(-1), own.to(self.base.weight.dtype), self.base(idx))

    def merged(self) -> nn.Embedding:
        with torch.no_grad():
            self.base.weight[self.ids] = self.rows.to(self.base.weight.dtype)
        return self.base


class RowsHead(nn.Module):
    """A frozen output head whose logits for `ids` use the trainable `rows` (shared with the
    embedding when tied)."""

    def __init__(self, base: nn.Linear, ids: torch.Tensor, rows: nn.Parameter | None = None):
        super().__init__()
        self.base = base
        self.register_buffer("ids", ids)
        self.own = rows is None  # untied: its own rows; tied: the embedding's (not re-registered)
        if rows is None:
            rows = nn.Parameter(base.weight.detach()[ids].clone())
            self.rows = rows
        else:
            self._shared = [rows]  # a plain list: the parameter belongs to the embedding

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def _rows(self) -> torch.Tensor:
        return self.rows if self.own else self._shared[0]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.base(h)
        return logits.index_copy(-1, self.ids, h @ self._rows().to(h.dtype).t())

    def merged(self) -> nn.Linear:
        if self.own:
            with torch.no_grad():
                self.base.weight[self.ids] = self.rows.to(self.base.weight.dtype)
        return self.base


def wrap_rows(model: nn.Module, ids: list[int]) -> None:
    """Make rows `ids` of `model.embed_tokens` (and of an untied `model.lm_head`) trainable."""
    if not ids or isinstance(model.embed_tokens, RowsEmbedding):
        return
    tied = model.lm_head.weight is model.embed_tokens.weight
    emb = RowsEmbedding(model.embed_tokens, sorted(set(ids)))
    model.embed_tokens = emb
    model.lm_head = RowsHead(model.lm_head, emb.ids, emb.rows if tied else None)


def row_ids(model: nn.Module) -> list[int]:
    emb = model.embed_tokens
    return emb.ids.tolist() if isinstance(emb, RowsEmbedding) else []


def rows_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained rows, keyed EMBED_ROWS (and HEAD_ROWS for an untied head); {} when unwrapped."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(model.embed_tokens, RowsEmbedding):
        out[EMBED_ROWS] = model.embed_tokens.rows
    if isinstance(model.lm_head, RowsHead) and model.lm_head.own:
        out[HEAD_ROWS] = model.lm_head.rows
    return out


def merge_rows(model: nn.Module) -> None:
    """Write the trained rows into the weights and put the plain modules back."""
    if isinstance(model.lm_head, RowsHead):
        model.lm_head = model.lm_head.merged()
    if isinstance(model.embed_tokens, RowsEmbedding):
        model.embed_tokens = model.embed_tokens.merged()
