"""A Llama-compatible decoder-only transformer, pure math: no training, parallelism or I/O here.

RoPE (rotate-half convention, as Hugging Face Llama), RMSNorm, SwiGLU, grouped-query attention
through `scaled_dot_product_attention`, no biases; optional residual dropout for training on
small corpora (off at inference, so it does not change what is exported). Parameter names map one-to-one onto
`LlamaForCausalLM` (see model/hf.py), so an exported model gives the same logits.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from gptlab.model.config import ModelConfig


class KVCacheLike(Protocol):
    """What the model needs from a KV cache (gptlab/infer/kv_cache.py has the real one)."""

    def positions(self, T: int) -> torch.Tensor: ...
    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...
    def advance(self, T: int) -> None: ...


def rotary_tables(cfg: ModelConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (max_seq_len, head_dim), duplicated halves as in HF Llama."""
    hd = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))
    t = torch.arange(cfg.max_seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, hd); cos/sin: (T, hd), or (B, 1, T, hd) for per-row positions. Rotates pairs (i, i + hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of new queries q (B, H, T, hd) to cached keys/values (B, KV, span, hd).

    One query per row on the CPU (a decode step) takes two grouped matmuls and a softmax in fp32:
    there torch's `scaled_dot_product_attention` ran 7-10x slower in bf16 (1.9 ms against 0.22 ms
    for 32 rows x 128 keys on the AMD EPYC VM, docs/benchmarks.md), about 40% of SmolLM2's step.
    Query head h reads key head h // (H / KV), as `enable_gqa` does; mask (B, 1, T, span) or None.
    """
    B, H, T, hd = q.shape
    KV = k.size(1)
    if k.dtype != q.dtype:  # a cache kept in fp32 under bf16 autocast (the engine's int8 decode)
        k, v = k.to(q.dtype), v.to(q.dtype)
    if T != 1 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=KV != H)
    s = (q.reshape(B, KV, H // KV, hd) @ k.transpose(-1, -2)).float() * hd**-0.5  # (B, KV, G, span)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return (s.softmax(-1).to(v.dtype) @ v).reshape(B, H, 1, hd)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCacheLike | None = None, layer: int = 0
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        gqa = self.n_kv_head != self.n_head
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            # The cache stores the new keys/values and returns every key of these rows so far,
            # with a mask saying which ones each new query may see (earlier positions only).
            k, v, mask = cache.update(layer, k, v)
            y = attend(q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)
        # Dropout on each branch's output before it joins the residual stream (GPT-2's "resid
        # dropout"). Identity in eval mode, so exported weights give the same logits.
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCacheLike | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), cos, sin, cache, layer))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rotary_tables(cfg)
        # Not parameters and not saved: rebuilt from the config, moved with .to(device).
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * depth)."""
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)  # RMSNorm gains
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))
            else:
                nn.init.normal_(p, mean=0.0, std=std)

    def hidden_states(self, idx: torch.Tensor, cache: KVCacheLike | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> final normed hidden states (B, T, n_embd).

        Without a cache the rows start at position 0. With one, row b continues its own sequence
        at position `cache.positions(T)[b]`, attending to what the cache holds for it (see
        gptlab/infer/kv_cache.py): the same math, so cached decoding gives full-forward tokens.
        """
        T = idx.size(1)
        if cache is None:
            if T > self.config.max_seq_len:
                raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={self.config.max_seq_len}")
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:
            pos = cache.positions(T)  # (B, T) absolute positions, checked against max_seq_len there
            cos, sin = self.rope_cos[pos].unsqueeze(1), self.rope_sin[pos].unsqueeze(1)
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i)
        if cache is not None:
            cache.advance(T)
        return self.norm(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
        cache: KVCacheLike | None = None,
        targets_only: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, V) when `targets` is None; else the cross-entropy loss.

        Targets equal to -1 are ignored (padding, masked prompt tokens). `reduction='none'`
        returns per-token losses (B, T), which evaluation sums into bits per byte. `cache`
        (inference) continues each row's sequence from what the KV cache holds.
        `targets_only` (mean loss only): the head and the softmax run on the positions that have
        a target and nowhere else; SFT, whose prompts carry no loss, skips their vocabulary-wide
        work (a data-dependent shape, so not for pretraining under torch.compile).
        """
        h = self.hidden_states(idx, cache)
        if targets is not None and targets_only and reduction == "mean":
            keep = targets.reshape(-1) != -1
            logits = self.lm_head(h.reshape(-1, h.size(-1))[keep])
            return F.cross_entropy(logits.float(), targets.reshape(-1)[keep])
        logits = self.lm_head(h)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)),
            targets.reshape(-1),
            ignore_index=-1,
            reduction=reduction,
        )
        return loss.view(targets.shape) if reduction == "none" else loss

    def set_dropout(self, p: float) -> None:
        """Change the residual dropout of a built model (a finetune may want none where its base
        was pretrained with some); config.json records the new value when the model is saved."""
        self.config = replace(self.config, dropout=p)  # validates p
        for block in self.layers:
            block.dropout = nn.Dropout(p) if p else nn.Identity()

    def num_params(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.embed_tokens.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 * (non-embedding params) + attention's 12 * L * d * T."""
        c = self.config
        n = self.num_params(exclude_embeddings=True)
        if c.tie_embeddings:  # the head shares the embedding tensor but still does a matmul
            n += c.vocab_size * c.n_embd
        return 6 * n + 12 * c.n_layer * c.n_embd * c.max_seq_len
