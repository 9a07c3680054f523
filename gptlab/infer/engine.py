"""The inference engine: KV-cache decoding of many sequences at once, on token ids only.

Each sequence lives in a slot of one `KVCache`. `open_slot` prefills a prompt; every `step`
picks one token per active slot (sampled, or forced) and feeds them all through the model in
one batched forward pass. Slots open and close between steps, so a server can batch requests
that arrive at different times (continuous batching); `generate` is the simple batch API.

Tools stay outside: when a slot emits `<|tool_call|> ... <|tool_call_end|>`, the engine hands the
ids in between to `tool_hook` and forces the ids it returns (the `<|tool_result|>` span) into the
sequence one per step, as if the model had written them (Toolformer-style), then sampling resumes.

Sampling is per slot (own temperature/top-k/top-p and own seeded generator), so a row's tokens
do not depend on which other rows share its batch: batched equals unbatched at any seed.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from gptlab.common import autocast_context
from gptlab.infer.decode_step import DecodeStep
from gptlab.infer.kv_cache import KVCache
from gptlab.infer.sampling import sample_next

ToolHook = Callable[[list[int]], list[int]]


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass
class _Slot:
    params: SamplingParams
    logits: torch.Tensor  # (V,) next-token logits
    generator: torch.Generator | None
    generated: list[int] = field(default_factory=list)
    forced: deque[int] = field(default_factory=deque)
    tool_ids: list[int] | None = None  # inside a tool call: its ids so far
    finish_reason: str | None = None  # 'stop' (end-of-turn id), 'length', or None while running
    next_entropy: float = 0.0  # entropy (nats) of `logits`, when the engine tracks entropy
    entropy_sum: float = 0.0  # summed over the generated tokens' distributions


def _entropies(logits: torch.Tensor) -> list[float]:
    """Entropy (nats) of each row's next-token distribution; logits (B, V) in fp32."""
    logp = torch.log_softmax(logits, dim=-1)
    return (-(logp.exp() * logp).sum(-1)).tolist()


class Engine:
    def __init__(
        self,
        model: torch.nn.Module,
        eos_ids: set[int] | frozenset[int],
        tool_hook: ToolHook | None = None,
        tool_call_id: int | None = None,
        tool_call_end_id: int | None = None,
        max_batch: int = 16,
        max_len: int | None = None,
        autocast_dtype: torch.dtype | None = None,
        int8_decode: bool = False,
    ):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.eos_ids = set(eos_ids)
        self.tool_hook = tool_hook
        self.tool_call_id, self.tool_call_end_id = tool_call_id, tool_call_end_id
        if tool_hook is not None and (tool_call_id is None or tool_call_end_id is None):
            raise ValueError("a tool_hook needs tool_call_id and tool_call_end_id")
        # One-token steps of a plain GPT take the lean path (same math, half the torch calls);
        # prefill, LoRA-wrapped and sharded models take the model's own forward.
        # With `int8_decode` those steps read int8 copies of the weights (int8_gemv.PackedInt8 on a CPU
        # where the kernel compiles, else decode_step.Int8Weight through torch's kernels).
        self._decode = DecodeStep(model, int8_decode) if DecodeStep.supports(model) else None
        # int8 steps run in fp32, so their cache stays fp32 whatever precision prefill runs in.
        fp32_cache = self._decode is not None and self._decode.int8
        self.cache = KVCache(model.config, max_batch, max_len, self.device, torch.float32 if fp32_cache else None)
        self.max_len = self.cache.max_len
        self.autocast_dtype = autocast_dtype
        self._generating = False
        self.slots: dict[int, _Slot] = {}
        # Evaluation reads each reply's mean next-token entropy from the decode's own logits
        # (`generate_with_entropy`) instead of a second forward pass over prompt + reply.
        self.track_entropy = False

    # ----- low-level slot API (continuous batching) -----
    def free_slots(self) -> int:
        return self.cache.n_slots - len(self.slots)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.device, self.autocast_dtype)

    @torch.inference_mode()
    def _forward_last(self, rows: list[int], idx: torch.Tensor, last: list[int] | None = None) -> torch.Tensor:
        """Run idx (B, T) for cache rows; logits (B, V) in fp32 at position last[b] (default T-1)."""
        if self._decode is not None and idx.size(1) == 1 and self._decode.applies():
            # The int8 step keeps fp32 activations even when prompts are prefilled under bf16
            # autocast: its products cast each row to bf16 anyway, and bf16 attention and
            # element-wise calls made the step slower on the CPU (26.4 against 18.7 ms, SmolLM2).
            with contextlib.nullcontext() if self._decode.int8 else self._autocast():
                return self._decode.step(idx, self.cache.select(rows)).float()
        with self._autocast():
            h = self.model.hidden_states(idx, self.cache.select(rows))
            if last is None:
                h = h[:, -1]
            else:
                h = h[torch.arange(idx.size(0), device=h.device), torch.tensor(last, device=h.device)]
            return self.model.lm_head(h).float()

    def open_slot(self, prompt_ids: list[int], params: SamplingParams | None = None) -> int:
        """Prefill a prompt into a free slot; returns the slot id."""
        return self.open_slots([prompt_ids], [params or SamplingParams()])[0]

    def open_slots(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[int]:
        """Prefill several prompts in one forward pass (right-padded); returns their slot ids.

        Padding sits after each prompt, so causal attention keeps it out of the prompt's own
        positions; the slot's length is then set to the prompt's, which masks the padding out
        of every later step (and the next tokens overwrite it). A prompt repeated in the group
        (K answers to one question, a GRPO group) is run once and its keys and values copied to
        the other slots: the same cache, a K-th of the prefill.
        """
        for ids in prompts:
            if not ids:
                raise ValueError("prompt_ids is empty: start with at least one token (e.g. <|endoftext|>)")
            if len(ids) >= self.max_len:
                raise ValueError(f"prompt of {len(ids)} tokens leaves no room (max_len={self.max_len})")
        if self._decode is not None and not self._generating:
            self._decode.sync()  # the slot API: the weights may have changed since the last prompt
        free = [s for s in range(self.cache.n_slots) if s not in self.slots]
        if len(free) < len(prompts):
            raise RuntimeError(f"all {self.cache.n_slots} slots are busy")
        slots = free[: len(prompts)]
        for slot in slots:
            self.cache.reset(slot)
        first: dict[tuple[int, ...], int] = {}  # prompt -> the row that runs it
        source = [first.setdefault(tuple(ids), row) for row, ids in enumerate(prompts)]
        runs = sorted(first.values())
        width = max(len(prompts[r]) for r in runs)
        idx = torch.zeros(len(runs), width, dtype=torch.long, device=self.device)
        for i, r in enumerate(runs):
            idx[i, : len(prompts[r])] = torch.tensor(prompts[r], dtype=torch.long)
        ran = self._forward_last([slots[r] for r in runs], idx, [len(prompts[r]) - 1 for r in runs])
        at = {r: i for i, r in enumerate(runs)}
        logits = ran[[at[src] for src in source]] if len(runs) < len(prompts) else ran
        ents = _entropies(logits) if self.track_entropy else [0.0] * len(prompts)
        for row, (slot, ids, p) in enumerate(zip(slots, prompts, params)):
            if source[row] != row:
                self.cache.copy_slot(slots[source[row]], slot, len(ids))
            self.cache.set_length(slot, len(ids))
            gen = None
            if p.seed is not None:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(p.seed)
            self.slots[slot] = _Slot(p, logits[row], gen, next_entropy=ents[row])
            if p.max_new_tokens <= 0:
                self.slots[slot].finish_reason = "length"
        return slots

    def close_slot(self, slot: int) -> None:
        self.slots.pop(slot, None)
        self.cache.reset(slot)

    def finish_reason(self, slot: int) -> str | None:
        return self.slots[slot].finish_reason

    def generated(self, slot: int) -> list[int]:
        return self.slots[slot].generated

    def _choose(self, s: _Slot) -> int:
        if s.forced:
            return s.forced.popleft()
        p = s.params
        return int(sample_next(s.logits, p.temperature, p.top_k, p.top_p, s.generator).item())

    def _track_tools(self, s: _Slot, tok: int) -> None:
        if self.tool_hook is None:
            return
        if tok == self.tool_call_id:
            s.tool_ids = []
        elif tok == self.tool_call_end_id and s.tool_ids is not None:
            s.forced.extend(self.tool_hook(s.tool_ids))
            s.tool_ids = None
        elif s.tool_ids is not None:
            s.tool_ids.append(tok)

    def step(self, slots: list[int] | None = None) -> dict[int, int]:
        """One token for each running slot (default: all open ones); returns {slot: token}.

        A slot whose token is an end-of-turn id, or that reached its token budget or the
        cache's length, is finished (`finish_reason`) and is not fed further.
        """
        running = [i for i in (self.slots if slots is None else slots) if self.slots[i].finish_reason is None]
        out: dict[int, int] = {}
        feed: list[int] = []
        for i in running:
            s = self.slots[i]
            tok = self._choose(s)
            s.generated.append(tok)
            s.entropy_sum += s.next_entropy
            out[i] = tok
            if tok in self.eos_ids and not s.forced:
                s.finish_reason = "stop"
            elif len(s.generated) >= s.params.max_new_tokens or self.cache.length(i) + 1 >= self.max_len:
                s.finish_reason = "length"
            else:
                self._track_tools(s, tok)
                feed.append(i)
        if feed:
            idx = torch.tensor([[out[i]] for i in feed], dtype=torch.long, device=self.device)
            logits = self._forward_last(feed, idx)
            ents = _entropies(logits) if self.track_entropy else [0.0] * len(feed)
            for row, i in enumerate(feed):
                self.slots[i].logits, self.slots[i].next_entropy = logits[row], ents[row]
        return out

    # ----- batch API -----
    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        entropy_out: dict[int, float] | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> Iterator[list[int | None]]:
        """Stream tokens: each step yields one new id per prompt (None once that prompt is done).

        Prompts beyond `max_batch` wait for a free slot. With a seed, prompt j samples with
        seed + j, so its tokens do not depend on the batch it ran in. With `entropy_out`, each
        finished prompt j gets the mean entropy of the distributions its tokens were drawn from;
        `on_done(j)` is called as prompt j finishes (a progress bar's hook).
        """
        if self.slots:
            raise RuntimeError("generate() needs an idle engine; use the slot API alongside a server")
        pending = deque(range(len(prompts)))
        refill = max(1, self.cache.n_slots // 4)
        slot_of: dict[int, int] = {}
        done: set[int] = set()
        if self._decode is not None:
            self._decode.sync()  # once per call: a policy trained between calls decodes as it is now
        self._generating = True
        try:
            while len(done) < len(prompts):
                batch = []
                free = self.free_slots()
                # Refill in groups of at least a quarter of the slots: one prefill of 8 prompts
                # cost 583 ms against 8 x 187 ms one at a time (SmolLM2, AMD EPYC VM).
                if pending and (not slot_of or free >= min(len(pending), refill)):
                    batch = [pending.popleft() for _ in range(min(len(pending), free))]
                if batch:
                    params = [
                        SamplingParams(max_new_tokens, temperature, top_k, top_p, None if seed is None else seed + j)
                        for j in batch
                    ]
                    for j, slot in zip(batch, self.open_slots([prompts[j] for j in batch], params)):
                        slot_of[j] = slot
                toks = self.step()
                row: list[int | None] = [None] * len(prompts)
                for j, slot in list(slot_of.items()):
                    row[j] = toks.get(slot)
                    s = self.slots[slot]
                    if s.finish_reason is not None:
                        if entropy_out is not None:
                            entropy_out[j] = s.entropy_sum / len(s.generated) if s.generated else float("nan")
                        self.close_slot(slot)
                        del slot_of[j]
                        done.add(j)
                        if on_done is not None:
                            on_done(j)
                yield row
        finally:
            self._generating = False
            for slot in slot_of.values():
                self.close_slot(slot)

    def generate_all(self, prompts: list[list[int]], max_new_tokens: int, **kw) -> list[list[int]]:
        """Full new ids per prompt (ending with the end-of-turn id when it stopped)."""
        outs: list[list[int]] = [[] for _ in prompts]
        for row in self.generate(prompts, max_new_tokens, **kw):
            for j, tok in enumerate(row):
                if tok is not None:
                    outs[j].append(tok)
        return outs

    def generate_with_entropy(
        self, prompts: list[list[int]], max_new_tokens: int, **kw
    ) -> tuple[list[list[int]], list[float]]:
        """`generate_all`, and each reply's mean next-token entropy (nats) taken from the decode's
        own logits, so scoring a reply's confidence costs no second forward pass."""
        ents: dict[int, float] = {}
        self.track_entropy = True
        try:
            outs = self.generate_all(prompts, max_new_tokens, entropy_out=ents, **kw)
        finally:
            self.track_entropy = False
        return outs, [ents.get(j, float("nan")) for j in range(len(prompts))]
