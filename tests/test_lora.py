"""LoRA: starts as the base model, merges exactly, trains only the adapter, round-trips to disk."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from gptlab.errors import InputError
from gptlab.model import lora
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import load_model, save_model


def tiny_model(seed: int = 0, tie: bool = False) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=64,
        n_layer=2,
        n_embd=32,
        n_head=4,
        n_kv_head=2,
        intermediate_size=64,
        max_seq_len=16,
        tie_embeddings=tie,
    )
    return GPT(cfg).eval()


def randomize_adapters(model: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora.lora_modules(model).values():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


IDX = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))


def test_lora_linear_formula():
    torch.manual_seed(0)
    base = torch.nn.Linear(8, 6, bias=False)
    m = lora.LoRALinear(base, r=2, alpha=4.0)
    with torch.no_grad():
        m.lora_B.normal_()
    x = torch.randn(3, 8)
    expected = x @ base.weight.T + 2.0 * (x @ m.lora_A.T @ m.lora_B.T)  # alpha / r = 2
    torch.testing.assert_close(m(x), expected)


def test_zero_B_leaves_outputs_unchanged():
    model = tiny_model()
    before = model(IDX)
    names = lora.apply_lora(model, "q_proj,v_proj", r=4, alpha=8)
    assert len(names) == 4 and all(n.endswith(("q_proj", "v_proj")) for n in names)
    assert all(
        float(m.lora_A.detach().abs().sum()) > 0 for m in lora.lora_modules(model).values()
    )  # A is random
    torch.testing.assert_close(model(IDX), before, rtol=0, atol=0)


@pytest.mark.parametrize("tie", [False, True])
def test_merged_equals_unmerged_and_names_match_base(tie):
    model = tiny_model(tie=tie)
    base_keys = set(model.state_dict())
    lora.apply_lora(model, "all", r=4, alpha=8)
    randomize_adapters(model)
    unmerged = model(IDX)
    assert not torch.allclose(
        unmerged, tiny_model(tie=tie)(IDX), atol=1e-4
    )  # the adapter does something
    merged_names = lora.merge_lora(model)
    assert len(merged_names) == 2 * 7
    assert set(model.state_dict()) == base_keys
    assert not lora.lora_modules(model)
    torch.testing.assert_close(model(IDX), unmerged, rtol=1e-5, atol=1e-5)


def test_only_adapter_params_train():
    model = tiny_model().train()
    lora.apply_lora(model, ["v_proj", "down_proj"], r=2, alpha=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 layers x 2 targets x (A, B)
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = model(IDX[:, :-1], IDX[:, 1:])
        loss.backward()
        for n, p in model.named_parameters():
            assert (p.grad is not None) == (n in trainable)
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        assert torch.equal(p, snapshot[n]) != (n in trainable), n


def test_unknown_target_is_an_error():
    with pytest.raises(ValueError, match="qq_proj"):
        lora.apply_lora(tiny_model(), "q_proj,qq_proj", r=2, alpha=2)


def test_adapter_round_trip(tmp_path):
    model = tiny_model()
    save_model(tmp_path / "base", model)
    lora.apply_lora(model, "q_proj,k_proj,up_proj", r=3, alpha=6)
    randomize_adapters(model)
    expected = model(IDX)
    out = tmp_path / "sft"
    lora.save_adapter(
        out,
        model,
        {"base": "../base", "rank": 3, "alpha": 6.0, "targets": ["q_proj", "k_proj", "up_proj"]},
    )
    stored = load_file(str(out / lora.ADAPTER_WEIGHTS))
    assert set(stored) == set(lora.lora_state_dict(model))  # the adapter alone, no base weights
    loaded = lora.load_model_with_adapter(out)
    torch.testing.assert_close(loaded(IDX), expected, rtol=0, atol=0)
    merged = lora.load_model_with_adapter(out, merge=True)
    torch.testing.assert_close(merged(IDX), expected, rtol=1e-5, atol=1e-5)
    # An adapter of another rank does not load silently.
    other = tiny_model()
    lora.apply_lora(other, "q_proj,k_proj,up_proj", r=2, alpha=6)
    with pytest.raises(InputError, match="shape"):
        lora.load_adapter(other, out)


def test_a_corrupt_adapter_file_is_one_line_error(tmp_path):
    model = tiny_model()
    save_model(tmp_path / "base", model)
    lora.apply_lora(model, "q_proj", r=2, alpha=4)
    out = tmp_path / "sft"
    lora.save_adapter(out, model, {"base": "../base", "rank": 2, "alpha": 4.0, "targets": ["q_proj"]})
    path = out / lora.ADAPTER_WEIGHTS
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(InputError) as e:
        lora.load_model_with_adapter(out)
    assert str(e.value).startswith(f"{path}: not a readable safetensors file (") and "\n" not in str(e.value)


def test_a_lora_folder_loads_through_load_model_and_as_another_adapter_base(tmp_path):
    """io.load_model merges a LoRA folder; an adapter trained on a LoRA folder loads too (the
    base is itself merged first), with io and lora apart (no import cycle)."""
    model = tiny_model()
    save_model(tmp_path / "base", model)
    lora.apply_lora(model, "q_proj", r=2, alpha=4)
    randomize_adapters(model)
    first = tmp_path / "sft1"
    lora.save_adapter(first, model, {"base": "../base", "rank": 2, "alpha": 4.0, "targets": ["q_proj"]})
    assert lora.is_adapter_folder(first) and not lora.is_adapter_folder(tmp_path / "base")
    merged = load_model(first)
    assert merged.training and all(p.requires_grad for p in merged.parameters())
    torch.testing.assert_close(merged.eval()(IDX), model(IDX), rtol=1e-5, atol=1e-5)

    lora.apply_lora(merged, "v_proj", r=2, alpha=4)
    randomize_adapters(merged, seed=2)
    expected = merged(IDX)
    second = tmp_path / "sft2"
    lora.save_adapter(second, merged, {"base": "../sft1", "rank": 2, "alpha": 4.0, "targets": ["v_proj"]})
    torch.testing.assert_close(lora.load_model_with_adapter(second)(IDX), expected, rtol=1e-5, atol=1e-5)


def test_adapter_only_view_state_dict():
    model = tiny_model()
    lora.apply_lora(model, "v_proj", r=2, alpha=4)
    view = lora.AdapterOnly(model)
    sd = view.state_dict()
    assert set(sd) == {f"layers.{i}.self_attn.v_proj.lora_{x}" for i in range(2) for x in "AB"}
    fresh = {k: torch.full_like(v, 0.5) for k, v in sd.items()}
    view.load_state_dict(fresh)
    assert all(torch.equal(v, fresh[k]) for k, v in lora.lora_state_dict(model).items())
    torch.testing.assert_close(view(IDX), model(IDX))


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_token_rows_train_beside_lora_and_merge_exactly(tie):
    """Rows of a few token ids train (in and out); merged weights give the same logits."""
    model = tiny_model(tie=tie)
    idx = torch.tensor([[1, 5, 2, 7, 5, 3]])
    with torch.no_grad():
        before = model(idx)
    lora.apply_lora(model, "q_proj", r=2, alpha=4.0, token_rows=[5, 2])
    with torch.no_grad():
        torch.testing.assert_close(model(idx), before, rtol=0, atol=1e-6)  # starts as the base
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "embed_tokens.rows" in trainable and ("lm_head.rows" in trainable) != tie
    loss = model(idx, targets=torch.tensor([[5, 2, 7, 5, 3, 2]]))
    loss.backward()
    assert model.embed_tokens.rows.grad.abs().sum() > 0
    with torch.no_grad():
        for p in (model.embed_tokens.rows, *([] if tie else [model.lm_head.rows])):
            p.add_(torch.randn_like(p))
        wrapped = model(idx)
        assert not torch.allclose(wrapped, before)
    state = lora.lora_state_dict(model)
    assert {k for k in state if k.endswith(".rows")} == ({"embed_tokens.rows"} | (set() if tie else {"lm_head.rows"}))
    lora.merge_lora(model)
    assert type(model.embed_tokens) is torch.nn.Embedding and type(model.lm_head) is torch.nn.Linear
    assert (model.lm_head.weight is model.embed_tokens.weight) == tie
    with torch.no_grad():
        torch.testing.assert_close(model(idx), wrapped, rtol=1e-5, atol=1e-5)


def test_token_rows_gradient_is_the_same_every_time():
    """Many positions read a few trained rows: their gradient must add up in one fixed order (an
    indexing gather's backward did not on CPU, and two runs of one SFT parted at step 2)."""
    from gptlab.model.token_rows import RowsEmbedding

    torch.manual_seed(0)
    emb = RowsEmbedding(torch.nn.Embedding(50, 64), list(range(40, 50)))
    idx = torch.randint(30, 50, (8, 256))  # half the positions read a trained row
    upstream = torch.randn(8, 256, 64)

    def grad() -> torch.Tensor:
        emb.rows.grad = None
        (emb(idx) * upstream).sum().backward()
        return emb.rows.grad.clone()

    first = grad()
    assert first.abs().sum() > 0 and all(torch.equal(first, grad()) for _ in range(20))
