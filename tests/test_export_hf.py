"""`gptlab export` writes a folder that transformers loads as LlamaForCausalLM with our logits,
and `load_hf_folder` reads it back to the identical model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaForCausalLM

from gptlab import cli
from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.hf import export_hf
from gptlab.model.hf_import import load_hf_folder
from gptlab.model.io import save_model
from gptlab.tokenizer.bpe import Tokenizer

VOCAB = 300  # fits a tokenizer of 256 bytes + a few merges + 11 specials


def tiny_model(seed: int = 0, **kw) -> GPT:
    base = {
        "vocab_size": VOCAB,
        "n_layer": 2,
        "n_embd": 32,
        "n_head": 4,
        "n_kv_head": 4,
        "intermediate_size": 48,
        "max_seq_len": 32,
        "rope_theta": 500.0,
        "norm_eps": 1e-5,
    }
    torch.manual_seed(seed)
    m = GPT(ModelConfig(**{**base, **kw}))
    with torch.no_grad():  # unit norm gains would hide a norm-weight mix-up: randomise them
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return m.eval()


def hf_load(folder) -> LlamaForCausalLM:
    # transformers >= 5 names it `dtype` (4.x: `torch_dtype`); eager attention is the plain math.
    return LlamaForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()


@pytest.mark.parametrize(
    "kw",
    [{}, {"n_kv_head": 2}, {"tie_embeddings": True}, {"n_kv_head": 1, "tie_embeddings": True}],
    ids=["mha", "gqa", "tied", "mqa-tied"],
)
def test_transformers_logits_match(tmp_path, kw):
    m = tiny_model(**kw)
    save_model(tmp_path / "run" / "base", m)
    export_hf(tmp_path / "run" / "base", tmp_path / "hf", include_tokenizer=False)
    hf = hf_load(tmp_path / "hf")
    assert hf.config.num_key_value_heads == m.config.n_kv_head
    assert hf.config.tie_word_embeddings == m.config.tie_embeddings
    x = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = m(x), hf(x).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    # round trip: import(export(m)) == m, bit for bit
    back = load_hf_folder(tmp_path / "hf")
    assert back.config == m.config
    assert back.state_dict().keys() == m.state_dict().keys()
    for k, v in m.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(back.eval()(x), ours)


def test_folder_layout_and_config(tmp_path):
    m = tiny_model(n_kv_head=2)
    save_model(tmp_path / "base", m)
    out = export_hf(tmp_path / "base", tmp_path / "hf", include_tokenizer=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (32, 2, 4)
    assert (cfg["num_key_value_heads"], cfg["head_dim"], cfg["intermediate_size"]) == (2, 8, 48)
    assert (cfg["vocab_size"], cfg["max_position_embeddings"], cfg["rope_theta"]) == (
        VOCAB,
        32,
        500.0,
    )
    assert cfg["rms_norm_eps"] == 1e-5 and cfg["torch_dtype"] == "float32"
    assert cfg["hidden_act"] == "silu" and not cfg["attention_bias"] and not cfg["mlp_bias"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
    assert "lm_head.weight" in keys and "model.embed_tokens.weight" in keys
    assert all(k.startswith("model.") for k in keys - {"lm_head.weight"})
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folder left


def test_bfloat16_export_halves_the_file_and_imports_exactly(tmp_path):
    m = tiny_model()
    save_model(tmp_path / "base", m)
    export_hf(tmp_path / "base", tmp_path / "f32", include_tokenizer=False)
    assert (
        cli.main(
            [
                "export",
                "--from",
                str(tmp_path / "base"),
                "--out",
                str(tmp_path / "bf16"),
                "--no-tokenizer",
                "--dtype",
                "bfloat16",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size
    assert size("bf16") < 0.6 * size("f32")
    back = load_hf_folder(tmp_path / "bf16")
    for k, v in m.state_dict().items():  # bf16 values upcast exactly to fp32
        assert torch.equal(back.state_dict()[k], v.to(torch.bfloat16).float()), k


def _train_tokenizer(folder):
    text = "To be, or not to be, that is the question. " * 20
    tok = Tokenizer.train([text], vocab_size=290)
    tok.save(folder, hf=True)
    return tok


def test_export_with_tokenizer_end_to_end(tmp_path):
    """The CLI copies the tokenizer beside the weights; AutoTokenizer + the model work from it."""
    tok = _train_tokenizer(tmp_path / "run" / "tokenizer")
    save_model(tmp_path / "run" / "base", tiny_model(tie_embeddings=True))
    out = tmp_path / "hf"
    assert cli.main(["export", "--from", str(tmp_path / "run" / "base"), "--out", str(out)]) == 0
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["bos_token_id"] == cfg["eos_token_id"] == tok.eot_id
    assert cfg["pad_token_id"] == tok.special_ids["<|pad|>"]
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [tok.eot_id, tok.special_ids["<|end|>"]]
    hf_tok = AutoTokenizer.from_pretrained(out)
    assert hf_tok.model_max_length == 32  # the model's context, not the tokenizer's default
    text = "that is the question"
    assert hf_tok(text)["input_ids"] == tok.encode(text)
    hf = hf_load(out)
    x = torch.tensor([[tok.eot_id] + tok.encode(text)])
    with torch.no_grad():
        assert (hf(x).logits - load_hf_folder(out)(x)).abs().max().item() < 1e-4


def test_missing_tokenizer_is_a_clear_error(tmp_path, capsys):
    save_model(tmp_path / "run" / "base", tiny_model())
    code = cli.main(["export", "--from", str(tmp_path / "run" / "base"), "--out", str(tmp_path / "hf")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "tokenizer.json" in err and "--no-tokenizer" in err
    assert not (tmp_path / "hf").exists()


def test_tokenizer_larger_than_model_vocab_is_refused(tmp_path):
    _train_tokenizer(tmp_path / "run" / "tokenizer")
    save_model(tmp_path / "run" / "base", tiny_model(vocab_size=128))
    with pytest.raises(InputError, match="vocab_size is 128"):
        export_hf(tmp_path / "run" / "base", tmp_path / "hf")


def test_existing_destination_needs_force(tmp_path):
    save_model(tmp_path / "base", tiny_model(seed=1))
    dst = tmp_path / "hf"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    with pytest.raises(InputError, match="--force"):
        export_hf(tmp_path / "base", dst, include_tokenizer=False)
    export_hf(tmp_path / "base", dst, include_tokenizer=False, overwrite=True)
    assert not (dst / "old.txt").exists() and (dst / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "hf"]  # nothing left aside


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="model.safetensors"):
        export_hf(tmp_path / "nope", tmp_path / "hf", include_tokenizer=False)


def test_import_refuses_what_it_cannot_represent(tmp_path):
    save_model(tmp_path / "base", tiny_model())
    out = export_hf(tmp_path / "base", tmp_path / "hf", include_tokenizer=False)
    cfg = json.loads((out / "config.json").read_text())
    for change, msg in [
        ({"attention_bias": True}, "biases"),
        ({"hidden_act": "gelu"}, "silu"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0}}, "rope"),
        ({"model_type": "gpt2"}, "llama"),
    ]:
        (out / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(InputError, match=msg):
            load_hf_folder(out)
    # a legacy (transformers 4.x) config with rope_theta only still imports
    legacy = {k: v for k, v in cfg.items() if k != "rope_parameters"}
    (out / "config.json").write_text(json.dumps(legacy))
    assert load_hf_folder(out).config.rope_theta == 500.0


def test_export_dtype_choices_are_the_exporters_dtypes():
    """`--dtype` lists its choices without asking gptlab.model.hf; they must stay the same names."""
    from typing import get_args

    from gptlab.model.export_cli import DType
    from gptlab.model.hf import DTYPES

    assert set(get_args(DType)) == set(DTYPES)
