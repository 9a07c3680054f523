"""`gptlab rank judge`: candidates ranked by a judge model's yes/no verdict (see
`gptlab.align.rankers.judge_scores`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from gptlab.align.candidates import load_candidates, rankings_from_scores
from gptlab.align.options import RankOutput
from gptlab.align.rankers import judge_scores
from gptlab.commandline import parse
from gptlab.common import autocast_context, run_dir
from gptlab.data.preferences import save_rankings
from gptlab.infer.loading import load_for_inference, precast_for_autocast
from gptlab.options import FromPath, InferenceArgs


@dataclass
class JudgeRankConfig(RankOutput, InferenceArgs):
    """Rank candidates by a judge model's yes/no verdict; writes runs/<run>/rankings/judge.jsonl."""

    from_: FromPath = None  # judge model folder (default: runs/<run>/sft)
    candidates: Path | None = None  # candidates file (default: runs/<run>/rankings/candidates.jsonl)


def run(cfg: JudgeRankConfig) -> int:
    cands = load_candidates(cfg.candidates or run_dir(cfg.run, "rankings") / "candidates.jsonl")
    model, tok = load_for_inference(cfg.from_ or run_dir(cfg.run, "sft"), device=cfg.device)
    dtype = cfg.autocast_dtype(model)  # --dtype auto or bf16: the judge reads in bf16 where the chip has it
    model = precast_for_autocast(model, dtype)
    device = next(model.parameters()).device
    rankings = []
    for c in tqdm(cands, desc="judging", unit="prompt"):
        with autocast_context(device, dtype):
            scores = judge_scores(model, tok, c.prompt, c.responses)
        # meta names the folder as given ("None" for the default), as rankings files always have
        rankings += rankings_from_scores(c, scores, {"source": "judge", "judge": str(cfg.from_)})
    out = cfg.output("judge.jsonl")
    save_rankings(out, rankings)
    print(f"{len(rankings)} rankings -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(JudgeRankConfig, argv, "gptlab rank judge"))
