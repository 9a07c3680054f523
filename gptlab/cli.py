"""`gptlab <command>`: a dispatch table from command name to each stage's `main(argv)`.

Modules are imported only when their command runs, so `gptlab --help` and the data commands
start fast and never import torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv), one-line help). Order is the pipeline's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("gptlab.data.cli", "get corpora, prepare (clean, dedup, mix) text, tokenize to shards"),
    "tokenizer": ("gptlab.tokenizer.cli", "train, show and evaluate the byte-level BPE tokenizer"),
    "pretrain": ("gptlab.stages.pretrain", "pretrain a decoder-only transformer on token shards"),
    "sft": ("gptlab.stages.sft", "supervised finetuning on conversations (full or LoRA)"),
    "rank": ("gptlab.align.rank_cli", "make rankings of K answers per prompt: generate, label, rule, ratings, judge"),
    "reward": ("gptlab.stages.reward", "train and evaluate the reward model (Bradley-Terry on ranking pairs)"),
    "sample": ("gptlab.infer.sample_cli", "print a continuation of a prompt from a trained model"),
    "export": ("gptlab.model.export_cli", "write a Hugging Face folder (LlamaForCausalLM)"),
    "rl": ("gptlab.stages.rl", "align the SFT model: PPO with a reward model, DPO on pairs, or GRPO on verifiable tasks"),
    "eval": ("gptlab.eval.cli", "evaluate a stage: bpb, multiple choice, generative (cot, self-consistency), judge A vs B"),
    "report": ("gptlab.eval.report_cli", "write runs/<name>/report.md: per-stage metrics, plots, checks computed from the files"),
    "chat": ("gptlab.infer.chat_cli", "chat with a model: interactive, one answer (-p), tools, RAG, self-consistency"),
    "serve": ("gptlab.serve.cli", "OpenAI-compatible HTTP server and web chat page for a trained model"),
    "rag": ("gptlab.rag.cli", "index documents (BM25) and retrieve passages with citations"),
    "arena": ("gptlab.eval.arena_cli", "rank models from pairwise votes on the Elo scale (Bradley-Terry, bootstrap CIs)"),
}


def _usage() -> str:
    from gptlab import __version__

    width = max(len(c) for c in COMMANDS)
    lines = [
        f"gptlab {__version__}: raw text to a chat assistant, every stage in one package.",
        "",
        "usage: gptlab <command> [options]      (gptlab <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Start with: bash runs/tiny_cpu.sh   (the whole default pipeline on CPU)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from gptlab.errors import InputError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from gptlab import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gptlab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
