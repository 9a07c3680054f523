"""The counts of `gptlab data stream`, per chunk and summed: they add up like prepare's report.

Per source: `docs_in == docs_kept + sum(dropped) + exact_duplicates + near_duplicates` and
`docs_kept == train_docs + val_docs`. A chunk's counts go into its log record, so a resumed run
sums the records of the committed chunks and reports what an uninterrupted run reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gptlab.data.clean import Filters

if TYPE_CHECKING:
    from gptlab.data.stream_work import ChunkResult

NUMBERS = ("docs_in", "chars_in", "bytes_in", "exact_duplicates", "near_duplicates", "docs_kept",
           "chars_kept", "train_docs", "val_docs", "train_tokens", "val_tokens")  # fmt: skip


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(NUMBERS, 0), "dropped": dict.fromkeys(Filters.NAMES, 0), "skipped": {}}


def chunk_counts(
    sources: list[str], skipped: dict[str, dict[str, int]], result: ChunkResult,
    verdicts: list[str | None],
) -> dict:
    """{source: counts} for the sources met in one chunk (document i came from `sources[i]`);
    `verdicts[i]` is a filter's name, 'exact_duplicates', 'near_duplicates' or None (kept);
    `skipped`: bad records met while reading the chunk, per source."""
    out: dict[str, dict] = {}
    for i, (source, verdict) in enumerate(zip(sources, verdicts)):
        s = out.setdefault(source, _empty())
        s["docs_in"] += 1
        s["chars_in"] += int(result.chars[i])
        s["bytes_in"] += int(result.nbytes[i])
        if verdict in s["dropped"]:
            s["dropped"][verdict] += 1
        elif verdict is not None:
            s[verdict] += 1
        else:
            split = "val" if result.to_val[i] else "train"
            s["docs_kept"] += 1
            s["chars_kept"] += int(result.chars[i])
            s[f"{split}_docs"] += 1
            s[f"{split}_tokens"] += int(result.offsets[i + 1] - result.offsets[i])
    for source, counts in skipped.items():
        out.setdefault(source, _empty())["skipped"] = dict(counts)
    return out


class Stats:
    """Counts per source, in the sources' order, summed over chunk records."""

    def __init__(self, names: list[str]):
        self.by_source = {name: _empty() for name in names}

    def add(self, counts: dict[str, dict]) -> None:
        for source, c in counts.items():
            s = self.by_source[source]
            for k in NUMBERS:
                s[k] += c[k]
            for k, v in c["dropped"].items():
                s["dropped"][k] += v
            for k, v in c["skipped"].items():
                s["skipped"][k] = s["skipped"].get(k, 0) + v

    def per_source(self) -> list[dict]:
        return [{"source": name, **s, "skipped": dict(sorted(s["skipped"].items()))}
                for name, s in self.by_source.items()]  # fmt: skip

    def overall(self) -> dict:
        total = Stats(["total"])
        for s in self.by_source.values():
            total.add({"total": s})
        return total.per_source()[0]
