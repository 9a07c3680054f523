"""KV cache and engine: cached decoding equals full-forward decoding; batching changes nothing."""

from __future__ import annotations

import pytest
import torch

from gptlab.infer.engine import Engine, SamplingParams
from gptlab.infer.kv_cache import KVCache
from gptlab.infer.sampling import generate
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT


def tiny_gpt(n_kv_head: int = 2, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=61, n_layer=2, n_head=4, n_kv_head=n_kv_head, n_embd=32, max_seq_len=64)
    return GPT(cfg).eval()


@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_cached_logits_match_full_forward(n_kv_head: int) -> None:
    model = tiny_gpt(n_kv_head)
    ids = torch.randint(0, 61, (3, 20))
    full = model(ids)
    cache = KVCache(model.config, batch_size=3)
    with torch.no_grad():
        first = model(ids[:, :12], cache=cache)  # prefill 12, then 8 single-token steps
        steps = [model(ids[:, t : t + 1], cache=cache) for t in range(12, 20)]
    got = torch.cat([first, *steps], dim=1)
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-4)
    assert cache.lengths.tolist() == [20, 20, 20]


def test_rows_at_different_lengths_match_their_own_full_forward() -> None:
    model = tiny_gpt()
    a, b = torch.randint(0, 61, (1, 9)), torch.randint(0, 61, (1, 4))
    cache = KVCache(model.config, batch_size=4)
    with torch.no_grad():
        model(a, cache=cache.select([2]))
        model(b, cache=cache.select([0]))
        nxt = torch.randint(0, 61, (2, 1))
        out = model(nxt, cache=cache.select([2, 0]))
        ref_a = model(torch.cat([a, nxt[:1]], 1))[:, -1]
        ref_b = model(torch.cat([b, nxt[1:]], 1))[:, -1]
    torch.testing.assert_close(out[0, -1], ref_a[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[1, -1], ref_b[0], atol=1e-5, rtol=1e-4)
    assert cache.lengths.tolist() == [5, 0, 10, 0]


def test_cache_overflow_is_a_clear_error() -> None:
    model = tiny_gpt()
    cache = KVCache(model.config, batch_size=1, max_len=8)
    with pytest.raises(ValueError, match="KV cache full"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)


def test_engine_greedy_equals_full_forward_generate() -> None:
    model = tiny_gpt()
    prompts = [[1, 2, 3, 4, 5], [7], [9, 9, 9, 8, 7, 6, 5, 4, 3, 2]]
    engine = Engine(model, eos_ids=set(), max_batch=2)  # 3 prompts, 2 slots: one waits its turn
    got = engine.generate_all(prompts, max_new_tokens=15, temperature=0.0)
    for p, g in zip(prompts, got):
        assert g == generate(model, p, 15, temperature=0.0)
    assert not engine.slots


def test_batched_equals_unbatched_when_sampling_with_a_seed() -> None:
    model = tiny_gpt()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [10]]
    kw = {"temperature": 1.0, "top_k": 20, "top_p": 0.9, "seed": 123}
    batched = Engine(model, eos_ids=set(), max_batch=3).generate_all(prompts, 12, **kw)
    engine = Engine(model, eos_ids=set(), max_batch=1)
    alone = [engine.generate_all([p], 12, **{**kw, "seed": 123 + j})[0] for j, p in enumerate(prompts)]
    assert batched == alone
    again = Engine(model, eos_ids=set(), max_batch=3).generate_all(prompts, 12, **kw)
    assert again == batched
    other = Engine(model, eos_ids=set(), max_batch=3).generate_all(prompts, 12, **{**kw, "seed": 7})
    assert other != batched


def test_a_repeated_prompt_is_prefilled_once_and_samples_as_if_alone() -> None:
    """K answers to one prompt share its prefill (one row runs, the cache is copied): each answer
    is still the one its seed gives alone, and the copied slots decode greedily like the original."""
    model = tiny_gpt()
    prompts = [[1, 2, 3, 4], [5, 6], [1, 2, 3, 4], [1, 2, 3, 4]]
    kw = {"temperature": 1.0, "seed": 11}
    engine = Engine(model, eos_ids=set(), max_batch=4)
    rows_run: list[int] = []
    forward = engine._forward_last
    engine._forward_last = lambda rows, idx, last=None: (rows_run.append(idx.size(0)), forward(rows, idx, last))[1]
    shared = engine.generate_all(prompts, 10, **kw)
    assert rows_run[0] == 2  # the first prefill ran the two distinct prompts only
    alone = [Engine(model, eos_ids=set(), max_batch=1).generate_all([p], 10, temperature=1.0, seed=11 + j)[0]
             for j, p in enumerate(prompts)]
    assert shared == alone
    greedy = Engine(model, eos_ids=set(), max_batch=4).generate_all(prompts, 10, temperature=0.0)
    assert greedy[0] == greedy[2] == greedy[3] == generate(model, prompts[0], 10, temperature=0.0)


class NextIdModel(torch.nn.Module):
    """Mock model that always predicts (last id + 1) mod V, and uses the cache like GPT does."""

    def __init__(self, vocab: int = 50):
        super().__init__()
        self.config = ModelConfig(vocab_size=vocab, n_layer=1, n_head=1, n_kv_head=1, n_embd=vocab, max_seq_len=32)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab = vocab

    def hidden_states(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        cache.positions(idx.size(1))
        cache.advance(idx.size(1))
        return torch.nn.functional.one_hot((idx + 1) % self.vocab, self.vocab).float()

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        return h * 10


def test_engine_stops_on_eos_and_forces_tool_results() -> None:
    calls: list[list[int]] = []

    def hook(ids: list[int]) -> list[int]:
        calls.append(ids)
        return [30, 31]

    engine = Engine(NextIdModel(), eos_ids={34}, tool_hook=hook, tool_call_id=5, tool_call_end_id=7)
    out = engine.generate_all([[2, 3]], max_new_tokens=20, temperature=0.0)[0]
    # 4, then <call>=5, 6, <end>=7 -> the hook sees [6] and its ids are forced, then 32, 33, eos 34.
    assert out == [4, 5, 6, 7, 30, 31, 32, 33, 34]
    assert calls == [[6]]


def test_slot_api_budget_and_length_limits() -> None:
    engine = Engine(NextIdModel(), eos_ids=set(), max_batch=2)
    s = engine.open_slot([1], SamplingParams(max_new_tokens=3, temperature=0.0))
    t = engine.open_slot(list(range(28)), SamplingParams(max_new_tokens=100, temperature=0.0))
    while engine.finish_reason(s) is None or engine.finish_reason(t) is None:
        engine.step()
    assert engine.generated(s) == [2, 3, 4] and engine.finish_reason(s) == "length"
    assert len(engine.generated(t)) == 4 and engine.finish_reason(t) == "length"  # 28 + 4 = max_len 32
    with pytest.raises(RuntimeError, match="busy"):
        engine.open_slot([1])
    engine.close_slot(s)
    assert engine.free_slots() == 1


def test_entropies_from_the_decode_equal_a_second_forward_pass() -> None:
    model = tiny_gpt()
    prompts = [[1, 2, 3, 4, 5], [7], [9, 9, 9, 8, 7, 6, 5, 4, 3, 2]]
    engine = Engine(model, eos_ids={11}, max_batch=2)  # one prompt waits for a slot, some may stop early
    outs, ents = engine.generate_with_entropy(prompts, 10, temperature=1.0, seed=5)
    assert outs == engine.generate_all(prompts, 10, temperature=1.0, seed=5)  # tracking changes no token
    with torch.no_grad():
        for p, reply, ent in zip(prompts, outs, ents):
            logp = torch.log_softmax(model(torch.tensor([p + reply[:-1]]))[0, len(p) - 1 :], dim=-1)
            want = float(-(logp.exp() * logp).sum(-1).mean())
            assert ent == pytest.approx(want, rel=1e-4)
    assert len(set(ents)) == 3  # a value per row, not one shared number
