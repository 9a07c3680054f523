"""Scalar heads on the transformer: the reward model and PPO's value function.

Both reuse the GPT trunk (`GPT.hidden_states`) and add one linear map from the final hidden
state to a number. The reward model reads that number at the `<|reward|>` token appended after
the response (InstructGPT; the seed slides' "only the outputs at the green cells are used"); the
value model reads it at every position (the critic's estimate of the return from there on).

Saved next to the trunk as `head.safetensors` (tensors `weight` (1, n_embd) and `bias` (1,)),
so the trunk stays a plain GPT checkpoint that every other tool loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from gptlab.fileio import atomic_write_bytes
from gptlab.model.gpt import GPT


class ScalarHeadModel(nn.Module):
    """GPT trunk + linear head to a scalar per position."""

    def __init__(self, trunk: GPT):
        super().__init__()
        self.trunk = trunk
        self.config = trunk.config
        self.head = nn.Linear(trunk.config.n_embd, 1)
        # The longest input it reads; longer ones keep BOS and their end. A reward model may be
        # trained on shorter windows than the trunk's context (faster), and is then read the same way.
        self.max_tokens = trunk.config.max_seq_len
        # Start at zero: an untrained head scores every sequence 0, so early training sees
        # sigmoid(0) = 0.5 for every pair (reward) or a zero baseline (value).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> scalars (B, T) in fp32."""
        h = self.trunk.hidden_states(idx)
        return self.head(h).squeeze(-1).float()

    def score_at(self, idx: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Scalar at position index[b] of each row (B,): e.g. where the <|reward|> token sits."""
        values = self(idx)
        return values.gather(1, index.view(-1, 1)).squeeze(1)

    def save_head(self, folder: str | Path) -> None:
        state = {"weight": self.head.weight.detach().cpu().contiguous(), "bias": self.head.bias.detach().cpu().contiguous()}
        atomic_write_bytes(Path(folder) / "head.safetensors", save(state))

    def load_head(self, folder: str | Path) -> None:
        """The head's weights and, where the folder records it (reward_config.json), the window it
        was trained on."""
        path = Path(folder) / "head.safetensors"
        state = load_file(str(path))
        self.head.weight.data.copy_(state["weight"])
        self.head.bias.data.copy_(state["bias"])
        meta = Path(folder) / "reward_config.json"
        if meta.exists():
            self.max_tokens = int(json.loads(meta.read_text()).get("max_tokens") or self.max_tokens)


def keep_end(ids: list[int], limit: int) -> list[int]:
    """A sequence cut to `limit` tokens for a scalar head read at its end: BOS and the last ones.

    >>> keep_end([1, 2, 3, 4, 5], 3), keep_end([1, 2], 3)
    ([1, 4, 5], [1, 2])
    """
    return ids if len(ids) <= limit else ids[:1] + ids[len(ids) - limit + 1 :]

