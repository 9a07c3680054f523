"""`gptlab chat`: talk to a chat model in the terminal, or answer one question for a script.

    gptlab chat --from runs/tiny/sft                       # interactive; /help lists the commands
    gptlab chat --from runs/tiny/sft -p "What is 12*7?"    # prints only the answer, then exits
    gptlab chat -p "Who says 'Out, damned spot'?" --rag runs/tiny/rag -k 4   # answer + sources
    gptlab chat -p "What is 17*23+4?" --self-consistency 8 --step-by-step   # majority of 8 samples

Interactive: readline editing and history, the answer streams as it is written, Ctrl-C stops
the current answer (not the program), Ctrl-D or /quit leaves. Notes (dropped turns, votes) go to
stderr, so `-p` output on stdout is the answer alone.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.infer.chat_session import ChatSession
from gptlab.infer.cli_args import DecodeArgs, SamplingArgs, ToolArgs
from gptlab.infer.loading import load_for_inference
from gptlab.infer.prompting import (
    EXTRACTORS,
    STEP_BY_STEP,
    read_examples,
    self_consistency,
    step_by_step,
    system_and_examples,
)
from gptlab.rag.retrieve import Retriever, build_rag_messages, citations

HELP = """commands:
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt (empty TEXT removes it) and start over
  /help          this list
  /quit          leave (or Ctrl-D); Ctrl-C stops the current answer"""


@dataclass
class ChatConfig(DecodeArgs, ToolArgs, SamplingArgs):
    """Chat with a model: interactive, or one answer with -p. Tools (calculator) on by default.
    --from defaults to runs/<run>/sft."""

    prompt: Annotated[str | None, tyro.conf.arg(aliases=("-p",))] = None  # answer this one message, print only the answer and exit (None: interactive)
    system: str | None = None  # system prompt (None: no system prompt)
    top_p: float | None = 0.95  # nucleus sampling: the most likely tokens up to this probability mass; 1 or None turns it off
    rag: Path | None = None  # answer from documents: retrieve passages from this index (gptlab rag index) for each question and print the numbered sources after the answer
    rag_k: Annotated[int, tyro.conf.arg(aliases=("-k",))] = 4  # passages retrieved per question with --rag
    few_shot: Path | None = None  # JSONL of solved examples ({"user": .., "assistant": ..} per line) put ahead of the chat
    step_by_step: bool = False  # append "Let's think step by step." to each question (zero-shot chain of thought)
    self_consistency: int | None = None  # with -p: sample N answers in one batch and print the majority final answer
    extract: Literal["number", "text"] = "number"  # what --self-consistency votes on: the last number, or the whole reply


def check(cfg: ChatConfig) -> None:
    """InputError on options that do not combine, before any model loads."""
    cfg.check_sampling(min_new_tokens=1)
    if cfg.self_consistency is not None:
        if cfg.prompt is None:
            raise InputError(None, "--self-consistency needs -p QUESTION")
        if cfg.self_consistency < 1:
            raise InputError(None, "--self-consistency must be >= 1")
        if cfg.rag:
            raise InputError(None, "--self-consistency and --rag do not combine (yet)")
    cfg.check_tools()
    if cfg.rag_k < 1:
        raise InputError(None, "--rag-k (-k) must be >= 1")


def run(cfg: ChatConfig) -> int:
    check(cfg)
    src = cfg.model_dir("sft")
    few_shot = system_and_examples(read_examples(cfg.few_shot)) if cfg.few_shot else []
    retriever = Retriever.load(cfg.rag) if cfg.rag else None
    model, tok = load_for_inference(src, cfg.device, cfg.tokenizer)
    batch = cfg.self_consistency or 1
    engine = cfg.make_engine(model, tok, tools=not cfg.no_tools, python=cfg.python, max_batch=min(batch, 16))
    top_p = None if cfg.top_p is None or cfg.top_p >= 1 else cfg.top_p

    if cfg.self_consistency:
        return _self_consistency(cfg, engine, tok, few_shot, top_p)

    session = ChatSession(
        engine,
        tok,
        system=cfg.system,
        few_shot=few_shot,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
        on_note=lambda s: print(s, file=sys.stderr, flush=True),
    )
    if cfg.prompt is not None:
        _answer(session, cfg.prompt, retriever, cfg)
        return 0
    return _interactive(session, retriever, cfg)


def main(argv: Sequence[str] | None = None) -> int:
    description = inspect.cleandoc(ChatConfig.__doc__ or "") + "\n\n" + HELP
    return run(parse(ChatConfig, argv, "gptlab chat", description=description))


def _self_consistency(cfg: ChatConfig, engine, tok, few_shot: list[dict], top_p: float | None) -> int:
    head = [{"role": "system", "content": cfg.system}] if cfg.system else []
    messages = head + few_shot + [{"role": "user", "content": cfg.prompt}]
    if cfg.step_by_step:
        messages = step_by_step(messages)
    answer, votes = self_consistency(
        engine,
        tok,
        messages,
        cfg.self_consistency,
        EXTRACTORS[cfg.extract],
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
    )
    tally = ", ".join(f"{a!r}: {c}" for a, c in votes.most_common()) or "none"
    print(f"[votes over {cfg.self_consistency} samples: {tally}]", file=sys.stderr)
    print(answer if answer is not None else "")
    return 0


def _answer(session: ChatSession, question: str, retriever, cfg: ChatConfig) -> None:
    """Stream one answer to stdout (then the sources, with --rag); Ctrl-C propagates to the caller."""
    text = f"{question}\n\n{STEP_BY_STEP}" if cfg.step_by_step else question
    frame, passages = None, []
    if retriever is not None:
        passages = retriever.search(question, cfg.rag_k)

        def frame(history: list[dict], user_text: str) -> list[dict]:
            return build_rag_messages(user_text, passages, history)

    reply = session.send(text, frame)
    try:
        for piece in reply:
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        reply.close()  # a Ctrl-C while printing still frees the engine slot and records the answer
    sys.stdout.write("\n")
    if retriever is not None:
        _print_sources(passages)
    sys.stdout.flush()


def _print_sources(passages: list) -> None:
    if not passages:
        print("sources: none found in the index")
        return
    print("sources:")
    for c in citations(passages):
        page = f":p{c['page']}" if c.get("page") is not None else ""
        print(f"  [{c['n']}] {c['file']}{page}:{c['line']}  {c['snippet']}")


def _read_line(prompt: str) -> str | None:
    """One line of input; None at end of input. readline (when present) gives editing and history."""
    try:
        return input(prompt)
    except EOFError:
        return None


def _interactive(
    session: ChatSession,
    retriever,
    cfg: ChatConfig,
    read: Callable[[str], str | None] = _read_line,
) -> int:
    try:
        import readline  # noqa: F401  (importing it is what turns on line editing for input())
    except ImportError:  # Windows
        pass
    tty = sys.stdin.isatty()
    print("gptlab chat: /help for commands, Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            line = read("you> " if tty else "")
        except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line, like a shell
            print(file=sys.stderr)
            continue
        if line is None:
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, rest = line.partition(" ")
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/reset":
                session.reset()
                print("[conversation cleared]", file=sys.stderr)
            elif cmd == "/system":
                session.set_system(rest.strip())
                session.reset()
                print(
                    f"[system prompt {'set' if rest.strip() else 'removed'}; conversation cleared]",
                    file=sys.stderr,
                )
            elif cmd == "/help":
                print(HELP, file=sys.stderr)
            else:
                print(f"unknown command {cmd}; /help lists them", file=sys.stderr)
            continue
        if tty:
            sys.stdout.write("assistant> ")
        try:
            _answer(session, line, retriever, cfg)
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)
        except InputError as e:  # e.g. a message longer than the context: say so, keep chatting
            print(f"error: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
