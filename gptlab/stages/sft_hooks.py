"""The SFT stage's two loop hooks: held-out assistant-token loss, and answers into samples.md.

Both read the held-out conversations only. `val_loss` is summed nats over summed assistant
tokens (across ranks), so it does not depend on how rows were packed or split over ranks. The
samples are greedy answers from the inference engine (KV cache, batched, stops at `<|end|>`),
with the calculator running for real, as in `gptlab chat`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from gptlab.data.sft_batches import Example, eval_batches
from gptlab.infer.engine import Engine
from gptlab.tokenizer.special import TOOL_CALL, TOOL_CALL_END
from gptlab.tools.registry import ToolRegistry, make_tool_hook
from gptlab.train.distributed import DistInfo, all_reduce_sum
from gptlab.train.tracker import append_samples


def _core(model: torch.nn.Module) -> torch.nn.Module:
    """The GPT under an AdapterOnly view (the engine needs hidden_states / lm_head)."""
    return getattr(model, "inner", model)


def make_evaluate(
    val_examples: Sequence[Example], batch_size: int, seq_len: int, pad_id: int, dist: DistInfo
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """Hook: val_loss = summed nats / count over the held-out conversations' assistant tokens."""

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        sums = torch.zeros(2, dtype=torch.float64, device=dist.device)
        for x, y in eval_batches(
            val_examples, batch_size, seq_len, pad_id, dist.rank, dist.world_size, dist.device
        ):
            losses = model(x, y, reduction="none").double()
            sums[0] += losses.sum()  # ignored targets contribute 0
            sums[1] += (y != -1).sum()
        nats, count = all_reduce_sum(sums).tolist()
        return {"val_loss": nats / max(count, 1.0)}

    return evaluate


def _one_line(text: str, limit: int = 160) -> str:
    """'a\\n  b`c' -> "a b'c", cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_prompts(tok: Any, val_convs: Sequence[list[dict]], n: int) -> list[tuple[str, list[int]]]:
    """(the user's words on one line, the rendered prompt ids) up to each of the first `n`
    held-out conversations' first assistant turn."""
    prompts: list[tuple[str, list[int]]] = []
    for conv in val_convs:
        first = next((i for i, m in enumerate(conv) if m["role"] == "assistant"), None)
        if first is None:
            continue
        user = conv[first - 1]["content"]
        text = _one_line(user if isinstance(user, str) else str(user))
        prompts.append((text, tok.render_prompt(conv[:first])))
        if len(prompts) == n:
            break
    return prompts


def make_sample(
    tok: Any, val_convs: Sequence[list[dict]], n: int, max_new: int, seed: int, out_dir: Path, is_main: bool
) -> Callable[[torch.nn.Module, int], None]:
    """Hook: greedy answers to the first `n` held-out prompts, appended to samples.md."""
    prompts = first_prompts(tok, val_convs, n)
    # The calculator runs for real: a tool call's result is forced in, as in chat.
    hook_kw = {
        "tool_hook": make_tool_hook(tok, ToolRegistry()),
        "tool_call_id": tok.token_id(TOOL_CALL),
        "tool_call_end_id": tok.token_id(TOOL_CALL_END),
    }

    def sample(model: torch.nn.Module, step: int) -> None:
        engine = Engine(_core(model), tok.stop_ids, max_batch=max(1, len(prompts)), **hook_kw)
        room = [(text, ids) for text, ids in prompts if len(ids) + 1 < engine.max_len]
        outs = (
            engine.generate_all([ids for _, ids in room], max_new, temperature=0.0, seed=seed)
            if room
            else []
        )
        rows = []
        for (text, _), new in zip(room, outs):
            if new and new[-1] in tok.stop_ids:
                new = new[:-1]
            rows.append((text, tok.decode(new)))
        if is_main and rows:
            append_samples(out_dir / "samples.md", step, rows)

    return sample
