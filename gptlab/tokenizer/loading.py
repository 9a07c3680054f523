"""`load_tokenizer(folder)`: the one way a stage opens a tokenizer, whatever made the model.

`tokenizer.tiktoken` marks gptlab's own BPE (its folder may also hold the Hugging Face files that
`Tokenizer.save` writes for interop, so it is checked first); otherwise `tokenizer.json` is a
model's own Hugging Face tokenizer, as `gptlab import` writes it.
"""

from __future__ import annotations

from pathlib import Path

from gptlab.errors import InputError
from gptlab.tokenizer.bpe import TIKTOKEN_FILE, Tokenizer
from gptlab.tokenizer.hf_tokenizer import HF_FILE, HFTokenizer
from gptlab.tokenizer.protocol import TokenizerLike


def load_tokenizer(folder: str | Path) -> TokenizerLike:
    """gptlab's BPE when `folder` has tokenizer.tiktoken, else the Hugging Face tokenizer.json;
    an InputError naming the folder when it has neither."""
    root = Path(folder)
    if (root / TIKTOKEN_FILE).exists():
        return Tokenizer.load(folder)
    if (root / HF_FILE).exists():
        return HFTokenizer.load(folder)
    what = "no such folder" if not root.exists() else (
        f"neither {TIKTOKEN_FILE} (gptlab's BPE) nor {HF_FILE} (a Hugging Face tokenizer) in it"
    )
    raise InputError(folder, f"not a tokenizer folder ({what})")
