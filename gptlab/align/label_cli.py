"""`gptlab rank label`: a person orders the candidates in the terminal (resumable; see
`gptlab.align.labeler`), or, with `--web`, people order them in a browser page
(`gptlab.align.rank_web`): keyboard or drag-and-drop, several raters at once, their agreement.

    gptlab rank label                          # terminal -> runs/<run>/rankings/human.jsonl
    gptlab rank label --web --rater ada        # http://127.0.0.1:8001/ -> runs/<run>/rankings/web.jsonl
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.align.candidates import Candidates, load_candidates
from gptlab.align.labeler import Labeler
from gptlab.align.options import RankOutput
from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.errors import InputError


@dataclass
class LabelConfig(RankOutput):
    """Order the candidates by hand in the terminal (resumable); writes runs/<run>/rankings/human.jsonl.
    With --web, serve a ranking page instead (several raters, each under their own name; resumable);
    writes runs/<run>/rankings/web.jsonl."""

    candidates: Path | None = None  # candidates file (default: runs/<run>/rankings/candidates.jsonl)
    rater: str = "human"  # name recorded in each ranking's meta (--web: the page's default name; each person can type their own)
    web: bool = False  # rank in a browser page (keyboard or drag-and-drop) instead of the terminal
    host: str = "127.0.0.1"  # --web: address to bind; 0.0.0.0 lets other machines' browsers in (no login: trusted networks only)
    port: int = 8001  # --web: TCP port of the page


def run_web(cfg: LabelConfig, cands: list[Candidates]) -> int:
    # fastapi and uvicorn load only for --web, so the terminal labeler stays light.
    import uvicorn

    from gptlab.align.rank_store import RankRequestError, RankStore, check_rater
    from gptlab.align.rank_web import create_rank_app

    try:
        rater = check_rater(cfg.rater)
    except RankRequestError as e:
        raise InputError(None, f"--rater: {e.message}") from None
    store = RankStore(cands, cfg.output("web.jsonl"))
    app = create_rank_app(store, default_rater=rater)
    print(f"ranking {len(cands)} prompts at http://{cfg.host}:{cfg.port}/ -> {store.out} "
          f"({sum(map(len, store.by_rater.values()))} rankings so far; Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0


def run(cfg: LabelConfig) -> int:
    cands = load_candidates(cfg.candidates or run_dir(cfg.run, "rankings") / "candidates.jsonl")
    if cfg.web:
        return run_web(cfg, cands)
    out = cfg.output("human.jsonl")
    progress = out.with_name(out.name + ".progress.json")
    if out.exists() and out.stat().st_size and not progress.exists():
        # the terminal labeler rewrites its file from its progress: it would drop these rankings
        raise InputError(out, "holds rankings the terminal labeler did not write (no "
                         f"{progress.name}); give another --out")
    Labeler(cands, out, rater=cfg.rater).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(LabelConfig, argv, "gptlab rank label"))
