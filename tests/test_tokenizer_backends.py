"""One tokenizer interface, two backends: a model's own Hugging Face tokenizer (checked against
transformers: ids, `apply_chat_template`, the assistant mask) and gptlab's BPE through
`load_tokenizer`, both passing the same interface checks. No download: the Hugging Face
tokenizer is trained here with `tokenizers`, with a ChatML template like SmolLM2's."""

from __future__ import annotations

import json
from itertools import groupby

import jinja2
import pytest

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from gptlab.errors import InputError
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples
from gptlab.tokenizer.hf_tokenizer import HFTokenizer
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.tokenizer.protocol import TokenizerLike
from gptlab.tokenizer.special import ASSISTANT, END, ENDOFTEXT
from gptlab.tokenizer.template_chat import compile_template

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# SmolLM2-135M-Instruct's chat template, as in its tokenizer_config.json
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The same layout written with indented block tags: only right under transformers' trim_blocks
# and lstrip_blocks; uses bos_token, namespace, tojson (non-ASCII, no HTML escaping) and trim.
BLOCK_TEMPLATE = """\
{{ bos_token }}
{% set ns = namespace(first=true) %}
{% for message in messages %}
    {% if ns.first and message['role'] == 'system' %}
{{ {"lang": "fr-é", "tags": "<b>"} | tojson }}
    {% endif %}
    {% set ns.first = false %}
<|im_start|>{{ message['role'] }}
{{ message['content'] | trim }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""

TEXTS = [
    "Hello, world! It's a test: we'll see.\n\nNew paragraph   with   spaces.\t\tTabs.",
    "def add(a, b):\n    return a + b  # sum\n\nprint(add(2, 40))\r\n",
    "Numbers: 3.14159, 1,234,567 and 0xFF; 2024-03-15 12:00.",
    "中文分词测试：人工智能是计算机科学的一个分支。",
    "한국어 텍스트를 토큰으로 나눕니다.", "مرحبا بالعالم، هذا اختبار.",
    "Emoji 🎉👍🏽👨‍👩‍👧‍👦 🇯🇵 and symbols ∑∫√ ≠ ≤ ™ ©",
    "   leading and trailing   ", "\n\n\n", " ", "",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "What is 12*7?"},
     {"role": "assistant", "content": "84."},
     {"role": "user", "content": "And 中文? 🎉"},
     {"role": "assistant", "content": "中文分词 — 你好 🎉\n\nwith two lines"}],
    [{"role": "user", "content": [{"type": "text", "text": "Two "}, {"type": "text", "text": "parts"}]},
     {"role": "assistant", "content": "spaced  reply \t"}],
]


def as_hf(messages: list[dict]) -> list[dict]:
    """Text parts joined, as our renderer does before the template sees them."""
    return [m | {"content": m["content"] if isinstance(m["content"], str)
                 else "".join(p["text"] for p in m["content"])} for m in messages]


def train_hf(folder, template: str | None = SMOL_TEMPLATE) -> None:
    """A byte-level BPE like SmolLM2's (digits split, ByteLevel), saved as a model folder."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tk = tokenizers.Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=["<|endoftext|>", IM_START, IM_END], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(list(builtin_samples().values()) * 2 + TEXTS, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tk.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": IM_START, "eos_token": IM_END,
        "pad_token": IM_END, "unk_token": "<|endoftext|>", "add_bos_token": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 2048,
        "additional_special_tokens": [IM_START, IM_END],
    }
    if template is not None:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token",
                                "additional_special_tokens")}))


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smol") / "tokenizer"
    train_hf(folder)
    return folder


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gptlab") / "tokenizer"
    Tokenizer.train(list(builtin_samples().values()) * 2 + TEXTS, 700).save(folder)
    return folder


def reference(folder):
    return transformers.PreTrainedTokenizerFast.from_pretrained(str(folder))


def masked_runs(tok, ids: list[int], mask: list[int]) -> list[str]:
    """The text of each maximal run of masked tokens."""
    runs, i = [], 0
    for bit, group in groupby(mask):
        n = len(list(group))
        if bit:
            runs.append(tok.decode(ids[i:i + n]))
        i += n
    return runs


# ---------------------------------------------------------------------------- shared interface
def check_interface(tok, end_of_turn: str) -> None:
    """What every stage relies on, for either backend."""
    assert isinstance(tok, TokenizerLike)
    lengths = tok.token_byte_lengths()
    assert len(lengths) == tok.vocab_size
    assert tok.eot_id in tok.special_ids.values() and tok.is_special(tok.eot_id)
    for name, i in tok.special_ids.items():
        assert tok.token_id(name) == i and tok.is_special(i) and lengths[i] == 0
    with pytest.raises(KeyError):
        tok.token_id("<|not a token|>")
    for text in TEXTS + list(builtin_samples().values()):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert sum(lengths[i] for i in ids) == len(text.encode("utf-8")), text
        assert not any(tok.is_special(i) for i in ids)
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]
    # special-token text is plain text unless allowed
    forged = f"a{end_of_turn}b"
    eot = tok.token_id(end_of_turn)
    assert eot not in tok.encode(forged)
    assert tok.encode(forged, allowed_special="all") == tok.encode("a") + [eot] + tok.encode("b")
    assert tok.encode(forged, allowed_special={end_of_turn}) == tok.encode(forged, "all")
    # chat: the prompt is the conversation's prefix; the mask ends each reply at end-of-turn
    for conv in CONVERSATIONS:
        ids, mask = tok.render_conversation(conv)
        assert len(ids) == len(mask) and set(mask) == {0, 1}
        prompt = tok.render_prompt(conv[:-1])
        assert ids[:len(prompt)] == prompt  # the header is unmasked, the reply right after it
        assert mask[len(prompt) - 1] == 0 and mask[len(prompt)] == 1
        replies = [m["content"] for m in conv if m["role"] == "assistant"]
        assert masked_runs(tok, ids, mask) == [r + end_of_turn for r in replies]
        assert tok.render_conversation(conv, max_tokens=5) == (ids[:5], mask[:5])
    with pytest.raises(ValueError, match="end with a user message"):
        tok.render_prompt(CONVERSATIONS[0])


def test_hf_backend_passes_interface(hf_folder):
    tok = load_tokenizer(hf_folder)
    assert isinstance(tok, HFTokenizer) and tok.path == str(hf_folder)
    assert tok.eot_id == tok.token_id(IM_END)
    check_interface(tok, IM_END)


def test_gptlab_bpe_passes_interface(bpe_folder):
    tok = load_tokenizer(bpe_folder)
    assert isinstance(tok, Tokenizer) and tok.path == str(bpe_folder)
    check_interface(tok, END)


# ---------------------------------------------------------------------------- HF vs transformers
def test_ids_match_transformers(hf_folder):
    tok, ref = HFTokenizer.load(hf_folder), reference(hf_folder)
    assert tok.vocab_size == len(ref)
    assert tok.eot_id == ref.eos_token_id
    for text in TEXTS + list(builtin_samples().values()):
        assert tok.encode(text) == ref.encode(text, add_special_tokens=False), text
        assert tok.decode(tok.encode(text)) == ref.decode(ref.encode(text, add_special_tokens=False))
        assert tok.decode_bytes(tok.encode(text)).decode("utf-8") == text  # streaming's bytes
    chat = f"{IM_START}user\n你好 🎉{IM_END}\n"
    assert tok.encode(chat, allowed_special="all") == ref.encode(chat, add_special_tokens=False)


@pytest.mark.parametrize("template", [SMOL_TEMPLATE, BLOCK_TEMPLATE], ids=["smollm2", "blocks"])
def test_chat_matches_apply_chat_template(tmp_path, template):
    train_hf(tmp_path, template)
    tok, ref = HFTokenizer.load(tmp_path), reference(tmp_path)
    for conv in CONVERSATIONS:
        hf_conv = as_hf(conv)
        ids, mask = tok.render_conversation(conv)
        assert ids == ref.apply_chat_template(hf_conv, tokenize=True, return_dict=False)
        assert tok.decode(ids) == ref.apply_chat_template(hf_conv, tokenize=False)
        prompt = tok.render_prompt(conv[:-1])
        assert prompt == ref.apply_chat_template(
            hf_conv[:-1], add_generation_prompt=True, tokenize=True, return_dict=False)
        assert tok.decode(prompt).endswith(f"{IM_START}assistant\n")
        replies = [m["content"] for m in hf_conv if m["role"] == "assistant"]
        if template == BLOCK_TEMPLATE:
            replies = [r.strip() for r in replies]
        assert masked_runs(tok, ids, mask) == [r + IM_END for r in replies]
        # each masked run starts right after the assistant header, which stays unmasked
        starts = [i for i in range(1, len(mask)) if mask[i] and not mask[i - 1]]
        for i in starts:
            assert tok.decode(ids[:i]).endswith(f"{IM_START}assistant\n")


def test_template_environment_is_transformers(hf_folder):
    """raise_exception, tojson and whitespace control behave as in transformers."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    source = ("{% for m in messages %}\n  {{ m | tojson }}\n{% endfor %}"
              "{% if fail %}{{ raise_exception('no ' + m) }}{% endif %}")
    messages = [{"role": "user", "content": "é <b> \"q\""}]
    ours, theirs = compile_template(source), _compile_jinja_template(source)
    assert ours.render(messages=messages) == theirs.render(messages=messages)
    with pytest.raises(jinja2.TemplateError, match="no x"):
        ours.render(messages=[], fail=True, m="x")


def test_hf_reads_gptlab_folder_like_gptlab(bpe_folder):
    """The HF backend on gptlab's exported files gives gptlab's ids, mask and byte lengths:
    the prefix-based mask agrees with gptlab's own renderer (template with {% generation %})."""
    ours, hf = Tokenizer.load(bpe_folder), HFTokenizer.load(bpe_folder)
    assert hf.vocab_size == ours.vocab_size and hf.special_ids == ours.special_ids
    assert hf.eot_id == ours.eot_id == ours.token_id(ENDOFTEXT)
    assert hf.token_byte_lengths() == ours.token_byte_lengths()
    for text in TEXTS:
        assert hf.encode(text) == ours.encode(text)
    for conv in CONVERSATIONS:
        assert hf.render_conversation(conv) == ours.render_conversation(conv)
        assert hf.render_prompt(conv[:-1]) == ours.render_prompt(conv[:-1])
        assert ours.render_prompt(conv[:-1])[-1] == ours.token_id(ASSISTANT)


# ---------------------------------------------------------------------------- refusals
def test_load_tokenizer_refuses_empty_and_missing(tmp_path):
    with pytest.raises(InputError, match="tokenizer.tiktoken.*tokenizer.json") as e:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(InputError, match="no such folder"):
        load_tokenizer(tmp_path / "missing")


def test_broken_files_name_the_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{\"model\": 3}")
    with pytest.raises(InputError, match="tokenizer.json: not a Hugging Face tokenizer file"):
        load_tokenizer(tmp_path)
    train_hf(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{broken")
    with pytest.raises(InputError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)
    train_hf(tmp_path, template="{% for m in messages %}")
    with pytest.raises(InputError, match="tokenizer_config.json: chat_template is not valid Jinja"):
        load_tokenizer(tmp_path)


def test_no_chat_template_or_tool_parts(tmp_path, hf_folder):
    train_hf(tmp_path, template=None)
    tok = load_tokenizer(tmp_path)
    assert tok.encode("hi") == load_tokenizer(hf_folder).encode("hi")
    with pytest.raises(InputError, match="no chat_template"):
        tok.render_prompt([{"role": "user", "content": "hi"}])
    call = [{"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": [{"type": "tool_call", "text": "calculator: 2+2"}]}]
    with pytest.raises(ValueError, match="tool_call parts"):
        load_tokenizer(hf_folder).render_conversation(call)


def test_template_rewriting_history_is_refused(tmp_path):
    rewrites = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
                "<|im_start|>assistant\n[earlier]<|im_end|>\n{% else %}<|im_start|>{{ m['role'] }}\n"
                "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}")
    train_hf(tmp_path, rewrites)
    with pytest.raises(ValueError, match="differently"):
        load_tokenizer(tmp_path).render_conversation(CONVERSATIONS[1])
