"""Metric trackers behind one interface, so the loop never branches on `if wandb:`.

`Tracker.log(step, metrics)` and `Tracker.close()` are the whole interface. `NullTracker` does
nothing (non-zero ranks get it), `JsonlTracker` appends one JSON object per call to
`metrics.jsonl` (always on for rank 0: it is the run's record and what `plots.py` reads), and
TensorBoard / Weights & Biases are imported only when asked for.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

from gptlab.errors import InputError
from gptlab.fileio import atomic_write_text

TRACKERS = ("none", "tensorboard", "wandb")


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NullTracker:
    """The null object: accepts everything, records nothing."""

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _json_safe(v: Any) -> Any:
    # NaN/inf are not JSON; write them as null rather than breaking every reader.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlTracker:
    """One line per log call: {"step": 42, "loss": 2.31, ...}, flushed so a kill loses little."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f: Any = None  # opened on the first record, after a resume has truncated the file

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across calls)
        record = {"step": step, **{k: _json_safe(v) for k, v in metrics.items()}}
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class TensorBoardTracker:
    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is an optional extra
            raise InputError(
                None, f"--tracker tensorboard needs `pip install tensorboard` ({e})"
            ) from None
        self._w = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self._w.add_scalar(k, v, step)

    def close(self) -> None:
        self._w.close()


class WandbTracker:
    def __init__(self, project: str, name: str | None, config: dict[str, Any]):
        try:
            import wandb  # an optional extra: imported only when asked for
        except ImportError:
            raise InputError(None, "--tracker wandb needs `pip install wandb`") from None
        self._run = wandb.init(project=project, name=name, config=config)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()


class MultiTracker:
    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log(step, metrics)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def truncate_metrics(path: str | Path, step: int) -> int:
    """Drop records with step > `step` (written after the checkpoint a resume starts from).

    Also drops a torn last line left by a kill mid-write. Returns the number of lines kept.
    Rewritten atomically, so a kill here leaves the old file.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("step", 0) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return len(kept)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All parseable records of a metrics.jsonl (a torn last line is skipped)."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def build_tracker(
    kind: str,
    out_dir: str | Path | None,
    is_main: bool = True,
    run_name: str | None = None,
    config: dict[str, Any] | None = None,
) -> Tracker:
    """metrics.jsonl in `out_dir` (rank 0) plus the optional `kind`; NullTracker elsewhere."""
    if kind not in TRACKERS:
        raise InputError(None, f"unknown tracker {kind!r}; choose from {', '.join(TRACKERS)}")
    if not is_main:
        return NullTracker()
    trackers: list[Tracker] = []
    if out_dir is not None:
        trackers.append(JsonlTracker(Path(out_dir) / "metrics.jsonl"))
    if kind == "tensorboard":
        trackers.append(TensorBoardTracker(Path(out_dir or ".") / "tensorboard"))
    elif kind == "wandb":
        trackers.append(WandbTracker("gptlab", run_name, config or {}))
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else MultiTracker(trackers)


# ---------------------------------------------------------------- samples.md: the text side of the record

SAMPLES_HEADER = (
    "# Samples\n\nGenerations from fixed prompts as training goes (step 0 = the untrained model).\n"
)


def append_samples(path: str | Path, step: int, samples: list[tuple[str, str]]) -> None:
    """Add a `## step N` section of (prompt, completion) pairs; rewritten atomically (small file)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else SAMPLES_HEADER
    parts = [f"\n## step {step:05d}\n"]
    for prompt, completion in samples:
        # Four backticks: a completion may itself contain a ``` fence.
        parts.append(f"\nprompt: `{prompt}`\n\n````text\n{completion}\n````\n")
    atomic_write_text(path, text + "".join(parts))


def truncate_samples(path: str | Path, step: int) -> None:
    """Drop `## step N` sections with N > step (written after the checkpoint a resume starts from)."""
    path = Path(path)
    if not path.exists():
        return
    out, keep = [], True
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("## step "):
            try:
                keep = int(line.split()[2]) <= step
            except (IndexError, ValueError):
                keep = True
        if keep:
            out.append(line)
    atomic_write_text(path, "".join(out))
