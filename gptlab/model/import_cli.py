"""`gptlab import PATH [--out DIR]`: a Hugging Face Llama folder or a Llama GGUF file -> a stage folder.

    gptlab import ~/models/SmolLM2-135M-Instruct            # HF folder -> runs/smollm2-135m-instruct/base
    gptlab import model.Q4_1.gguf --out runs/smol/base      # GGUF, dequantized to fp32

The result is an ordinary run, so every stage takes it with `--from runs/smol/base`:

    runs/smol/base/       config.json (ModelConfig), model.safetensors (gptlab names, fp32),
                          import.json (source, sha256, architecture, what was mapped), run.yaml
    runs/smol/tokenizer/  tokenizer.json, tokenizer_config.json (chat_template, bos/eos),
                          special_tokens_map.json: the model's own tokenizer (no tokenizer.tiktoken),
                          plus gptlab's tool, reward and pad tokens (`--keep-vocab` to skip)

Both folders are built beside their final names and renamed into place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro
from safetensors.torch import save_file

from gptlab.commandline import parse, write_resolved
from gptlab.common import run_dir
from gptlab.errors import InputError
from gptlab.fileio import atomic_folder, atomic_write_json
from gptlab.model.added_tokens import add_gptlab_tokens
from gptlab.model.gguf_import import import_gguf
from gptlab.model.hf_import import WEIGHTS, WEIGHTS_INDEX, Imported, import_hf_folder
from gptlab.wheels import sha256_file

IMPORT_RECORD = "import.json"


@dataclass
class ImportConfig:
    """Import a model gptlab did not train (Llama family: LlamaForCausalLM folders, llama GGUF files)
    as a stage folder plus the model's own tokenizer beside it."""

    path: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="PATH")]  # a Hugging Face model folder or a .gguf file
    out: Path | None = None  # stage folder to write (None: runs/<run>/base); the tokenizer goes to its sibling tokenizer/
    run: str | None = None  # run name for the default --out (None: PATH's name, lower-cased)
    force: bool = False  # replace --out and its tokenizer folder if they already hold files
    keep_vocab: bool = False  # keep the vocabulary as is: no gptlab tool, reward and pad tokens appended (then no tool calls, reward model or RL on it)


def read_model(path: Path) -> Imported:
    """Either importer, chosen by what `path` is."""
    if path.is_dir():
        return import_hf_folder(path)
    if path.is_file():
        return import_gguf(path)
    raise InputError(path, "not found: give a Hugging Face model folder or a .gguf file")


def default_run(path: Path) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'smollm2-135m-instruct-q4_1'."""
    stem = path.name.removesuffix(".gguf") if path.is_file() else path.resolve().name
    return re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-") or "imported"


def source_record(path: Path) -> dict[str, Any]:
    """Where the model came from: the file and its sha256 (each weights file of a folder)."""
    if path.is_file():
        return {"source": str(path.resolve()), "sha256": sha256_file(path)}
    files = [path / WEIGHTS] if (path / WEIGHTS).exists() else []
    if not files and (path / WEIGHTS_INDEX).exists():
        files = sorted(set(path.glob("*.safetensors")))
    return {"source": str(path.resolve()), "sha256": {f.name: sha256_file(f) for f in files}}


def _refuse_overwrite(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(folder, "already exists and is not empty; pass --force to replace it")


def write_imported(imp: Imported, out: Path, record: dict[str, Any], cfg: ImportConfig | None = None) -> Path:
    """The stage folder `out` and its sibling `tokenizer/`; returns the tokenizer folder."""
    tok_dir = out.parent / "tokenizer"
    weights = {k: v.contiguous() for k, v in imp.state.items()}
    if imp.config.tie_embeddings:
        weights.pop("lm_head.weight", None)  # stored once, as gptlab's own checkpoints do
    with atomic_folder(tok_dir) as tmp:
        for name, text in imp.tokenizer.items():
            (tmp / name).write_text(text, encoding="utf-8")
    with atomic_folder(out) as tmp:
        atomic_write_json(tmp / "config.json", imp.config.to_dict())
        save_file(weights, str(tmp / WEIGHTS), metadata={"format": "pt"})
        mapped = {"tensors": len(weights), "tied_embeddings": imp.config.tie_embeddings}
        atomic_write_json(tmp / IMPORT_RECORD, {**record, **imp.provenance, "mapped": mapped})
        if cfg is not None:
            write_resolved(cfg, tmp, "import")
    return tok_dir


def import_model(
    path: Path, out: Path, force: bool = False, cfg: ImportConfig | None = None, gptlab_tokens: bool = True
) -> Imported:
    """Read `path`, then write `out` + `out/../tokenizer` (refusing to overwrite without `force`);
    with `gptlab_tokens`, the vocabulary gains gptlab's tool/reward/pad tokens (added_tokens.py)."""
    if not force:
        _refuse_overwrite(out)
        _refuse_overwrite(out.parent / "tokenizer")
    imp = read_model(path)
    if gptlab_tokens:
        imp.provenance["added_tokens"] = add_gptlab_tokens(imp)
    write_imported(imp, out, source_record(path), cfg)
    return imp


def run(cfg: ImportConfig) -> int:
    out = cfg.out if cfg.out is not None else run_dir(cfg.run or default_run(cfg.path), "base")
    imp = import_model(cfg.path, out, cfg.force, cfg, not cfg.keep_vocab)
    c = imp.config
    n_params = sum(v.numel() for k, v in imp.state.items() if not (c.tie_embeddings and k == "lm_head.weight"))
    print(
        f"imported {cfg.path} ({imp.provenance.get('format')}, {n_params / 1e6:.1f}M parameters: "
        f"{c.n_layer} layers, {c.n_embd} wide, {c.n_head} heads, {c.n_kv_head} kv heads, vocab {c.vocab_size})"
    )
    added = imp.provenance.get("added_tokens") or {}
    if added:
        print(f"added {len(added)} special tokens for tools and RL: {' '.join(added)} (ids {min(added.values())}-{max(added.values())})")
    print(f"wrote {out} and {out.parent / 'tokenizer'}")
    template = "chat_template" in json.loads(imp.tokenizer.get("tokenizer_config.json", "{}"))
    print(f"next: gptlab chat --from {out}" if template else f"next: gptlab sample --from {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ImportConfig, argv, "gptlab import"))


if __name__ == "__main__":
    raise SystemExit(main())
