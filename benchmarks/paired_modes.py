"""Paired comparison of `gptlab eval` results scored on the same items: one row per file, each
against the first (the baseline), with the accuracy's interval, the compute spent per item and
the paired gain (bootstrap interval, items fixed / broken, sign test).

    python benchmarks/paired_modes.py gen.json cot.json sc3.json tot_ver.json tot_self.json

Each file holds one task's result with `per_item` ids and 0/1 scores (what `gptlab eval --out`
writes); rows are matched by item id, so files scored on other items are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gptlab.eval.metrics import bootstrap_ci, paired_gain


def read_result(path: Path) -> tuple[str, dict]:
    """The single task/mode result of an `eval --out` file."""
    results = json.loads(path.read_text())["results"]
    if len(results) != 1:
        sys.exit(f"{path}: expected one task/mode result, found {sorted(results)}")
    ((key, res),) = results.items()
    if "per_item" not in res:
        sys.exit(f"{path}: {key} has no per_item scores (a generative task is needed)")
    return key, res


def label(key: str, res: dict) -> str:
    """A short row name: the mode and the settings that make it differ."""
    mode = res.get("mode", key.split("/")[-1])
    if mode == "sc":
        t = res.get("temperature")
        return f"self-consistency, N = {res.get('n_samples', '?')}" + ("" if t is None else f", T {t}")
    if mode == "tot":
        return (f"tree of thoughts, b{res['beam']} d{res['depth']} k{res['branch']}, {res['value']} value, "
                f"T {res['tot_temperature']}")
    return {"gen": "greedy reply", "cot": "CoT (greedy)"}.get(mode, mode)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="eval --out files; the first is the baseline")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    rows, base = [], None
    for path in args.files:
        key, res = read_result(path)
        items = dict(zip(res["per_item"]["id"], res["per_item"]["correct"]))
        if base is None:
            base = items
        elif set(items) != set(base):
            sys.exit(f"{path}: scored other items than {args.files[0]} ({len(items)} vs {len(base)})")
        ids = sorted(base)
        scores = [items[i] for i in ids]
        lo, hi = bootstrap_ci(scores)
        row = {"file": str(path), "row": label(key, res), "n": len(ids), "acc": sum(scores) / len(ids),
               "acc_ci95": [lo, hi], "gen_tokens": res.get("gen_tokens", res.get("reply_tokens")),
               "reply_tokens": res.get("reply_tokens"), "value_tokens": res.get("value_tokens"),
               "tool_use_rate": res.get("tool_use_rate"), "seconds": res.get("seconds")}
        if path != args.files[0]:
            row["paired"] = paired_gain([base[i] for i in ids], scores)
        rows.append(row)
    print("| mode | acc (95% CI) | generated tokens / item | reply tokens | s | gain over the first (95% CI), fixed / broken, p |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        g = r.get("paired")
        gain = "(baseline)" if g is None else (
            f"{g['gain']:+.3f} ({g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f}), {g['fixed']} / {g['broken']}, "
            f"p {g['sign_test_p']:.2g}")
        gen = "-" if r["gen_tokens"] is None else f"{r['gen_tokens']:.0f}"
        if r["value_tokens"]:
            gen += f" + {r['value_tokens']:.0f} judged"
        reply = "-" if r["reply_tokens"] is None else f"{r['reply_tokens']:.0f}"
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"| {r['row']} | {r['acc']:.3f} ({r['acc_ci95'][0]:.3f}-{r['acc_ci95'][1]:.3f}) | {gen} | {reply} | "
              f"{secs} | {gain} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
