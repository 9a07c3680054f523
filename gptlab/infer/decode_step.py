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
  matrices fit in the cache, gains too (430 -> 545 tokens/s at batch 1 on the same machine);
- each RMSNorm's gain (times sqrt(C)) is folded into the rows of the matrix that reads the
  normed vector, and the attention scale 1/sqrt(hd) into the q columns, so a norm is
  x * rsqrt(sum(x^2) + C*eps): three cheap calls where `F.rms_norm` cost 13-22 us at width 256
  on the Intel VM, and the scale costs no call at all. Only rounding differs from the model's
  own forward (sqrt(C) and 1/sqrt(hd) are exact for the usual widths: 16, 24, 1/8);
- attention is inlined: q (B, KV, G, hd) against the cache's (B, KV, span, hd), no reshapes.

With the KV cache's slice write for the common step (kv_cache.py), the last two cut the tiny
preset's step by 21% and a SmolLM2-shaped one's by 8%
(1.31 -> 1.04 ms and 31.1 -> 28.6 ms on the 2-core Intel/AMX VM, 2026-12-06).

It reads and writes the same `KVCache` as the generic path, so a sequence can be prefilled by
`GPT.hidden_states` and continued here. The fused weights are one more copy of the block
matrices; it is meant for decoding, where latency is the point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptlab.infer import int8_gemv
from gptlab.infer.int8_gemv import PackedInt8, quantize_rows
from gptlab.model.gpt import GPT, MLP, Attention, Block, KVCacheLike
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
class Int8Weight:
    """A matrix as int8 rows (out, in) and one bf16 scale per row: symmetric, weight-only, a quarter
    of fp32's bytes, read by torch's kernels. At batch 1 reading the weights is the whole cost of a
    step, so an opt-in int8 decode streams a quarter of the bytes. On a CPU where the compiled
    kernel builds (int8_gemv.py), `PackedInt8` takes this one's place; here each product casts its
    input row to bf16 (`torch._weight_int8pack_mm` on the CPU was ~10x slower with fp32 rows on
    the machine measured); the activations between the matrices keep the step's own dtype."""

    q: torch.Tensor  # (out, in) int8
    scale: torch.Tensor  # (out,) bf16

    @classmethod
    def of(cls, w: torch.Tensor) -> Int8Weight:
        """Round each row of w (out, in) to its own scale (`int8_gemv.quantize_rows`)."""
        q, scale = quantize_rows(w)
        return cls(q, scale.to(torch.bfloat16))


Weight = torch.Tensor | Int8Weight | PackedInt8


@dataclass
class _LayerWeights:
    """One block's weights for `x @ w`: matrices stored transposed, (in, out), contiguous (or as
    `Int8Weight` / `PackedInt8`); the norm gains are folded into wqkv's and wgu's input rows, 1/sqrt(hd)
    into wqkv's q columns."""

    wqkv: Weight  # (C, n_head*hd + 2*n_kv*hd): q columns, then k, then v
    wo: Weight  # (n_head*hd, C)
    wgu: Weight  # (C, 2*intermediate): gate columns, then up
    wd: Weight  # (intermediate, C)


def _t(w: torch.Tensor, split: int = 1) -> torch.Tensor:
    """(out, in) -> (in, out) contiguous; with `split` > 1 dividing out, (split, in, out / split)."""
    wt = w.detach().t()
    if split > 1 and wt.size(1) % split == 0:
        return wt.reshape(wt.size(0), split, -1).permute(1, 0, 2).contiguous()
    return wt.contiguous()


def _mm(x: torch.Tensor, w: Weight) -> torch.Tensor:
    """x (B, in) times a weight from `_t` (one slice of output columns per thread when split) or an
    `Int8Weight` (x cast to bf16 for the product: free under bf16 autocast, two casts otherwise) or a
    `PackedInt8` (the compiled kernel: fp32 in and out)."""
    if isinstance(w, PackedInt8):
        y = w.matmul(x)
        return y if y.dtype == x.dtype else y.to(x.dtype)
    if isinstance(w, Int8Weight):
        xb = x if x.dtype == torch.bfloat16 else x.to(torch.bfloat16)
        if x.device.type == "cpu":
            y = torch._weight_int8pack_mm(xb, w.q, w.scale)
        else:  # no int8 kernel assumed elsewhere
            y = F.linear(xb, w.q.to(torch.bfloat16)) * w.scale
        return y if y.dtype == x.dtype else y.to(x.dtype)
    if w.dim() == 2:
        return x @ w
    out = torch.matmul(x, w)  # (split, B, out / split)
    return out.view(1, -1) if x.size(0) == 1 else out.transpose(0, 1).reshape(x.size(0), -1)


def _unit_rms(x: torch.Tensor, c_eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps), times 1/sqrt(C): the sqrt(C) lives in the next matrix."""
    return x * (x * x).sum(-1, keepdim=True).add_(c_eps).rsqrt_()


class DecodeStep:
    """`step(idx (B, 1), cache) -> logits (B, V)` for a plain GPT; `supports(model)` says when."""

    def __init__(self, model: GPT, int8: bool = False):
        if not self.supports(model):
            raise TypeError("DecodeStep needs a plain GPT (LoRA adapters at most; no other wrapped layers, no sharded weights)")
        self.model, self.int8 = model, int8
        cfg = model.config
        self.n_head, self.n_kv, self.hd, self.eps = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.norm_eps
        self._params = [p for _, p in model.named_parameters()]
        self._key: tuple | None = None
        self._layers: list[_LayerWeights] = []
        self._head: Weight = torch.empty(0)
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

    def _fuse(self, blk: Block, pack: Callable[[torch.Tensor], Weight]) -> _LayerWeights:
        """One block's copies: q|k|v and gate|up concatenated, gains and the q scale folded in;
        `pack` turns each (out, in) matrix into what `_mm` reads."""
        root_c = self.model.config.n_embd**0.5
        attn, mlp = blk.self_attn, blk.mlp
        qkv = torch.cat((_weight(attn.q_proj) * self.hd**-0.5, _weight(attn.k_proj), _weight(attn.v_proj)))
        gu = torch.cat((_weight(mlp.gate_proj), _weight(mlp.up_proj)))
        return _LayerWeights(
            wqkv=pack(qkv * (blk.input_layernorm.weight * root_c)),
            wo=pack(_weight(attn.o_proj)),
            wgu=pack(gu * (blk.post_attention_layernorm.weight * root_c)),
            wd=pack(_weight(mlp.down_proj)),
        )

    def _weights(self) -> list[_LayerWeights]:
        """The fused weights, rebuilt when any parameter was changed in place or replaced, or the
        autocast dtype changed: under bf16 autocast the copies are bf16, so each step reads half
        the bytes and autocast never re-casts a whole matrix per token."""
        device = self.model.lm_head.weight.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (dtype, *((p._version, p.data_ptr()) for p in self._params))
        if key != self._key:
            split = torch.get_num_threads() if device == "cpu" else 1
            packed_int8 = self.int8 and device == "cpu" and int8_gemv.available()

            def pack(w: torch.Tensor) -> Weight:
                if self.int8:
                    return PackedInt8.of(w) if packed_int8 else Int8Weight.of(w)
                return _t(w, split).to(dtype) if dtype is not None else _t(w, split)

            m = self.model
            with torch.no_grad():
                self._layers = [self._fuse(blk, pack) for blk in m.layers]
                self._head = pack(m.lm_head.weight * (m.norm.weight * m.config.n_embd**0.5))
                # Rebuilt with the weights, so it follows the model to another device too.
                sin, half = m.rope_sin, self.hd // 2
                self._sin_signed = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
            self._key = key
        return self._layers

    def step(self, idx: torch.Tensor, cache: KVCacheLike) -> torch.Tensor:
        """idx (B, 1): one new token per selected cache row -> next-token logits (B, V)."""
        m = self.model
        B = idx.size(0)
        H, KV, hd = self.n_head, self.n_kv, self.hd
        c_eps = m.config.n_embd * self.eps
        layers = self._weights()
        pos = cache.positions(1).view(B)
        # (B, 1, hd): broadcasts over the heads axis of (B, heads, hd)
        cos = m.rope_cos[pos].unsqueeze(1)
        sin = self._sin_signed[pos].unsqueeze(1)
        x = F.embedding(idx.view(B), m.embed_tokens.weight)  # (B, C)
        for i, w in enumerate(layers):
            qkv = _mm(_unit_rms(x, c_eps), w.wqkv).view(B, H + 2 * KV, hd)
            qk = qkv[:, : H + KV]
            qk = torch.addcmul(qk * cos, qk.roll(hd // 2, dims=-1), sin).to(qkv.dtype)
            k, v, mask = cache.update(i, qk[:, H:, None], qkv[:, H + KV :, None])  # (B, KV, span, hd)
            s = (qk[:, :H].view(B, KV, H // KV, hd) @ k.transpose(-1, -2)).float()  # query head h reads KV head h // G
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            y = s.softmax(-1).to(v.dtype) @ v  # (B, KV, G, hd)
            x = x + _mm(y.view(B, H * hd), w.wo)
            gate, up = _mm(_unit_rms(x, c_eps), w.wgu).chunk(2, dim=-1)
            x = x + _mm(F.silu(gate).mul_(up), w.wd)
        cache.advance(1)
        return _mm(_unit_rms(x, c_eps), self._head)
