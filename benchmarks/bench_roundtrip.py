"""Round trips of the real SmolLM2-135M-Instruct: import -> `gptlab export` -> transformers (and llama.cpp).

    gptlab model get smollm2-135m-instruct --run smollm2
    python benchmarks/bench_roundtrip.py --stage runs/smollm2/base \
        --gguf ~/.cache/gptlab/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf

For each export of the imported stage, written with the public command (`gptlab export --format hf`,
`--format gguf --gguf-type f32|bf16|q8_0`) and loaded back by transformers (AutoModelForCausalLM +
AutoTokenizer on the folder; `from_pretrained(dir, gguf_file=...)` for a GGUF), it measures in fp32
on CPU, on 5 chat prompts: the max abs logit difference against gptlab's own forward and against
transformers' GGUF load of the original file, whether greedy 64-token continuations equal gptlab's
(engine with KV cache), and whether the exported tokenizer gives the same prompt ids. When
`llama_cpp` (llama-cpp-python) imports, each exported GGUF is also run by llama.cpp: its logits of
the prompts and its greedy continuations (argmax each step, no sampler).

Logits are compared on the original vocabulary (`[..., :49152]`), so a stage with extra special
tokens appended compares the same way. transformers runs with its default attention (sdpa); its
eager attention differs from it by ~1.5e-4 (see bench_import.py), the fp32 noise floor here.
Writes benchmarks/results/roundtrip_smollm2.json.
"""

from __future__ import annotations

import argparse  # a benchmark script, not a gptlab command
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_import import (
    END_OF_TURN,
    PROMPTS,
    SAMPLE,
    chat_ids,
    greedy_gptlab,
    greedy_hf,
    load_hf,
    max_gap,
    prompt_logits,
)

from gptlab.model.io import load_model

GGUF_TYPES = ("f32", "bf16", "q8_0")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(
            ["lscpu"], check=False, capture_output=True, text=True
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "load_avg": list(os.getloadavg())}


def export(stage: Path, out: Path, *flags: str) -> float:
    """Run `gptlab export` as a user would; returns its wall time in seconds."""
    t = time.time()
    cmd = [
        sys.executable,
        "-m",
        "gptlab",
        "export",
        "--from",
        str(stage),
        "--out",
        str(out),
        "--force",
        *flags,
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.time() - t


def greedy_agreement(mine: list[list[int]], theirs: list[list[int]]) -> dict:
    """How many continuations are identical, and where the others first differ."""
    first_diff = []
    for a, b in zip(mine, theirs):
        if a != b:
            first_diff.append(
                next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            )
    return {
        "identical": f"{len(mine) - len(first_diff)}/{len(mine)}",
        "first_differing_token": first_diff,
    }


def compare(
    name: str, logits: list[torch.Tensor], greedy: list[list[int]], base: dict, tok_text
) -> dict:
    row = {
        "max_abs_logit_diff_vs_gptlab": max_gap(logits, base["ours_logits"]),
        "max_abs_logit_diff_vs_original_gguf_in_transformers": max_gap(logits, base["ref_logits"]),
        "greedy_vs_gptlab": greedy_agreement(greedy, base["ours_greedy"]),
        "continuations": [tok_text(g) for g in greedy],
    }
    print(
        f"{name:28s} vs gptlab {row['max_abs_logit_diff_vs_gptlab']:.3g} | vs original {row['max_abs_logit_diff_vs_original_gguf_in_transformers']:.3g} "
        f"| greedy identical {row['greedy_vs_gptlab']['identical']} {row['greedy_vs_gptlab']['first_differing_token']}",
        flush=True,
    )
    return row


def tokenizer_check(tok, prompts: list[list[int]], ref_tok) -> dict:
    return {
        "chat_prompt_ids_equal": all(chat_ids(tok, p) == ids for p, ids in zip(PROMPTS, prompts)),
        "sample_ids_equal": tok(SAMPLE)["input_ids"] == ref_tok(SAMPLE)["input_ids"],
    }


def llama_cpp_run(path: Path, prompts: list[list[int]], vocab: int, eos: set[int], n: int):
    """llama.cpp's logits of each prompt (T, vocab) and its greedy continuations (argmax each step)."""
    import numpy as np
    from llama_cpp import Llama  # optional: llama-cpp-python

    llm = Llama(
        model_path=str(path),
        n_ctx=512,
        logits_all=True,
        n_threads=torch.get_num_threads(),
        verbose=False,
    )
    logits, greedy = [], []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        logits.append(torch.from_numpy(np.array(llm.scores[: len(ids), :vocab], dtype=np.float32)))
        out: list[int] = []
        while len(out) < n:
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(tok)
            if tok in eos:
                break
            llm.eval([tok])
        greedy.append(out)
    return logits, greedy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--stage", type=Path, default=Path("runs/smollm2/base"), help="the imported stage folder"
    )
    ap.add_argument(
        "--gguf",
        type=Path,
        default=Path.home()
        / ".cache/gptlab/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
        help="the original GGUF file, loaded by transformers as the reference",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the exports (default: a temporary folder)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/roundtrip_smollm2.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()
    result: dict = {
        "what": __doc__.splitlines()[0],
        "command": "python " + " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "prompts": PROMPTS,
        "max_new_tokens": args.max_new_tokens,
    }
    import transformers  # optional dependency

    result["versions"]["transformers"] = transformers.__version__

    ref, ref_tok = load_hf(args.gguf.parent, args.gguf.name)
    vocab = ref.config.vocab_size
    eos = {ref_tok.convert_tokens_to_ids(END_OF_TURN)}
    prompts = [chat_ids(ref_tok, p) for p in PROMPTS]
    ours = load_model(args.stage).eval()
    base = {
        "ref_logits": prompt_logits(ref, prompts, vocab),
        "ours_logits": prompt_logits(ours, prompts, vocab),
        "ours_greedy": greedy_gptlab(ours, prompts, eos, args.max_new_tokens),
    }
    ref_greedy = greedy_hf(ref, prompts, eos, args.max_new_tokens)
    del ref

    def text(ids: list[int]) -> str:
        return ref_tok.decode(ids, skip_special_tokens=True)

    result["vocab_compared"] = vocab
    result["stage_vocab_size"] = ours.config.vocab_size
    result["import"] = {
        "max_abs_logit_diff_vs_original_gguf_in_transformers": max_gap(
            base["ours_logits"], base["ref_logits"]
        ),
        "greedy_original_gguf_in_transformers_vs_gptlab": greedy_agreement(
            ref_greedy, base["ours_greedy"]
        ),
        "continuations": [text(g) for g in base["ours_greedy"]],
    }
    print(
        f"import: gptlab vs transformers(original GGUF) {result['import']['max_abs_logit_diff_vs_original_gguf_in_transformers']:.3g}, "
        f"greedy identical {result['import']['greedy_original_gguf_in_transformers_vs_gptlab']['identical']}",
        flush=True,
    )
    del ours

    exports: dict = {}
    with tempfile.TemporaryDirectory(prefix="roundtrip_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        hf_dir = work / "smollm2-hf"
        secs = export(args.stage, hf_dir)
        model, tok = load_hf(hf_dir)
        row = compare(
            "hf (float32)",
            prompt_logits(model, prompts, vocab),
            greedy_hf(model, prompts, eos, args.max_new_tokens),
            base,
            text,
        )
        exports["hf_float32"] = {
            "command": f"gptlab export --from {args.stage} --out OUT",
            "export_s": round(secs, 1),
            "vocab_size": model.config.vocab_size,
            **tokenizer_check(tok, prompts, ref_tok),
            **row,
        }
        del model

        gguf_files = {}
        for kind in GGUF_TYPES:
            path = work / f"smollm2-{kind}.gguf"
            secs = export(args.stage, path, "--format", "gguf", "--gguf-type", kind)
            gguf_files[kind] = path
            model, tok = load_hf(path.parent, path.name)
            row = compare(
                f"gguf {kind} (transformers)",
                prompt_logits(model, prompts, vocab),
                greedy_hf(model, prompts, eos, args.max_new_tokens),
                base,
                text,
            )
            exports[f"gguf_{kind}_transformers"] = {
                "command": f"gptlab export --from {args.stage} --out OUT.gguf --format gguf --gguf-type {kind}",
                "export_s": round(secs, 1),
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "vocab_size": model.config.vocab_size,
                **tokenizer_check(tok, prompts, ref_tok),
                **row,
            }
            del model

        try:
            import llama_cpp

            result["versions"]["llama_cpp_python"] = llama_cpp.__version__
            for kind, path in gguf_files.items():
                logits, greedy = llama_cpp_run(path, prompts, vocab, eos, args.max_new_tokens)
                exports[f"gguf_{kind}_llama_cpp"] = compare(
                    f"gguf {kind} (llama.cpp)", logits, greedy, base, text
                )
            llama_note = None
        except ImportError as e:
            llama_note = f"llama-cpp-python not importable ({e}); see the note in the report for why it did not install"
    result["exports"] = exports
    result["llama_cpp"] = llama_note or "ran"
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    result["wall_s"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} in {result['wall_s']}s")


if __name__ == "__main__":
    main()
