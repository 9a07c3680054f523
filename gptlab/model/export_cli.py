"""`gptlab export --from SRC --out DST`: write a stage folder as a Hugging Face LlamaForCausalLM folder.

    gptlab export --from runs/tiny/base --out out/tiny-hf
    python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('out/tiny-hf')"

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
from gptlab.model.hf import export_hf

# The names of gptlab.model.hf.DTYPES, as a Literal so `--help` lists them (a test keeps them equal).
DType = Literal["float32", "bfloat16", "float16"]


@dataclass
class ExportConfig:
    """Write a trained stage folder (model.safetensors + config.json) as a Hugging Face folder that
    transformers loads as LlamaForCausalLM and llama.cpp can convert."""

    from_: Annotated[Path, tyro.conf.arg(name="from")]  # stage folder to export, e.g. runs/tiny/base
    out: Path  # output folder; written to a temp folder beside it, then renamed
    tokenizer: Path | None = None  # tokenizer folder whose tokenizer.json etc. are copied (None: <from>/../tokenizer)
    no_tokenizer: bool = False  # export the weights and config only (no tokenizer files, no bos/eos ids)
    dtype: DType = "float32"  # precision of the written weights (float32 is exact)
    force: bool = False  # replace --out if it exists and is not empty


def run(cfg: ExportConfig) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ExportConfig, argv, "gptlab export"))


if __name__ == "__main__":
    raise SystemExit(main())
