"""The lean decode step: the same logits as the model's own forward, and the engine uses it."""

from __future__ import annotations

import pytest
import torch

from gptlab.infer import int8_gemv
from gptlab.infer.decode_step import DecodeStep, Int8Weight
from gptlab.infer.engine import Engine, SamplingParams
from gptlab.infer.kv_cache import KVCache
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.lora import apply_lora
from gptlab.train.optim import build_optimizer


def tiny_gpt(n_kv_head: int = 2, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=61, n_layer=2, n_head=4, n_kv_head=n_kv_head, n_embd=32, max_seq_len=64)
    return GPT(cfg).eval()


def test_decode_step_equals_full_forward_for_rows_at_different_lengths() -> None:
    model = tiny_gpt()
    step = DecodeStep(model)
    a, b = torch.randint(0, 61, (1, 9)), torch.randint(0, 61, (1, 4))
    cache = KVCache(model.config, batch_size=3)
    with torch.no_grad():
        model(a, cache=cache.select([2]))  # prefill by the generic path, continue with the step
        model(b, cache=cache.select([0]))
        nxt = torch.randint(0, 61, (2, 1))
        got = step.step(nxt, cache.select([2, 0]))
        ref_a = model(torch.cat([a, nxt[:1]], 1))[0, -1]
        ref_b = model(torch.cat([b, nxt[1:]], 1))[0, -1]
    torch.testing.assert_close(got[0], ref_a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], ref_b, atol=1e-5, rtol=1e-4)
    assert cache.lengths.tolist() == [5, 0, 10]


def test_decode_step_follows_in_place_weight_updates() -> None:
    """An RL policy is trained between rollouts: the fused copies must not go stale."""
    model = tiny_gpt(n_kv_head=4)
    step = DecodeStep(model)
    ids = torch.randint(0, 61, (1, 6))

    def next_logits() -> torch.Tensor:
        cache = KVCache(model.config, batch_size=1)
        with torch.no_grad():
            model(ids[:, :5], cache=cache)
            return step.step(ids[:, 5:], cache)[0]

    before = next_logits()
    with torch.no_grad():
        model.layers[0].self_attn.k_proj.weight.mul_(3.0)
        model.layers[1].mlp.up_proj.weight.add_(0.1)
    after = next_logits()
    assert not torch.allclose(before, after, atol=1e-3)
    torch.testing.assert_close(after, model(ids)[0, -1], atol=1e-5, rtol=1e-4)


def test_engine_decodes_with_weights_a_fused_optimizer_just_wrote() -> None:
    """CPU fused AdamW leaves the version counters alone; the engine must still see its update."""
    model = tiny_gpt()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = build_optimizer(model, "adamw", lr=0.05)  # what the trainer builds: fused on CPU
    engine = Engine(model, eos_ids=[], max_batch=2)
    prompt = [3, 1, 4, 1, 5]
    engine.generate_all([prompt], 8, temperature=0.0)  # builds the fused copies
    loss = model(torch.tensor([prompt + [9, 2, 6]]))[0].logsumexp(-1).sum()
    loss.backward()
    opt.step()
    got = engine.generate_all([prompt], 8, temperature=0.0)[0]
    want, seq = [], list(prompt)
    with torch.no_grad():
        for _ in range(8):  # greedy by the model's own full forward, with its new weights
            want.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
            seq.append(want[-1])
    assert got == want


def test_engine_takes_the_lean_step_for_plain_and_lora_models_only() -> None:
    plain = tiny_gpt()
    assert Engine(plain, eos_ids=set())._decode is not None
    wrapped = tiny_gpt()
    apply_lora(wrapped, ["q_proj", "v_proj", "down_proj"], r=4, alpha=8)
    assert Engine(wrapped, eos_ids=set())._decode is not None  # adapters fold into the fused copies
    cfg = plain.config
    dropping = GPT(type(cfg)(**{**cfg.to_dict(), "dropout": 0.1})).eval()
    step = DecodeStep(dropping)
    assert step.applies()  # eval mode: dropout is off
    dropping.train()
    assert not step.applies()
    outer = torch.nn.Sequential(plain)
    assert not DecodeStep.supports(outer)


def test_decode_step_of_a_lora_model_equals_its_forward_and_follows_adapter_updates() -> None:
    model = tiny_gpt()
    apply_lora(model, "all", r=4, alpha=8)
    step = DecodeStep(model)
    prompt, nxt = torch.randint(0, 61, (2, 6)), torch.randint(0, 61, (2, 1))
    for trial in range(2):
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:  # the adapters (B starts at 0: give them a real delta)
                    p.add_(0.1 * torch.randn_like(p))
            step.sync()
            cache = KVCache(model.config, batch_size=2)
            model(prompt, cache=cache.select(None))
            got = step.step(nxt, cache.select(None))
            want = model(torch.cat([prompt, nxt], 1))[:, -1]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_lean_and_generic_engines_give_the_same_samples() -> None:
    model = tiny_gpt()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    lean = Engine(model, eos_ids=set(), max_batch=3)
    generic = Engine(model, eos_ids=set(), max_batch=3)
    generic._decode = None
    for kw in ({"temperature": 0.0}, {"temperature": 1.0, "top_k": 20, "seed": 7}):
        assert lean.generate_all(prompts, 24, **kw) == generic.generate_all(prompts, 24, **kw)


def test_precast_matrices_give_the_same_bf16_logits_as_autocast_and_untie_the_head() -> None:
    import pytest

    from gptlab.infer.loading import precast_for_autocast

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=61, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=64,
                      tie_embeddings=True)
    model = GPT(cfg).eval().requires_grad_(False)
    idx = torch.randint(0, 61, (3, 10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(idx)
        precast_for_autocast(model, torch.bfloat16)
        got = model(idx)
    assert torch.equal(got, want)  # what autocast made of each weight, stored once
    assert model.lm_head.weight.dtype == torch.bfloat16 and model.embed_tokens.weight.dtype == torch.float32
    assert model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    trainable = GPT(cfg)
    with pytest.raises(ValueError, match="frozen"):
        precast_for_autocast(trainable, torch.bfloat16)


def test_int8_weights_round_each_row_to_its_own_scale() -> None:
    w = torch.randn(7, 32) * torch.logspace(-2, 1, 7)[:, None]  # rows of very different sizes
    q = Int8Weight.of(w)
    assert q.q.dtype == torch.int8 and q.q.shape == (7, 32) and q.q.abs().max() <= 127
    back = q.q.float() * q.scale.float()[:, None]
    # half a level from rounding, plus the scale's own bf16 rounding (2^-9 relative)
    assert ((back - w).abs() <= 0.5 * q.scale.float()[:, None] + w.abs() * 2**-8 + 1e-7).all()


@pytest.mark.parametrize("kernel", ["compiled", "torch"])
def test_int8_decode_step_stays_near_the_exact_step_and_the_engine_offers_it(kernel: str, monkeypatch) -> None:
    if kernel == "compiled" and not int8_gemv.available():
        pytest.skip("no C compiler with OpenMP here")
    if kernel == "torch":  # what a machine without a compiler runs
        monkeypatch.setattr(int8_gemv, "available", lambda: False)
    packed = kernel == "compiled"
    model = tiny_gpt()
    exact, int8 = DecodeStep(model), DecodeStep(model, int8=True)
    a = torch.randint(0, 61, (2, 6))
    caches = [KVCache(model.config, batch_size=2) for _ in range(2)]
    with torch.no_grad():
        for c in caches:
            model(a, cache=c)
        nxt = torch.randint(0, 61, (2, 1))
        ref, got = exact.step(nxt, caches[0]), int8.step(nxt, caches[1])
    kind = int8_gemv.PackedInt8 if packed else Int8Weight
    assert isinstance(int8._layers[0].wqkv, kind) and isinstance(int8._head, kind)
    assert got.dtype == ref.dtype and (got - ref).abs().max() <= 0.03 * ref.abs().max()
    assert not torch.equal(got, ref)  # the int8 copies were read, not the exact ones
    engine = Engine(model, eos_ids=set(), max_batch=2, int8_decode=True)
    outs = engine.generate_all([[1, 2, 3], [4, 5]], 8, temperature=0.0)
    assert engine._decode is not None and engine._decode.int8 and [len(o) for o in outs] == [8, 8]


def test_a_cache_with_a_fixed_dtype_keeps_earlier_keys_when_a_write_comes_in_another() -> None:
    model = tiny_gpt()
    cache = KVCache(model.config, batch_size=1, dtype=torch.float32)
    cache.positions(3)
    k = torch.randn(1, 2, 3, 8)
    cache.update(0, k.bfloat16(), k.bfloat16())
    cache.advance(3)
    cache.positions(1)
    keys, _, _ = cache.update(0, torch.ones(1, 2, 1, 8), torch.ones(1, 2, 1, 8))
    assert keys.dtype == torch.float32 and keys.shape == (1, 2, 4, 8)
    torch.testing.assert_close(keys[:, :, :3], k.bfloat16().float())  # the bf16 prefill's keys survived
    assert torch.equal(keys[:, :, 3], torch.ones(1, 2, 8))


def test_int8_decode_continues_a_bf16_prefill_with_fp32_steps() -> None:
    """`chat --dtype auto --int8-decode`: prompts run under bf16 autocast on precast matrices (the
    fast prefill), the steps read int8 copies with fp32 activations, in one fp32 cache."""
    from gptlab.infer.loading import precast_for_autocast

    exact = tiny_gpt()
    model = precast_for_autocast(tiny_gpt().requires_grad_(False), torch.bfloat16)
    engine = Engine(model, eos_ids=set(), max_batch=2, autocast_dtype=torch.bfloat16, int8_decode=True)
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8, 9]]
    slots = engine.open_slots(prompts, [SamplingParams(4, temperature=0.0) for _ in prompts])
    nxt = {slot: int(engine.slots[slot].logits.argmax()) for slot in slots}
    engine.step()
    assert engine.cache.k is not None and engine.cache.k.dtype == torch.float32
    with torch.no_grad():
        for slot, ids in zip(slots, prompts):
            ref = exact(torch.tensor([ids + [nxt[slot]]]))[0, -1]
            got = engine.slots[slot].logits
            assert (got - ref).abs().max() <= 0.05 * ref.abs().max()  # bf16 prompt + int8 step, not a wiped cache
