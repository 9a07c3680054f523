"""`gptlab export --format gguf` writes a GGUF that transformers' own GGUF loader reads back with our
logits, our greedy continuation and our tokenizer's ids (gptlab's BPE, or an imported model's
tokenizer.json); bad input is one clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader
from test_export_hf import VOCAB, tiny_model
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptlab import cli
from gptlab.errors import InputError
from gptlab.infer.sampling import generate
from gptlab.model.export_cli import GGUFType
from gptlab.model.gguf_export import GGUF_FILE, GGUF_TYPES, export_gguf, load_vocab
from gptlab.model.io import load_model, save_model
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat_template import chat_template
from gptlab.tokenizer.vocab import GPT4_PATTERN, NANOCHAT_PATTERN

TEXT = (
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune, 1601 or 1602.\n\n  ACT III. Scene 1.\n"
)
SAMPLE = "To be, or not to be: 1234567 arrows!\n\n  Whether 'TIS nobler? ünïcødé 🙂 naïve"
# max |logits - ours| on these tiny random models: bf16 measured 1.2e-3..1.6e-3, q8_0 3.4e-3..5.5e-3
TOLERANCE = {"f32": 1e-4, "bf16": 1e-2, "q8_0": 2e-2}
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "tokenizer"
    Tokenizer.train([TEXT * 10], vocab_size=VOCAB).save(folder, hf=False)  # no tokenizer.json
    return folder


def _stage(root: Path, tok_dir: Path | None = None, **kw) -> Path:
    """runs/<x>/base with a tiny model, and its tokenizer as the sibling tokenizer/."""
    save_model(root / "base", tiny_model(**kw))
    if tok_dir is not None:
        (root / "tokenizer").symlink_to(tok_dir, target_is_directory=True)
    return root / "base"


def _load(path: Path):
    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def _compare(stage: Path, path: Path, prompt: list[int], gguf_type: str) -> float:
    """Max |logits| difference to transformers' load of the GGUF; greedy 12 tokens must agree."""
    ours, theirs = load_model(stage).eval(), _load(path)
    x = torch.tensor([prompt])
    with torch.no_grad():
        diff = (ours(x) - theirs(x).logits).abs().max().item()
    assert diff < TOLERANCE[gguf_type], (gguf_type, diff)
    want = generate(ours, prompt, 12, temperature=0.0)
    got = theirs.generate(x, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    assert got[0, len(prompt) :].tolist() == want
    return diff


@pytest.mark.parametrize(
    "gguf_type,kw",
    [
        ("f32", {}),
        ("f32", {"n_kv_head": 2, "tie_embeddings": True}),
        ("bf16", {"n_kv_head": 2}),
        ("q8_0", {"n_kv_head": 2, "intermediate_size": 64}),
        ("q8_0", {"n_kv_head": 1, "tie_embeddings": True}),
    ],
    ids=["f32-mha", "f32-gqa-tied", "bf16-gqa", "q8_0-gqa", "q8_0-mqa-tied"],
)
def test_transformers_gguf_load_matches(tmp_path, tok_dir, gguf_type, kw):
    stage = _stage(tmp_path, tok_dir, **kw)
    path = export_gguf(stage, tmp_path / "m.gguf", gguf_type=gguf_type)
    tok = Tokenizer.load(tok_dir)
    _compare(stage, path, [tok.eot_id, *tok.encode("that is the question")], gguf_type)
    hf = _load(path)
    assert hf.config.tie_word_embeddings == kw.get("tie_embeddings", False)
    assert hf.config.num_key_value_heads == kw.get("n_kv_head", 4)


def test_metadata_and_tensor_types(tmp_path, tok_dir):
    stage = _stage(tmp_path, tok_dir, n_kv_head=2, tie_embeddings=True)  # ffn rows 48: not 32-aligned
    reader = GGUFReader(export_gguf(stage, tmp_path / "m.gguf", gguf_type="q8_0"))
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert meta["general.architecture"] == "llama"
    expect = {
        "context_length": 32, "embedding_length": 32, "block_count": 2, "feed_forward_length": 48,
        "attention.head_count": 4, "attention.head_count_kv": 2, "rope.dimension_count": 8,
        "rope.freq_base": 500.0, "vocab_size": VOCAB,
    }
    for key, value in expect.items():
        assert meta[f"llama.{key}"] == value, key
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    tok = Tokenizer.load(tok_dir)
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "llama-bpe"
    assert len(meta["tokenizer.ggml.tokens"]) == VOCAB and meta["tokenizer.ggml.merges"]
    assert meta["tokenizer.ggml.bos_token_id"] == meta["tokenizer.ggml.eos_token_id"] == tok.eot_id
    assert meta["tokenizer.ggml.eot_token_id"] == tok.special_ids["<|end|>"]
    assert meta["tokenizer.ggml.padding_token_id"] == tok.special_ids["<|pad|>"]
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.chat_template"] == chat_template()
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd
    assert len(types) == 2 + 2 * 9
    Q = GGMLQuantizationType
    assert types["token_embd.weight"] == types["blk.1.attn_q.weight"] == Q.Q8_0
    assert types["blk.0.ffn_up.weight"] == Q.Q8_0
    assert types["blk.0.ffn_down.weight"] == Q.F32  # rows of 48 do not fill 32-blocks: kept exact
    assert types["output_norm.weight"] == types["blk.0.attn_norm.weight"] == Q.F32


def test_tokenizer_from_gguf_gives_our_ids(tmp_path, tok_dir):
    path = export_gguf(_stage(tmp_path, tok_dir), tmp_path / "m.gguf")
    ours, theirs = Tokenizer.load(tok_dir), AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for text in (TEXT, SAMPLE, "1234567890 12 123", "  \n\n\t x"):
        assert theirs(text)["input_ids"] == ours.encode(text), text
        assert theirs.decode(ours.encode(text)) == text
    assert theirs.eos_token == theirs.bos_token == "<|endoftext|>" and theirs.pad_token == "<|pad|>"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "to be"}]
    ids = theirs.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert list(ids) == ours.render_conversation(chat)[0]


def test_model_vocab_larger_than_tokenizer_is_padded(tmp_path, tok_dir):
    stage = _stage(tmp_path, tok_dir, vocab_size=VOCAB + 20)
    path = export_gguf(stage, tmp_path / "m.gguf")
    tokens = GGUFReader(path).fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == VOCAB + 20 and tokens[-1] == f"[PAD{VOCAB + 19}]"
    _compare(stage, path, [1, 2, 3, 4], "f32")


def _imported_tokenizer(folder: Path) -> HFTokenizer:
    """An imported model's tokenizer folder: a byte-level BPE tokenizer.json (no tokenizer.tiktoken)."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    hf.train_from_iterator([TEXT * 10], trainer)
    folder.mkdir(parents=True)
    hf.save(str(folder / "tokenizer.json"))
    config = {"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
              "pad_token": None, "chat_template": CHATML}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return hf


def test_imported_model_exports_its_own_tokenizer(tmp_path):
    hf_tok = _imported_tokenizer(tmp_path / "smol" / "tokenizer")
    stage = _stage(tmp_path / "smol", vocab_size=hf_tok.get_vocab_size(), n_kv_head=2)
    assert cli.main(["export", "--from", str(stage), "--out", str(tmp_path / "out"), "--format",
                     "gguf", "--gguf-type", "f32"]) == 0
    path = tmp_path / "out" / GGUF_FILE
    meta = {k: f.contents() for k, f in GGUFReader(path).fields.items() if k.startswith("tokenizer")}
    assert meta["tokenizer.ggml.pre"] == "gpt2" and meta["tokenizer.chat_template"] == CHATML
    assert meta["tokenizer.ggml.bos_token_id"] == hf_tok.token_to_id("<|im_start|>")
    assert meta["tokenizer.ggml.eos_token_id"] == hf_tok.token_to_id("<|im_end|>")
    assert meta["tokenizer.ggml.token_type"][:3] == [3, 3, 3]  # the specials are control tokens
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in (TEXT, SAMPLE, "<|im_start|>user\nhi<|im_end|>\n"):
        assert theirs(text)["input_ids"] == hf_tok.encode(text).ids, text
    chat = [{"role": "user", "content": "Whether 'tis nobler"}]
    text = theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhether 'tis nobler<|im_end|>\n<|im_start|>assistant\n"
    _compare(stage, path, hf_tok.encode(text).ids, "f32")


def test_pre_tokenizer_names(tmp_path):
    """llama.cpp names the split regex; each byte-level shape maps to one, the rest are refused."""
    folder = tmp_path / "tok"
    _imported_tokenizer(folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    cases = [
        ({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, {**byte_level, "use_regex": True}]}, "smollm"),
        ({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT4_PATTERN}, "behavior": "Isolated",
             "invert": False}, {**byte_level, "use_regex": False}]}, "llama-bpe"),
        ({**byte_level, "use_regex": True}, "gpt2"),
        ({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": NANOCHAT_PATTERN}, "behavior": "Isolated",
             "invert": False}, {**byte_level, "use_regex": False}]}, "has no llama.cpp"),
        ({"type": "Metaspace", "replacement": "▁"}, "not a byte-level BPE"),
    ]
    for pre, want in cases:
        (folder / "tokenizer.json").write_text(json.dumps({**data, "pre_tokenizer": pre}))
        if want in ("smollm", "llama-bpe", "gpt2"):
            assert load_vocab(folder).pre == want
        else:
            with pytest.raises(InputError, match=want):
                load_vocab(folder)


def test_gptlab_tokenizer_with_another_pattern_is_refused(tmp_path):
    Tokenizer.train([TEXT], vocab_size=VOCAB, pattern=NANOCHAT_PATTERN).save(tmp_path / "t", hf=False)
    with pytest.raises(InputError, match="--pattern gpt4"):
        load_vocab(tmp_path / "t")


def test_bad_input_is_one_clear_error(tmp_path, tok_dir, capsys):
    def export(*flags: str) -> tuple[int, str]:
        code = cli.main(["export", "--format", "gguf", *flags])
        return code, capsys.readouterr().err

    code, err = export("--from", str(tmp_path / "empty" / "base"), "--out", str(tmp_path / "o.gguf"))
    assert code == 2 and err.startswith("error: ") and "model.safetensors" in err
    stage = _stage(tmp_path / "run", tok_dir)
    with pytest.raises(InputError, match="unknown GGUF type 'q4_k'"):
        export_gguf(stage, tmp_path / "o.gguf", gguf_type="q4_k")
    with pytest.raises(SystemExit) as e:  # the command line refuses it before any work
        cli.main(["export", "--format", "gguf", "--from", str(stage), "--out", "o.gguf",
                  "--gguf-type", "q4_k"])
    assert e.value.code == 2 and "q4_k" in capsys.readouterr().err
    for flags, msg in [
        (("--no-tokenizer",), "--no-tokenizer"),
        (("--dtype", "bfloat16"), "--gguf-type"),
        (("--tokenizer", str(tmp_path)), "tokenizer.json"),
    ]:
        code, err = export("--from", str(stage), "--out", str(tmp_path / "o.gguf"), *flags)
        assert code == 2 and err.startswith("error: ") and msg in err, (flags, err)
    code = cli.main(["export", "--from", str(stage), "--out", str(tmp_path / "hf"), "--gguf-type", "bf16"])
    assert code == 2 and "--format gguf" in capsys.readouterr().err
    save_model(tmp_path / "small" / "base", tiny_model(vocab_size=128))
    with pytest.raises(InputError, match="vocab_size is 128"):
        export_gguf(tmp_path / "small" / "base", tmp_path / "o.gguf", tokenizer_dir=tok_dir)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*"))  # nothing half-written


def test_existing_destination_needs_force(tmp_path, tok_dir):
    stage = _stage(tmp_path / "run", tok_dir)
    (tmp_path / "m.gguf").write_text("old")
    with pytest.raises(InputError, match="--force"):
        export_gguf(stage, tmp_path / "m.gguf")
    export_gguf(stage, tmp_path / "m.gguf", overwrite=True)
    assert GGUFReader(tmp_path / "m.gguf").fields["general.architecture"].contents() == "llama"


def test_gguf_type_choices_are_the_exporters():
    assert set(get_args(GGUFType)) == set(GGUF_TYPES)
