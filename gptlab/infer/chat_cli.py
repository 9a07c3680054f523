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

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gptlab.errors import InputError

if TYPE_CHECKING:
    from gptlab.infer.chat_session import ChatSession

HELP = """commands:
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt (empty TEXT removes it) and start over
  /help          this list
  /quit          leave (or Ctrl-D); Ctrl-C stops the current answer"""


from gptlab.infer.cli_args import add_sampling_args, add_source_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab chat",
        description="Chat with a model: interactive, or one answer with -p. Tools (calculator) on by default.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=HELP,
    )
    add_source_args(p, "sft")
    p.add_argument(
        "-p",
        "--prompt",
        metavar="TEXT",
        default=None,
        help="answer this one message, print only the answer and exit (default: interactive)",
    )
    p.add_argument("--system", metavar="TEXT", default=None, help="system prompt (default: none)")
    add_sampling_args(p, top_p=0.95)
    p.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=int,
        default=256,
        help="most tokens per answer (default: 256)",
    )
    p.add_argument(
        "--seed",
        metavar="SEED",
        type=int,
        default=None,
        help="seed for reproducible answers; answer i of a session uses seed+i (default: random)",
    )
    p.add_argument(
        "--no-tools",
        action="store_true",
        help="do not run tool calls the model writes (default: the calculator runs)",
    )
    p.add_argument(
        "--python",
        action="store_true",
        help="also run python tool calls in the sandbox (default: off)",
    )
    p.add_argument(
        "--rag",
        metavar="INDEX_DIR",
        default=None,
        help="answer from documents: retrieve passages from this index (gptlab rag index) "
        "for each question and print the numbered sources after the answer",
    )
    p.add_argument(
        "-k",
        dest="k",
        metavar="K",
        type=int,
        default=4,
        help="passages retrieved per question with --rag (default: 4)",
    )
    p.add_argument(
        "--few-shot",
        metavar="FILE",
        default=None,
        help='JSONL of solved examples ({"user": .., "assistant": ..} per line) put ahead of the chat',
    )
    p.add_argument(
        "--step-by-step",
        action="store_true",
        help='append "Let\'s think step by step." to each question (zero-shot chain of thought)',
    )
    p.add_argument(
        "--self-consistency",
        metavar="N",
        type=int,
        default=None,
        help="with -p: sample N answers in one batch and print the majority final answer",
    )
    p.add_argument(
        "--extract",
        choices=("number", "text"),
        default="number",
        help="what --self-consistency votes on: the last number, or the whole reply (default: number)",
    )
    p.add_argument(
        "--device",
        metavar="NAME",
        default="auto",
        help="cpu, cuda, cuda:1, mps or auto (default: auto)",
    )
    return p


def _check(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 1:
        raise InputError(None, "--max-new-tokens must be >= 1")
    if args.temperature < 0 or args.top_k < 1 or not 0 < args.top_p <= 1:
        raise InputError(None, "--temperature must be >= 0, --top-k >= 1 and --top-p in (0, 1]")
    if args.self_consistency is not None:
        if args.prompt is None:
            raise InputError(None, "--self-consistency needs -p QUESTION")
        if args.self_consistency < 1:
            raise InputError(None, "--self-consistency must be >= 1")
        if args.rag:
            raise InputError(None, "--self-consistency and --rag do not combine (yet)")
    if args.python and args.no_tools:
        raise InputError(None, "--python needs tools: drop --no-tools")
    if args.k < 1:
        raise InputError(None, "-k must be >= 1")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check(args)
    from gptlab.common import run_dir
    from gptlab.infer.chat_session import ChatSession
    from gptlab.infer.loading import load_for_inference, make_engine
    from gptlab.infer.prompting import read_examples, system_and_examples

    src = Path(args.src) if args.src else run_dir(args.run, "sft")
    few_shot = system_and_examples(read_examples(args.few_shot)) if args.few_shot else []
    retriever = None
    if args.rag:
        from gptlab.rag.retrieve import Retriever

        retriever = Retriever.load(args.rag)
    model, tok = load_for_inference(src, args.device, args.tokenizer)
    batch = args.self_consistency or 1
    engine = make_engine(
        model, tok, tools=not args.no_tools, python=args.python, max_batch=min(batch, 16)
    )
    top_p = None if args.top_p >= 1 else args.top_p

    if args.self_consistency:
        return _self_consistency(args, engine, tok, few_shot, top_p)

    session = ChatSession(
        engine,
        tok,
        system=args.system,
        few_shot=few_shot,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        on_note=lambda s: print(s, file=sys.stderr, flush=True),
    )
    if args.prompt is not None:
        _answer(session, args.prompt, retriever, args)
        return 0
    return _interactive(session, retriever, args)


def _self_consistency(args, engine, tok, few_shot: list[dict], top_p: float | None) -> int:
    from gptlab.infer.prompting import EXTRACTORS, self_consistency, step_by_step

    head = [{"role": "system", "content": args.system}] if args.system else []
    messages = head + few_shot + [{"role": "user", "content": args.prompt}]
    if args.step_by_step:
        messages = step_by_step(messages)
    answer, votes = self_consistency(
        engine,
        tok,
        messages,
        args.self_consistency,
        EXTRACTORS[args.extract],
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    tally = ", ".join(f"{a!r}: {c}" for a, c in votes.most_common()) or "none"
    print(f"[votes over {args.self_consistency} samples: {tally}]", file=sys.stderr)
    print(answer if answer is not None else "")
    return 0


def _answer(session: ChatSession, question: str, retriever, args: argparse.Namespace) -> None:
    """Stream one answer to stdout (then the sources, with --rag); Ctrl-C propagates to the caller."""
    from gptlab.infer.prompting import STEP_BY_STEP

    text = f"{question}\n\n{STEP_BY_STEP}" if args.step_by_step else question
    frame, passages = None, []
    if retriever is not None:
        from gptlab.rag.retrieve import build_rag_messages

        passages = retriever.search(question, args.k)

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
    from gptlab.rag.retrieve import citations

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
    args: argparse.Namespace,
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
            _answer(session, line, retriever, args)
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)
        except InputError as e:  # e.g. a message longer than the context: say so, keep chatting
            print(f"error: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
