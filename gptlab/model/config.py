"""Model configuration: one dial (depth) derives width, heads and MLP size; any field can be overridden.

The field names mirror Llama's so export to `LlamaForCausalLM` is a rename, not a translation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# Named sizes by depth. `tiny` trains in minutes on a 2-core CPU; `d12` is GPT-2-small class
# (~124M parameters with a 32k vocabulary); d20/d26 are for GPUs.
PRESET_DEPTHS: dict[str, int] = {"nano": 2, "tiny": 4, "small": 6, "d12": 12, "d20": 20, "d26": 26}


@dataclass
class ModelConfig:
    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_kv_head: int = 4  # < n_head gives grouped-query attention
    intermediate_size: int = 704  # SwiGLU hidden width
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    dropout: float = 0.0  # residual dropout, training only (1 MB corpora overfit without it)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("head dimension must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def with_overrides(self, **overrides: Any) -> ModelConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _round_up(x: float, multiple: int) -> int:
    return int(multiple * -(-x // multiple))


def config_from_depth(
    depth: int,
    vocab_size: int,
    max_seq_len: int,
    aspect_ratio: int = 64,
    head_dim: int = 64,
    kv_group: int = 1,
) -> ModelConfig:
    """depth -> width = depth * aspect_ratio, heads of `head_dim`, SwiGLU hidden ~ 8/3 width.

    config_from_depth(12, 32768, 1024) -> 768 wide, 12 heads, 2048 MLP: GPT-2-small class.
    """
    n_embd = depth * aspect_ratio
    n_head = max(1, n_embd // head_dim)
    n_kv_head = max(1, n_head // kv_group)
    while n_head % n_kv_head:
        n_kv_head -= 1
    return ModelConfig(
        vocab_size=vocab_size,
        n_layer=depth,
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=n_kv_head,
        intermediate_size=_round_up(8 * n_embd / 3, 32),
        max_seq_len=max_seq_len,
    )


def preset(name: str, vocab_size: int, max_seq_len: int) -> ModelConfig:
    if name not in PRESET_DEPTHS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESET_DEPTHS)}")
    return config_from_depth(PRESET_DEPTHS[name], vocab_size, max_seq_len)
