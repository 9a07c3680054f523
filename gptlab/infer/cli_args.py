"""Options shared by the commands that load a model and generate (`gptlab sample`, `gptlab chat`,
`gptlab serve`), declared once so `--from`, `--device`, `--temperature`... mean the same everywhere.

A command's config extends these dataclasses (`ChatConfig(ToolArgs, SamplingArgs)`) and redeclares
a field only to change its default (chat samples with `top_p=0.95`, sample without nucleus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.common import run_dir
from gptlab.errors import InputError
from gptlab.options import DeviceArgs, FromPath, InferenceArgs, RunArgs

if TYPE_CHECKING:
    import torch

    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike


@dataclass
class ModelArgs(RunArgs, DeviceArgs):
    """Which model folder to load, its tokenizer, and where to run it."""

    from_: FromPath = None  # model folder: full weights or a LoRA adapter folder (None: the run's stage named in the description)
    tokenizer: Path | None = None  # tokenizer folder (None: the tokenizer/ folder beside the model folder)

    def model_dir(self, stage: str) -> Path:
        """--from, else runs/<run>/<stage>."""
        return Path(self.from_) if self.from_ is not None else run_dir(self.run, stage)


@dataclass
class SamplingArgs(ModelArgs):
    """How to sample (see gptlab.infer.sampling.sample_next)."""

    max_new_tokens: int = 256  # most new tokens per answer or sample
    temperature: float = 0.8  # softmax temperature; 0 is greedy
    top_k: int | None = 50  # sample among the k most likely tokens only; a k >= the vocabulary (or None) turns it off
    top_p: float | None = None  # nucleus sampling: the most likely tokens up to this probability mass; 1 or None turns it off
    seed: int | None = None  # seed for reproducible output; output i uses seed+i (None: random)

    def check_sampling(self, min_new_tokens: int = 1) -> None:
        """InputError on a budget or sampling setting no sampler accepts."""
        if self.max_new_tokens < min_new_tokens:
            raise InputError(None, f"--max-new-tokens must be >= {min_new_tokens}")
        if self.temperature < 0 or (self.top_k is not None and self.top_k < 1):
            raise InputError(None, "--temperature must be >= 0 and --top-k >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(None, "--top-p must be in (0, 1]")


@dataclass
class DecodeArgs(InferenceArgs):
    """How the engine runs, for the commands where one reply's latency is the point: --dtype for
    every forward pass (bf16 matrices are stored once, `precast_for_autocast`), --int8-decode for
    the one-token steps."""

    int8_decode: bool = False  # decode from int8 copies of the weights (per row, weight-only; prompts run in --dtype's precision, so with --dtype auto they run in bf16 on bf16-capable CPUs while the steps keep fp32 activations): a quarter of fp32's bytes per token, faster at batch 1 on CPU where reading the weights is the cost (a C kernel built on first use with the system's compiler, else torch's slower one); replies may differ slightly from fp32's

    def make_engine(self, model: torch.nn.Module, tok: TokenizerLike, **kw: Any) -> Engine:
        """`loading.make_engine` in this precision: a bf16 model's matrices stored once, prompts
        under autocast, int8 one-token steps with --int8-decode; `kw` as make_engine takes them."""
        # imported here: torch loads only when a model runs, so --help stays quick
        from gptlab.infer.loading import make_engine, precast_for_autocast

        dtype = self.autocast_dtype(model)
        return make_engine(precast_for_autocast(model, dtype), tok, autocast_dtype=dtype,
                           int8_decode=self.int8_decode, **kw)


@dataclass
class ToolArgs:
    """Which tools the engine runs when the model writes a tool call."""

    no_tools: bool = False  # do not run tool calls the model writes (the calculator runs unless this is set)
    python: bool = False  # also run python tool calls in the sandbox

    def check_tools(self) -> None:
        if self.python and self.no_tools:
            raise InputError(None, "--python needs tools: drop --no-tools")
