"""A lean one-token decode step for a plain `GPT`: the same math as `GPT.hidden_states`, fewer ops.

At batch 1 a small model's decode step is bound by per-op overhead, not arithmetic: the tiny
preset's step is ~1.5 ms of ~200 small torch calls (29 matmuls, 9 norms, rotary, cache writes,
module dispatch), and each costs microseconds whatever its size. This step does the same math in
about half the calls:

- q, k, v come from one matmul on the concatenated weights, gate and up from another
  (29 matmuls -> 17 for 4 layers); the fused copies are rebuilt whenever a weight changes in
  place (the tensors' version counters) and, for a model with trainable weights, at the start of
  every generation (`sync`), so an RL policy being trained decodes with its new weights;
- the copies are stored transposed, (in, out), and multiplied as `x @ w`: for one row, that
  layout ran 2-3x faster than `F.linear` against (out, in) on the CPU measured (docs/benchmarks.md,
  "Chat");
- rotary is applied to q and k together, with `roll` and a sign-folded sin table:
  cat(-x2, x1) * sin == roll(x, hd/2) * cat(-sin1, sin1), exactly (a sign flip is exact);
- plain functional calls, no `nn.Module.__call__`;
- on the CPU, each matrix is also split by output columns into one slice per torch thread,
  stored (threads, in, out / threads), and multiplied with one `bmm`: a one-row product against
  a matrix streamed from memory runs on one core in `x @ w` (16 GB/s measured on the 2-core
  AMD VM), while `bmm` gives each slice its own core (26 GB/s), and at batch 1 reading the
  weights is the whole cost (docs/benchmarks.md, "Real models"). The tiny preset, whose
  matrices fit in the cache, gains too (430 -> 545 tokens/s at batch 1 on the same machine).

It reads and writes the same `KVCache` as the generic path, so a sequence can be prefilled by
`GPT.hidden_states` and continued here. The fused weights are one more copy of the block
matrices; it is meant for decoding, where latency is the point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptlab.model.gpt import GPT, MLP, Attention, Block, KVCacheLike, attend
from gptlab.model.lora import LoRALinear

_PLAIN_MODULES = (GPT, Block, Attention, MLP, nn.ModuleList, nn.Linear, nn.Embedding, nn.RMSNorm, nn.Dropout, nn.Identity,
                  LoRALinear)


def _weight(linear: nn.Module) -> torch.Tensor:
    """A linear layer's effective weight: W, or W + (alpha / r) B A for a LoRA-wrapped one (an RL
    policy training adapters decodes its rollouts with them folded into the fused copies)."""
    if isinstance(linear, LoRALinear):
        return linear.base.weight + linear.delta_weight().to(linear.base.weight.dtype)
    return linear.weight


@dataclass
class _LayerWeights:
    """One block's weights for `x @ w`: matrices stored transposed, (in, out), contiguous."""

    ln1: torch.Tensor
    wqkv: torch.Tensor  # (C, n_head*hd + 2*n_kv*hd): q columns, then k, then v
    wo: torch.Tensor  # (n_head*hd, C)
    ln2: torch.Tensor
    wgu: torch.Tensor  # (C, 2*intermediate): gate columns, then up
    wd: torch.Tensor  # (intermediate, C)


def _t(w: torch.Tensor, split: int = 1) -> torch.Tensor:
    """(out, in) -> (in, out) contiguous; with `split` > 1 dividing out, (split, in, out / split)."""
    wt = w.detach().t()
    if split > 1 and wt.size(1) % split == 0:
        return wt.reshape(wt.size(0), split, -1).permute(1, 0, 2).contiguous()
    return wt.contiguous()


def _mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (B, in) times a weight from `_t`: one slice of output columns per thread when split."""
    if w.dim() == 2:
        return x @ w
    out = torch.bmm(x.unsqueeze(0).expand(w.size(0), -1, -1), w)  # (split, B, out / split)
    return out.transpose(0, 1).reshape(x.size(0), -1)


class DecodeStep:
    """`step(idx (B, 1), cache) -> logits (B, V)` for a plain GPT; `supports(model)` says when."""

    def __init__(self, model: GPT):
        if not self.supports(model):
            raise TypeError("DecodeStep needs a plain GPT (LoRA adapters at most; no other wrapped layers, no sharded weights)")
        self.model = model
        cfg = model.config
        self.n_head, self.n_kv, self.hd, self.eps = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.norm_eps
        self._params = [p for _, p in model.named_parameters()]
        self._key: tuple | None = None
        self._layers: list[_LayerWeights] = []
        self._head = torch.empty(0)
        self._sin_signed = torch.empty(0)

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Only an exact GPT built of its own plain modules (LoRA adapters allowed, no other
        wrappers) over ordinary tensors (not sharded DTensors): anything else takes the generic path."""
        if type(model) is not GPT:
            return False
        if any(type(m) not in _PLAIN_MODULES for m in model.modules()):
            return False
        return all(type(p.data) is torch.Tensor for p in model.parameters())

    def applies(self) -> bool:
        """False while dropout is live (a model in train mode with p > 0): this step never drops."""
        if not self.model.training:
            return True
        return not any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.model.modules())

    def sync(self) -> None:
        """Call before a generation: a model being trained is re-read at the next step.

        Version counters catch `p.add_()` and `load_state_dict`, but not every optimizer: CPU
        fused AdamW writes the weights without bumping them (torch 2.13), and a stale copy would
        decode from the old policy while prefill used the new one. So a model with trainable
        parameters is rebuilt once per generation (milliseconds), a frozen one only when its
        counters move.
        """
        if any(p.requires_grad for p in self._params):
            self._key = None

    def _weights(self) -> list[_LayerWeights]:
        """The fused weights, rebuilt when any parameter was changed in place or replaced, or the
        autocast dtype changed: under bf16 autocast the copies are bf16, so each step reads half
        the bytes and autocast never re-casts a whole matrix per token."""
        device = self.model.lm_head.weight.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (dtype, *((p._version, p.data_ptr()) for p in self._params))
        if key != self._key:
            split = torch.get_num_threads() if device == "cpu" else 1
            cast = (lambda w: w.to(dtype)) if dtype is not None else (lambda w: w)
            with torch.no_grad():
                self._layers = [
                    _LayerWeights(
                        ln1=blk.input_layernorm.weight,
                        wqkv=cast(_t(torch.cat((_weight(blk.self_attn.q_proj), _weight(blk.self_attn.k_proj),
                                                _weight(blk.self_attn.v_proj))), split)),
                        wo=cast(_t(_weight(blk.self_attn.o_proj), split)),
                        ln2=blk.post_attention_layernorm.weight,
                        wgu=cast(_t(torch.cat((_weight(blk.mlp.gate_proj), _weight(blk.mlp.up_proj))), split)),
                        wd=cast(_t(_weight(blk.mlp.down_proj), split)),
                    )
                    for blk in self.model.layers
                ]
                self._head = cast(_t(self.model.lm_head.weight, split))
                # Rebuilt with the weights, so it follows the model to another device too.
                sin, half = self.model.rope_sin, self.hd // 2
                self._sin_signed = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
            self._key = key
        return self._layers

    def step(self, idx: torch.Tensor, cache: KVCacheLike) -> torch.Tensor:
        """idx (B, 1): one new token per selected cache row -> next-token logits (B, V)."""
        m = self.model
        B = idx.size(0)
        H, KV, hd = self.n_head, self.n_kv, self.hd
        C = m.config.n_embd
        layers = self._weights()
        pos = cache.positions(1)  # (B, 1)
        # (B, 1, 1, hd): broadcasts over the heads axis of (B, T=1, heads, hd)
        cos = m.rope_cos[pos].unsqueeze(2)
        sin = self._sin_signed[pos].unsqueeze(2)
        x = F.embedding(idx, m.embed_tokens.weight)  # (B, 1, C)
        for i, w in enumerate(layers):
            h = F.rms_norm(x, (C,), w.ln1, self.eps)
            qkv = _mm(h.view(B, C), w.wqkv).view(B, 1, H + 2 * KV, hd)
            qk = qkv[:, :, : H + KV]
            qk = (qk * cos + qk.roll(hd // 2, dims=-1) * sin).to(qkv.dtype)
            q = qk[:, :, :H].transpose(1, 2)  # (B, H, 1, hd)
            k = qk[:, :, H:].transpose(1, 2)  # (B, KV, 1, hd)
            v = qkv[:, :, H + KV :].transpose(1, 2)
            k, v, mask = cache.update(i, k, v)
            y = attend(q, k, v, mask)
            x = x + _mm(y.transpose(1, 2).reshape(B, H * hd), w.wo).view(B, 1, C)
            gate, up = _mm(F.rms_norm(x, (C,), w.ln2, self.eps).view(B, C), w.wgu).chunk(2, dim=-1)
            x = x + _mm(F.silu(gate) * up, w.wd).view(B, 1, C)
        cache.advance(1)
        h = F.rms_norm(x[:, -1], (C,), m.norm.weight, self.eps)
        return _mm(h, self._head)
