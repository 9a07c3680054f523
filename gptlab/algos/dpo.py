"""DPO: learn from preference pairs directly, with the reference model in place of a reward model.

Rafailov et al.: the KL-regularised RL objective has a closed-form optimum, so the policy itself
defines an implicit reward r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)), and Bradley-Terry on it gives

    loss = -log sigmoid(beta * [(log pi(c) - log pi_ref(c)) - (log pi(r) - log pi_ref(r))])

over (chosen c, rejected r) pairs, where log pi(y) sums the reply's token log-probs (the
assistant's tokens of the rendered conversation, the SFT loss mask). At the start, policy =
reference and the loss is log 2. A ranking of K replies gives K(K-1)/2 pairs (InstructGPT).

It is an offline loss over a dataset, so it runs through the one loop as any other stage:
`PreferenceBatches` gives batches of pairs (resumable position), `dpo_loss` the loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from gptlab.algos.rollout import masked_mean, token_logprobs

if TYPE_CHECKING:
    from gptlab.data.preferences import Ranking
    from gptlab.tokenizer.protocol import TokenizerLike


@dataclass
class Pair:
    """One (chosen, rejected) pair as model inputs: ids[:-1] and targets (-1 off the reply)."""

    chosen: tuple[list[int], list[int]]
    rejected: tuple[list[int], list[int]]


def _encode(tok: TokenizerLike, conv: list[dict], max_len: int, ended: bool = True) -> tuple[list[int], list[int]] | None:
    """ids[:-1] and reply targets; a reply the sampler cut (`ended` False) is scored without the
    end-of-turn token the template adds, so DPO never learns "end here" from a reply that did not."""
    ids, mask = tok.render_conversation(conv)
    if not ended:  # the reply's last scored token is the end of turn the template wrote
        last = max((i for i, m in enumerate(mask) if m), default=None)
        if last is not None:
            mask = mask[:last] + [0] + mask[last + 1 :]
    ids, mask = ids[: max_len + 1], mask[: max_len + 1]
    targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
    if all(t == -1 for t in targets):
        return None  # the reply was cut off entirely: nothing to compare
    return ids[:-1], targets


def ranking_pairs(
    tok: TokenizerLike, rankings: list[Ranking], max_len: int, conversation: Callable[[Ranking, int], list[dict]]
) -> tuple[list[Pair], int]:
    """All K(K-1)/2 pairs of every ranking, rendered; (pairs, dropped for lack of room).

    `conversation(r, i)` is answer i's conversation, the one the reward model is trained on
    (gptlab reward's, which keeps an answer's tool-call parts), passed in so this library does not
    import a command.
    """
    pairs, dropped = [], 0
    for r in rankings:
        ended = r.meta.get("ended")
        if not (isinstance(ended, list) and len(ended) == len(r.responses)):
            ended = [True] * len(r.responses)
        enc = [_encode(tok, conversation(r, i), max_len, bool(ended[i])) for i in range(len(r.responses))]
        for c, j in r.pairs():
            if enc[c] is None or enc[j] is None:
                dropped += 1
                continue
            pairs.append(Pair(enc[c], enc[j]))
    return pairs, dropped


def collate(pairs: list[Pair], pad_id: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """2B right-padded rows: the B chosen replies first, then the B rejected ones (one forward)."""
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    width = max(len(ids) for ids, _ in rows)
    idx = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), -1, dtype=torch.long)
    for b, (ids, tg) in enumerate(rows):
        idx[b, : len(ids)] = torch.tensor(ids)
        targets[b, : len(tg)] = torch.tensor(tg)
    return {"idx": idx.to(device), "targets": targets.to(device)}


class PreferenceBatches:
    """Endless batches of `batch_size` pairs, reshuffled each epoch; position is checkpointed."""

    def __init__(self, pairs: list[Pair], batch_size: int, pad_id: int, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if not pairs:
            raise ValueError("no preference pairs to train on")
        self.pairs, self.batch_size, self.pad_id, self.seed, self.device = pairs, batch_size, pad_id, seed, device
        self.epoch, self.pos = 0, 0
        self.order = self._shuffle()

    def _shuffle(self) -> list[int]:
        order = list(range(len(self.pairs)))
        random.Random(f"dpo:{self.seed}:{self.epoch}").shuffle(order)
        return order

    def __iter__(self) -> PreferenceBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        picked = []
        while len(picked) < self.batch_size:
            if self.pos >= len(self.order):
                self.epoch, self.pos = self.epoch + 1, 0
                self.order = self._shuffle()
            picked.append(self.pairs[self.order[self.pos]])
            self.pos += 1
        return collate(picked, self.pad_id, self.device)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.order = self._shuffle()


def dpo_objective(
    logp_c: torch.Tensor, logp_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-pair margins beta * [...]) from sequence log-probs (B,) each.

    >>> z = torch.zeros(3)
    >>> round(float(dpo_objective(z, z, z, z, beta=0.1)[0]), 4)  # policy = reference: log 2
    0.6931
    """
    margins = beta * ((logp_c - ref_c) - (logp_r - ref_r))
    return -F.logsigmoid(margins).mean(), margins


def make_dpo_loss(ref: nn.Module, beta: float, nll_coef: float = 0.0):
    """loss_fn(model, batch) for the loop: DPO with the frozen reference run on the same rows.

    With `nll_coef`, alpha * the chosen replies' mean token NLL is added (RPO, Pang et al. 2024):
    DPO alone only widens the gap between chosen and rejected, and when both end with the same
    end-of-turn token it can lower that token's probability in both; the NLL term keeps the
    chosen reply, its ending included, likely.
    """

    def dpo_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        idx, targets = batch["idx"], batch["targets"]
        logp, entropy = token_logprobs(model, idx, targets)
        with torch.no_grad():
            ref_logp, _ = token_logprobs(ref, idx, targets, with_entropy=False)
        seq, ref_seq = logp.sum(1), ref_logp.sum(1)
        B = idx.size(0) // 2
        loss, margins = dpo_objective(seq[:B], seq[B:], ref_seq[:B], ref_seq[B:], beta)
        mask = (targets >= 0).float()
        nll = -(logp[:B] * mask[:B]).sum() / mask[:B].sum().clamp(min=1)
        if nll_coef:
            loss = loss + nll_coef * nll
        with torch.no_grad():
            chosen_r = beta * (seq[:B] - ref_seq[:B])
            metrics = {
                "reward": margins.mean(),  # implicit reward margin, chosen minus rejected
                "reward_chosen": chosen_r.mean(),
                "reward_accuracy": (margins > 0).float().mean(),
                "chosen_nll": nll.detach(),
                # log pi - log pi_ref per chosen reply: a KL estimate on the data, not on samples
                "kl": (seq[:B] - ref_seq[:B]).mean(),
                "entropy": masked_mean(entropy, mask),
                "response_len": mask[:B].sum(1).mean(),
                "tokens": int(idx.numel()),
            }
        return loss, metrics

    return dpo_loss


@torch.no_grad()
def heldout_preferences(model: nn.Module, ref: nn.Module, pairs: list[Pair], beta: float, pad_id: int,
                        batch_size: int = 16) -> dict[str, float]:
    """Held-out DPO loss and preference accuracy (implicit reward of chosen > rejected)."""
    device = next(model.parameters()).device
    losses, correct = [], 0.0
    for lo in range(0, len(pairs), batch_size):
        b = collate(pairs[lo : lo + batch_size], pad_id, device)
        logp, _ = token_logprobs(model, b["idx"], b["targets"], with_entropy=False)
        ref_logp, _ = token_logprobs(ref, b["idx"], b["targets"], with_entropy=False)
        n = b["idx"].size(0) // 2
        seq, ref_seq = logp.sum(1), ref_logp.sum(1)
        loss, margins = dpo_objective(seq[:n], seq[n:], ref_seq[:n], ref_seq[n:], beta)
        losses.append(float(loss) * n)
        correct += float((margins > 0).sum()) + 0.5 * float((margins == 0).sum())  # a tie is a coin
    n = max(len(pairs), 1)
    return {"heldout_dpo_loss": sum(losses) / n, "heldout_pref_accuracy": correct / n}
