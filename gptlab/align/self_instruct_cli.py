"""`gptlab data self-instruct`: grow SFT conversations from seed tasks with a model (Self-instruct),
optionally evolved into harder ones (Evol-Instruct, `--evolve ROUNDS`).

    gptlab data self-instruct --from runs/smol/base --n 200 --evolve 1 --out si.jsonl
    gptlab sft --from runs/smol/base --data si.jsonl --mixture none --lora-rank 8

The output is `gptlab sft --data` input as it is; the report (`<out stem>.report.json`, and the
table printed at the end) says how many instructions were generated, kept, and rejected for each
reason. The algorithms (`self_instruct`, `self_instruct_evolve`) see the model only through a
batched chat function; this command builds that function on the inference engine, which is why it sits in `align/`
(a command layer above `infer/`) while the algorithms stay in `data/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from gptlab.commandline import parse
from gptlab.common import run_dir, run_metadata
from gptlab.data.self_instruct import (
    DEFAULT_SEEDS,
    ChatFn,
    Reply,
    Report,
    SelfInstructSettings,
    read_seeds,
    self_instruct,
    write_records,
)
from gptlab.data.self_instruct_evolve import evolve
from gptlab.data.self_instruct_filters import REASONS, RougePool
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_text
from gptlab.infer.chat_session import reply_text
from gptlab.infer.engine import Engine
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.options import FromPath, InferenceArgs, RunArgs
from gptlab.tokenizer.protocol import TokenizerLike

# KV-cache room per row: the longest prompt (6 examples, or a rewrite request) plus a reply fits
# with room to spare; SmolLM2's own 8,192 would reserve gigabytes for 32 rows.
CONTEXT = 1024


@dataclass(kw_only=True)
class SelfInstructConfig(SelfInstructSettings, RunArgs, InferenceArgs):
    """Grow instruction/answer conversations from seed tasks with a model (Self-instruct, Wang et al.
    2022): the model writes new instructions after a few sampled ones, then answers them; near
    duplicates (ROUGE-L >= --similarity) and bad generations are dropped, and a report counts each
    reason. --evolve R then rewrites the kept instructions R times into harder (in-depth) or rarer
    (in-breadth) ones (Evol-Instruct, Xu et al. 2023), each record naming its parent, operation and
    round. Writes SFT-ready JSONL (`gptlab sft --data OUT`)."""

    from_: FromPath = None  # model that writes and answers (default: runs/<run>/sft); a chat model
    seeds: Path | None = None  # seed tasks: JSONL/JSON of Alpaca (instruction/output), messages or ShareGPT records (default: 26 embedded tasks)
    batch_size: int = 32  # rows generated at once
    out: Path | None = None  # output JSONL (default: runs/<run>/self_instruct/data.jsonl); the report goes beside it as <stem>.report.json


def engine_chat(engine: Engine, tok: TokenizerLike, progress: bool = True) -> ChatFn:
    """A ChatFn on the engine: prompts rendered with the model's chat template, batched, row j
    sampled with seed + j (so results do not depend on the batch size)."""

    def chat(prompts: Sequence[list[dict]], max_new_tokens: int, temperature: float, seed: int,
             desc: str = "") -> list[Reply]:
        ids = [tok.render_prompt(p) for p in prompts]
        fits = [len(x) + max_new_tokens <= engine.max_len for x in ids]
        run = [x for x, ok in zip(ids, fits) if ok]
        outs: list[list[int]] = [[] for _ in run]
        bar = tqdm(total=len(run), desc=desc, unit="reply", leave=False, disable=not progress or not run)
        done = 0
        for row in engine.generate(run, max_new_tokens, temperature=temperature, seed=seed):
            for j, t in enumerate(row):
                if t is not None:
                    outs[j].append(t)
                    done += t in tok.stop_ids or len(outs[j]) == max_new_tokens
            bar.update(done - bar.n)
        bar.close()
        it = iter(outs)
        replies = []
        for ok in fits:
            if not ok:
                replies.append(Reply("", False, fits=False))
                continue
            out = next(it)
            finished = bool(out) and out[-1] in tok.stop_ids
            replies.append(Reply(reply_text(tok.parse_assistant(out)), finished))
        return replies

    return chat


def check_config(cfg: SelfInstructConfig) -> None:
    for flag, v, lo in (("--n", cfg.n, 1), ("--evolve", cfg.evolve, 0), ("--examples", cfg.examples, 1),
                        ("--max-tries", cfg.max_tries, 1), ("--max-instruction-tokens", cfg.max_instruction_tokens, 1),
                        ("--max-answer-tokens", cfg.max_answer_tokens, 1), ("--batch-size", cfg.batch_size, 1)):
        if v is not None and v < lo:
            raise InputError(None, f"{flag} must be >= {lo}, got {v}")
    if not 0.0 < cfg.similarity <= 1.0:
        raise InputError(None, f"--similarity must be in (0, 1], got {cfg.similarity}")
    if cfg.temperature < 0 or cfg.answer_temperature < 0:
        raise InputError(None, "temperatures must be >= 0")


def report_path(out: Path) -> Path:
    """data.jsonl -> data.report.json"""
    return out.with_name(out.stem + ".report.json")


def run(cfg: SelfInstructConfig) -> int:
    check_config(cfg)
    seeds_path = cfg.seeds or DEFAULT_SEEDS
    seeds = read_seeds(seeds_path)
    stage = cfg.from_ or run_dir(cfg.run, "sft")
    model, tok = load_for_inference(stage, cfg.device)
    dtype = cfg.autocast_dtype(model)
    engine = make_engine(precast_for_autocast(model, dtype), tok, tools=False, max_batch=cfg.batch_size,
                         max_len=CONTEXT, autocast_dtype=dtype)
    chat = engine_chat(engine, tok)
    report, pool = Report(), RougePool()
    for r in seeds:
        pool.add(r.instruction, r.id)
    t0 = time.perf_counter()
    records = self_instruct(chat, seeds, cfg, report, pool, cfg.batch_size)
    t_si = time.perf_counter() - t0
    evolved = evolve(chat, records, cfg, pool, report) if cfg.evolve else []
    seconds = time.perf_counter() - t0
    out = cfg.out or run_dir(cfg.run, "self_instruct") / "data.jsonl"
    write_records(out, records + evolved)
    summary = {
        "model": str(stage), "seeds": str(seeds_path), "n_seeds": len(seeds), "written": len(records) + len(evolved),
        "stages": report.to_dict(), "reasons": REASONS,
        "seconds": {"self_instruct": round(t_si, 1), "evolve": round(seconds - t_si, 1), "total": round(seconds, 1)},
        "dtype": "bf16" if dtype is not None else "fp32", "settings": asdict(cfg) | {"from_": str(stage)},
        "metadata": run_metadata(cfg.device),
    }
    atomic_write_text(report_path(out), json.dumps(summary, indent=2, default=str) + "\n")
    print(report.table())
    print(f"{len(records)} self-instruct + {len(evolved)} evolved conversations -> {out} "
          f"({seconds:.0f}s; report {report_path(out)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(SelfInstructConfig, argv, "gptlab data self-instruct"))
