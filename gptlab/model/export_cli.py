"""`gptlab export --from SRC --out DST`: write a stage folder as a Hugging Face LlamaForCausalLM
folder (`--format hf`, the default) or as one GGUF file for llama.cpp and ollama (`--format gguf`).

    gptlab export --from runs/tiny/base --out out/tiny-hf
    python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('out/tiny-hf')"
    gptlab export --from runs/tiny/base --out out/tiny.gguf --format gguf --gguf-type q8_0
    llama-cli -m out/tiny.gguf     # or ollama: `FROM ./tiny.gguf` in a Modelfile

The folders are `--from`/`--out` (not positional) so the input model is spelled as in every other
command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.model.gguf_export import export_gguf
from gptlab.model.hf import export_hf

# The names of gptlab.model.hf.DTYPES, as a Literal so `--help` lists them (a test keeps them equal).
DType = Literal["float32", "bfloat16", "float16"]
# The names of gptlab.model.gguf_export.GGUF_TYPES (a test keeps them equal).
GGUFType = Literal["f32", "bf16", "q8_0"]


@dataclass
class ExportConfig:
    """Write a trained stage folder (model.safetensors + config.json) as a Hugging Face folder that
    transformers loads as LlamaForCausalLM, or as a GGUF file that llama.cpp and ollama run."""

    from_: Annotated[Path, tyro.conf.arg(name="from")]  # stage folder to export, e.g. runs/tiny/base
    out: Path  # output folder (gguf: the .gguf file, or a folder for model.gguf); written beside it, then renamed
    format: Literal["hf", "gguf"] = "hf"  # hf: a LlamaForCausalLM folder; gguf: one GGUF file (llama.cpp, ollama)
    tokenizer: Path | None = None  # tokenizer folder to export with the model (None: <from>/../tokenizer)
    no_tokenizer: bool = False  # hf only: export the weights and config only (no tokenizer files, no bos/eos ids)
    dtype: DType = "float32"  # hf only: precision of the written weights (float32 is exact)
    gguf_type: GGUFType | None = None  # gguf only: tensor type of the matrices, norms stay f32 (None: f32, exact)
    force: bool = False  # replace --out if it exists and is not empty


def run(cfg: ExportConfig) -> int:
    if cfg.format == "gguf":
        return _run_gguf(cfg)
    if cfg.gguf_type is not None:
        raise InputError(None, "--gguf-type is for --format gguf; a Hugging Face folder takes --dtype")
    out = export_hf(
        cfg.from_,
        cfg.out,
        tokenizer_dir=cfg.tokenizer,
        dtype=cfg.dtype,
        include_tokenizer=not cfg.no_tokenizer,
        overwrite=cfg.force,
    )
    print(f"wrote {out} (LlamaForCausalLM, {cfg.dtype})")
    return 0


def _run_gguf(cfg: ExportConfig) -> int:
    if cfg.no_tokenizer:
        raise InputError(None, "a GGUF carries its tokenizer: --no-tokenizer is for --format hf")
    if cfg.dtype != "float32":
        raise InputError(None, "--dtype is for --format hf; a GGUF takes --gguf-type f32|bf16|q8_0")
    gguf_type = cfg.gguf_type or "f32"
    out = export_gguf(
        cfg.from_, cfg.out, tokenizer_dir=cfg.tokenizer, gguf_type=gguf_type, overwrite=cfg.force
    )
    print(f"wrote {out} (GGUF llama, {gguf_type})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ExportConfig, argv, "gptlab export"))


if __name__ == "__main__":
    raise SystemExit(main())
