"""The model's invariants: causality, shapes, GQA == repeated-kv MHA, loss masking, config
validation, preset sizes, FLOPs and the save/load round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from gptlab.errors import InputError
from gptlab.model.config import ModelConfig, config_from_depth, preset
from gptlab.model.gpt import GPT
from gptlab.model.io import WEIGHTS, load_model, save_model


def tiny_cfg(**kw) -> ModelConfig:
    base = {
        "vocab_size": 61,
        "n_layer": 2,
        "n_embd": 32,
        "n_head": 4,
        "n_kv_head": 4,
        "intermediate_size": 48,
        "max_seq_len": 16,
    }
    return ModelConfig(**{**base, **kw})


def make(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_cfg(**kw)).eval()


def test_shapes():
    m = make()
    x = torch.randint(0, 61, (3, 10))
    assert m(x).shape == (3, 10, 61)
    assert m.hidden_states(x).shape == (3, 10, 32)
    assert m(x, targets=x).shape == ()
    assert m(x, targets=x, reduction="none").shape == (3, 10)


def test_too_long_sequence_is_an_error():
    m = make()
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_causal_every_position(n_kv_head):
    """Changing the token at position t changes no logits before t, and does change those at t."""
    m = make(n_kv_head=n_kv_head)
    T = 12
    x = torch.randint(0, 61, (1, T))
    with torch.no_grad():
        ref = m(x)
        for t in range(T):
            y = x.clone()
            y[0, t] = (y[0, t] + 1) % 61
            out = m(y)
            assert torch.equal(out[0, :t], ref[0, :t]), f"position {t} leaked into earlier logits"
            assert not torch.allclose(out[0, t], ref[0, t])


def test_gqa_equals_mha_with_repeated_kv_heads():
    """Query head h reads kv head h // (n_head / n_kv_head): copying each kv head into its group
    turns the GQA model into an MHA model with the same function."""
    gqa = make(seed=1, n_kv_head=2)
    mha = make(seed=2, n_kv_head=4)
    cfg = gqa.config
    group = cfg.n_head // cfg.n_kv_head
    state = {}
    for k, v in gqa.state_dict().items():
        if k.endswith(("k_proj.weight", "v_proj.weight")):
            v = v.view(cfg.n_kv_head, cfg.head_dim, cfg.n_embd).repeat_interleave(group, dim=0)
            v = v.reshape(cfg.n_head * cfg.head_dim, cfg.n_embd)
        state[k] = v
    mha.load_state_dict(state)
    x = torch.randint(0, 61, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(mha(x), gqa(x), rtol=1e-5, atol=1e-5)
    assert mha.num_params() > gqa.num_params()


def test_ignored_targets_do_not_count():
    m = make()
    x = torch.randint(0, 61, (2, 10))
    targets = torch.randint(0, 61, (2, 10))
    masked = targets.clone()
    masked[:, :4] = -1
    with torch.no_grad():
        per_tok = m(x, targets=targets, reduction="none")
        loss_masked = m(x, targets=masked)
        m_none = m(x, targets=masked, reduction="none")
    torch.testing.assert_close(loss_masked, per_tok[:, 4:].mean())
    assert torch.all(m_none[:, :4] == 0)
    torch.testing.assert_close(m_none[:, 4:], per_tok[:, 4:])


def test_per_token_losses_average_to_the_mean_loss():
    m = make()
    x = torch.randint(0, 61, (2, 12))
    y = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(m(x, targets=y, reduction="none").mean(), m(x, targets=y))
        # and they are each token's -log p(target)
        logp = m(x).log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(m(x, targets=y, reduction="none"), -logp)


def test_untrained_loss_is_near_uniform():
    """GPT-2 init gives near-uniform predictions: loss ~ ln(vocab)."""
    m = make()
    x = torch.randint(0, 61, (4, 16))
    with torch.no_grad():
        loss = m(x, targets=torch.roll(x, -1, 1)).item()
    assert abs(loss - torch.log(torch.tensor(61.0)).item()) < 0.1


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"n_embd": 30, "n_head": 4}, "not divisible by n_head"),
        ({"n_head": 4, "n_kv_head": 3}, "not divisible by n_kv_head"),
        ({"n_embd": 36, "n_head": 4, "n_kv_head": 4}, "head dimension must be even"),
    ],
)
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny_cfg(**kw)


def test_config_dict_round_trip_ignores_unknown_keys():
    cfg = tiny_cfg(n_kv_head=2, tie_embeddings=True, rope_theta=500.0)
    assert ModelConfig.from_dict({**cfg.to_dict(), "something_new": 1}) == cfg
    assert cfg.with_overrides(n_layer=3, vocab_size=None).n_layer == 3
    assert cfg.with_overrides(vocab_size=None).vocab_size == 61


def test_preset_parameter_counts():
    """d12 with a 32k vocabulary is GPT-2-small class, counted on the meta device (no memory)."""
    cfg = preset("d12", vocab_size=32768, max_seq_len=1024)
    assert (cfg.n_embd, cfg.n_head, cfg.intermediate_size) == (768, 12, 2048)
    with torch.device("meta"):
        m = GPT(cfg)
    n = m.num_params()
    assert 124e6 <= n <= 136e6, n  # 135.3M untied
    # by hand: embedding + head, and per layer 4 d^2 attention + 3 d*h MLP + 2 norms
    d, h, L, V = 768, 2048, 12, 32768
    assert n == 2 * V * d + L * (4 * d * d + 3 * d * h + 2 * d) + d
    assert m.num_params(exclude_embeddings=True) == n - V * d
    with pytest.raises(KeyError, match="unknown preset"):
        preset("d13", 100, 16)


def test_depth_dial_and_gqa_group():
    cfg = config_from_depth(4, vocab_size=100, max_seq_len=32, kv_group=2)
    assert (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim) == (256, 4, 2, 64)
    assert cfg.intermediate_size % 32 == 0 and cfg.intermediate_size >= 8 * 256 / 3


def test_flops_per_token():
    m = make()
    c = m.config
    non_embedding = m.num_params() - c.vocab_size * c.n_embd
    assert m.flops_per_token() == 6 * non_embedding + 12 * c.n_layer * c.n_embd * c.max_seq_len
    # GPT-2 small class: about 6 * 85M + attention ~ 0.6 GFLOP per token at T=1024
    with torch.device("meta"):
        big = GPT(preset("d12", 32768, 1024))
    assert 0.5e9 < big.flops_per_token() < 1.0e9


def test_flops_per_token_counts_the_tied_head():
    assert make(tie_embeddings=True).flops_per_token() == make().flops_per_token()


@pytest.mark.parametrize("tie", [False, True])
def test_save_load_round_trip(tmp_path, tie):
    m = make(seed=3, n_kv_head=2, tie_embeddings=tie, rope_theta=500.0)
    save_model(tmp_path / "base", m)
    loaded = load_model(tmp_path / "base").eval()
    assert loaded.config == m.config
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randint(0, 61, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    with safe_open(str(tmp_path / "base" / WEIGHTS), "pt") as f:
        keys = set(f.keys())
    assert ("lm_head.weight" in keys) is not tie  # a tied head is stored once
    assert (loaded.lm_head.weight is loaded.embed_tokens.weight) is tie
    assert not any("rope" in k for k in keys)  # rope tables are rebuilt, not saved


def test_load_model_errors_name_the_folder(tmp_path):
    with pytest.raises(InputError, match="no model.safetensors"):
        load_model(tmp_path / "missing")
    save_model(tmp_path / "a", make(n_layer=2))
    # a config.json that disagrees with the weights
    bigger = tiny_cfg(n_layer=3).to_dict()
    (tmp_path / "a" / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(InputError, match="do not match"):
        load_model(tmp_path / "a")


@pytest.mark.parametrize(("field", "value", "msg"), [
    ("n_layer", "four", 'n_layer must be a whole number >= 1, got "four"'),
    ("n_embd", 32.5, "n_embd must be a whole number >= 1, got 32.5"),
    ("n_head", 0, "n_head must be a whole number >= 1, got 0"),
    ("vocab_size", True, "vocab_size must be a whole number >= 1, got true"),
    ("rope_theta", "1e4", 'rope_theta must be a number, got "1e4"'),
    ("tie_embeddings", "no", 'tie_embeddings must be true or false, got "no"'),
    ("n_kv_head", 3, "n_head=4 is not divisible by n_kv_head=3"),
])
def test_config_json_with_wrong_types_is_one_line_error(tmp_path, field, value, msg):
    save_model(tmp_path / "a", make(n_layer=2))
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**cfg, field: value}))
    with pytest.raises(InputError) as e:
        load_model(tmp_path / "a")
    assert str(e.value) == f"{tmp_path / 'a' / 'config.json'}: {msg}"
    (tmp_path / "a" / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        load_model(tmp_path / "a")


@pytest.mark.parametrize("cut", ["half", "header", "empty", "garbage"])
def test_corrupt_weights_file_is_one_line_error(tmp_path, cut):
    save_model(tmp_path / "a", make(n_layer=2))
    path = tmp_path / "a" / WEIGHTS
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) // 2], "header": data[:20], "empty": b"",
                      "garbage": b"PK\x03\x04 not safetensors" * 10}[cut])
    with pytest.raises(InputError) as e:
        load_model(tmp_path / "a")
    assert str(e.value).startswith(f"{path}: not a readable safetensors file (") and "\n" not in str(e.value)


def test_weights_of_another_shape_name_the_file(tmp_path):
    save_model(tmp_path / "a", make(n_layer=2))
    wider = {**json.loads((tmp_path / "a" / "config.json").read_text()), "n_embd": 64, "intermediate_size": 128}
    (tmp_path / "a" / "config.json").write_text(json.dumps(wider))
    with pytest.raises(InputError) as e:
        load_model(tmp_path / "a")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'a' / WEIGHTS}: weights do not match config.json (size mismatch for ")
    assert "\n" not in msg


def test_dropout_acts_only_while_training():
    plain, dropped = make(seed=5), make(seed=5, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # same weights; dropout adds no parameters
    x = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        assert torch.equal(dropped(x), plain(x))  # eval mode: dropout is the identity
        dropped.train()
        assert not torch.allclose(dropped(x), plain(x))
    with pytest.raises(ValueError, match="dropout"):
        tiny_cfg(dropout=1.0)
