"""Can a model copy? Loss and top-1 accuracy on the second copy of a random token sequence shown twice.

A model with induction heads predicts the repeat almost perfectly; one without does no better
than on the first copy. Used to ask whether the tiny base models could already copy before SFT
(they could not: docs/benchmarks.md, Trust).

    python benchmarks/induction_probe.py runs/tiny/base runs/tiny/sft
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from gptlab.infer.loading import load_for_inference


def probe(folder: str, rows: int = 32, length: int = 40, seed: int = 0) -> tuple[float, float, float]:
    """(first-copy loss, second-copy loss, second-copy top-1 accuracy) in nats / fraction."""
    model, _ = load_for_inference(folder, device="cpu")
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    seq = torch.randint(vocab // 16, vocab - 1, (rows, length), generator=gen)
    x = torch.cat([seq, seq], 1)
    with torch.no_grad():
        logits = model(x[:, :-1]).float()
    nll = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1), reduction="none").view(rows, -1)
    first, second = nll[:, 5 : length - 1].mean().item(), nll[:, length:].mean().item()
    top1 = (logits[:, length:].argmax(-1) == x[:, length + 1 :]).float().mean().item()
    return first, second, top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="stage folders (their tokenizer beside them)")
    for folder in ap.parse_args().folders:
        first, second, top1 = probe(folder)
        print(f"{folder}: first copy {first:.2f} nats, second copy {second:.2f} nats, second-copy top-1 {top1:.3f}")


if __name__ == "__main__":
    main()
