"""The reward model's library: data, batches, the Bradley-Terry loss and scoring.

The model is the SFT transformer plus a zero-initialised linear head (gptlab.model.heads), read
at the `<|reward|>` token appended after the response. A ranking of K answers gives K(K-1)/2
(chosen, rejected) pairs; as in InstructGPT every pair of one prompt goes into the same batch, and
each of the K conversations is run through the model once (not once per pair), which is what
makes using all pairs cheap. Loss: mean over the batch's pairs of -log sigmoid(r_chosen - r_rejected).

`gptlab reward train|eval` (gptlab.stages.reward) is the command on top; DPO reads `conversation`
and RL reads `load_reward_model` from here; the held-out pair report is gptlab.eval.reward_pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gptlab.data.preferences import Ranking
from gptlab.errors import InputError
from gptlab.model.heads import ScalarHeadModel, keep_end
from gptlab.model.io import load_model

LM_HEAD = "trunk.lm_head.weight"


class RewardModel(ScalarHeadModel):
    """ScalarHeadModel whose training checkpoint holds the trunk under GPT's own names (so the
    checkpoint code treats it as a GPT, tied embeddings included) plus `head.weight`/`head.bias`,
    and leaves out the LM head, which the reward model never reads."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        sd = super().state_dict(*args, **kwargs)
        out = {k.removeprefix("trunk."): v for k, v in sd.items() if k != LM_HEAD}
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):  # type: ignore[override]
        state = {(k if k.startswith("head.") else "trunk." + k): v for k, v in state_dict.items()}
        state[LM_HEAD] = self.trunk.lm_head.weight.detach()  # unused; keep what the trunk has
        return super().load_state_dict(state, strict=strict, assign=assign)


def conversation(r: Ranking, i: int) -> list[dict]:
    """Prompt + answer i, with the answer's message parts (tool calls) when the ranking kept them."""
    contents = r.meta.get("contents")
    content = contents[i] if isinstance(contents, list) and len(contents) == len(r.responses) else r.responses[i]
    return r.prompt + [{"role": "assistant", "content": content}]


def encode(tok, r: Ranking, max_len: int) -> list[list[int]]:
    """Token ids of each answer's conversation, ending with <|reward|>; too long -> keep BOS + the end."""
    out = []
    for i in range(len(r.responses)):
        ids = tok.render_for_reward(conversation(r, i))
        out.append(keep_end(ids, max_len))
    return out


def prompt_key(r: Ranking) -> str:
    return json.dumps(r.prompt, sort_keys=True, ensure_ascii=False)


def ranking_key(r: Ranking) -> str:
    return json.dumps([r.prompt, r.responses], sort_keys=True, ensure_ascii=False)


def split_heldout(
    rankings: list[Ranking], frac: float, seed: int, by: str = "prompt"
) -> tuple[list[Ranking], list[Ranking]]:
    """(train, held out) by a stable hash of each ranking's prompt (`by="prompt"`: one prompt's
    rankings stay on one side) or of the whole ranking (`by="ranking"`: the held-out answers are
    unseen, their prompts may not be; for data with few prompts, such as chitchat's 36 topics,
    where a prompt split holds out three topics and its accuracy swings with which three)."""
    if by not in ("prompt", "ranking"):
        raise ValueError(f"split by 'prompt' or 'ranking', not {by!r}")
    key = prompt_key if by == "prompt" else ranking_key

    def held(r: Ranking) -> bool:
        h = hashlib.blake2b(f"{seed}:{key(r)}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2**64 < frac

    return [r for r in rankings if not held(r)], [r for r in rankings if held(r)]


def collate(groups: list[tuple[list[list[int]], list[tuple[int, int]]]], pad_id: int, device: str = "cpu"):
    """Rows (each distinct sequence once) + pairs as row indices.

    groups: per ranking, (its K encoded sequences, its (chosen, rejected) index pairs).
    Returns idx (N, T) right-padded, last (N,) index of <|reward|>, chosen (P,), rejected (P,).
    """
    rows: dict[tuple[int, ...], int] = {}
    chosen, rejected = [], []
    for seqs, pairs in groups:
        ids = [rows.setdefault(tuple(s), len(rows)) for s in seqs]
        for c, r in pairs:
            chosen.append(ids[c])
            rejected.append(ids[r])
    seqs = list(rows)
    width = max(map(len, seqs))
    idx = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        idx[b, : len(s)] = torch.tensor(s)
    last = torch.tensor([len(s) - 1 for s in seqs])
    to = lambda t: t.to(device)
    return to(idx), to(last), to(torch.tensor(chosen)), to(torch.tensor(rejected))


class PairBatches:
    """Endless batches of whole prompts (all their rankings' pairs), reshuffled each epoch.

    A batch takes prompts until it holds at least `batch_pairs` pairs. Its position (epoch,
    index) is checkpointed, so a resumed run sees the same batches.
    """

    def __init__(self, encoded: list[tuple[str, list[list[int]], list[tuple[int, int]]]], batch_pairs: int,
                 pad_id: int, seed: int = 0, rank: int = 0, world_size: int = 1, device: str = "cpu"):
        by_prompt: dict[str, list] = {}
        for key, seqs, pairs in encoded:
            by_prompt.setdefault(key, []).append((seqs, pairs))
        self.groups = [by_prompt[k] for k in sorted(by_prompt)][rank::world_size]
        if not self.groups:
            raise ValueError("no training rankings (every one was held out, or the data is empty)")
        self.batch_pairs, self.pad_id, self.seed, self.device = batch_pairs, pad_id, seed, device
        self.epoch, self.pos = 0, 0
        self._order = self._shuffle()

    def _shuffle(self) -> list[int]:
        order = list(range(len(self.groups)))
        random.Random(f"reward:{self.seed}:{self.epoch}").shuffle(order)
        return order

    def __iter__(self) -> PairBatches:
        return self

    def __next__(self):
        picked, n = [], 0
        while n < self.batch_pairs:
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffle()
            group = self.groups[self._order[self.pos]]
            self.pos += 1
            picked += group
            n += sum(len(p) for _, p in group)
        return collate(picked, self.pad_id, self.device)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._shuffle()


def bt_loss(model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, Any]]:
    """Bradley-Terry: mean -log sigmoid(r_chosen - r_rejected) over the batch's pairs."""
    idx, last, chosen, rejected = batch
    scores = model(idx).gather(1, last.view(-1, 1)).squeeze(1)  # (N,) the scalar at <|reward|>
    diff = scores[chosen] - scores[rejected]
    loss = -F.logsigmoid(diff).mean()
    return loss, {"tokens": idx.numel(), "pair_acc": (diff > 0).float().mean(), "margin": diff.mean()}


@torch.no_grad()
def score_all(model: ScalarHeadModel, encoded: list[list[list[int]]], pad_id: int, batch_size: int = 32) -> list[list[float]]:
    """The reward of every sequence, grouped as `encoded` is (per ranking)."""
    # Each distinct sequence is scored once (collate merges duplicates, e.g. two equal answers).
    unique = list(dict.fromkeys(tuple(s) for seqs in encoded for s in seqs))
    device = next(model.parameters()).device
    score: dict[tuple[int, ...], float] = {}
    for start in range(0, len(unique), batch_size):
        chunk = [list(s) for s in unique[start : start + batch_size]]
        idx, last, _, _ = collate([(chunk, [])], pad_id, device)
        score.update(zip(unique[start : start + batch_size], model.score_at(idx, last).float().tolist()))
    return [[score[tuple(s)] for s in seqs] for seqs in encoded]


def load_reward_model(folder: str | Path, device: str = "cpu") -> ScalarHeadModel:
    """Trunk (model.safetensors) + head (head.safetensors) from a reward-model folder, in eval mode."""
    folder = Path(folder)
    if not (folder / "head.safetensors").exists():
        raise InputError(folder, "no head.safetensors here; is this a reward-model folder (gptlab reward train)?")
    model = ScalarHeadModel(load_model(folder))
    model.load_head(folder)
    return model.to(device).eval()
