"""`gptlab sft` end to end on a tiny tokenizer and model: masking, learning, resume, LoRA outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gptlab.data.sft_batches import SFTBatches, eval_batches, render_examples
from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import load_model, save_model
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat import render_conversation
from gptlab.tokenizer.special import END, PAD
from gptlab.train.tracker import read_metrics

COLORS = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
THINGS = [
    "apple",
    "sky",
    "grass",
    "sun",
    "night",
    "snow",
    "plum",
    "carrot",
    "rose",
    "sea",
    "leaf",
    "coal",
]


def conversations() -> list[list[dict]]:
    """A small, learnable set: a fixed reply pattern, a system prompt, and calculator calls."""
    out = []
    for i, thing in enumerate(THINGS):
        for j, color in enumerate(COLORS[:4]):
            conv = [
                {"role": "user", "content": f"Is the {thing} {color}?"},
                {"role": "assistant", "content": f"I think the {thing} is {COLORS[(i + j) % 8]}."},
            ]
            if j == 0:
                conv.insert(0, {"role": "system", "content": "Answer briefly."})
            out.append(conv)
    for a in range(2, 10):
        out.append(
            [
                {"role": "user", "content": f"What is {a}*{a + 1}?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_call", "text": f"calculator: {a}*{a + 1}"},
                        {"type": "tool_result", "text": str(a * (a + 1))},
                        {"type": "text", "text": f"It is {a * (a + 1)}."},
                    ],
                },
            ]
        )
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sft")
    convs = conversations()
    text = "\n".join(
        m["content"] if isinstance(m["content"], str) else " ".join(p["text"] for p in m["content"])
        for c in convs
        for m in c
    )
    tok = Tokenizer.train([text] * 4, 300)
    tok.save(root / "tokenizer")
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_kv_head=2,
        intermediate_size=64,
        max_seq_len=64,
    )
    save_model(root / "base", GPT(cfg))
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs), encoding="utf-8")
    return {"root": root, "tok": tok, "data": data, "convs": convs}


def common(setup: dict, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "--from",
        str(setup["root"] / "base"),
        "--out",
        str(out),
        "--data",
        str(setup["data"]),
        "--mixture",
        "none",
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--seq-len",
        "64",
        "--val-frac",
        "0.1",
        "--eval-every",
        "10",
        "--sample-every",
        "100",
        "--num-samples",
        "2",
        "--sample-tokens",
        "12",
        "--save-every",
        "4",
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--warmup",
        "2",
        *extra,
    ]


def test_help_lists_the_flags(capsys):
    from gptlab.stages.sft import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--from",
        "--data",
        "--fmt",
        "--lenient",
        "--mixture",
        "--steps",
        "--time-budget",
        "--lora-rank",
        "--lora-alpha",
        "--lora-targets",
        "--lora-dropout",
        "--merge",
        "--resume",
        "--warmup",
        "--mix",
        "--config",
    ):
        assert flag in text


def test_targets_are_minus_one_exactly_where_the_mask_is_zero(setup):
    tok, T = setup["tok"], 48
    examples = render_examples(tok, setup["convs"], T + 1)
    assert len(examples) == len(setup["convs"])
    loader = SFTBatches(examples, 4, T, tok.token_id(PAD), shuffle=False)
    # Independent expectation: concatenate whole examples in order, start a new row when the next
    # one would overflow T + 1 tokens, pad the rest.
    rows, cur = [], ([], [])
    for ids, mask in examples:
        if cur[0] and len(cur[0]) + len(ids) > T + 1:
            rows.append(cur)
            cur = ([], [])
        cur = (cur[0] + ids, cur[1] + mask)
    rows.append(cur)
    seen = 0
    for _ in range(len(rows) // 4):
        x, y = next(loader)
        assert x.shape == y.shape == (4, T) and x.dtype == y.dtype == torch.int64
        for b in range(4):
            ids, mask = rows[seen]
            pad = T + 1 - len(ids)
            s, m = ids + [tok.token_id(PAD)] * pad, mask + [0] * pad
            assert x[b].tolist() == s[:T]
            assert y[b].tolist() == [s[t + 1] if m[t + 1] else -1 for t in range(T)]
            seen += 1
    assert seen > 0
    # What is learned is exactly the assistant's reply and its end-of-turn token.
    ids, mask = render_conversation(tok, setup["convs"][1])
    x, y = next(eval_batches([(ids, mask)], 1, len(ids) - 1, tok.token_id(PAD)))
    learned = [t for t in y[0].tolist() if t != -1]
    assert tok.decode(learned) == "I think the apple is blue." + END


def test_loader_resumes_exactly(setup):
    tok = setup["tok"]
    examples = render_examples(tok, setup["convs"], 49)
    a = SFTBatches(examples, 3, 48, tok.token_id(PAD), seed=5)
    ref = [next(a) for _ in range(12)]  # crosses epoch boundaries
    b = SFTBatches(examples, 3, 48, tok.token_id(PAD), seed=5)
    for _ in range(5):
        next(b)
    c = SFTBatches(examples, 3, 48, tok.token_id(PAD), seed=5)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for want in ref[5:]:
        got = next(c)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_sft_cli_learns_and_writes_the_stage_folder(setup, tmp_path):
    from gptlab.stages.sft import main

    out = tmp_path / "sft"
    assert main(common(setup, out, 40, "--lr", "3e-3", "--sample-every", "20")) == 0
    for name in (
        "model.safetensors",
        "config.json",
        "train_state.json",
        "optimizer.pt",
        "metrics.jsonl",
        "samples.md",
        "loss.png",
    ):
        assert (out / name).exists(), name
    records = read_metrics(out / "metrics.jsonl")
    val = [r["val_loss"] for r in records if "val_loss" in r]
    train = [r["loss"] for r in records if "loss" in r]
    assert len(val) == 5 and val[-1] < 0.75 * val[0], val
    assert sum(train[-5:]) < 0.75 * sum(train[:5])
    assert "## step 00040" in (out / "samples.md").read_text(encoding="utf-8")
    load_model(out)  # a plain stage folder


@pytest.mark.parametrize("mode", ["full", "lora", "lora+ema"])
def test_resume_equals_uninterrupted(setup, tmp_path, monkeypatch, mode):
    from gptlab.stages.sft import main

    extra = ["--lora-rank", "2", "--lora-dropout", "0.1"] if mode.startswith("lora") else []
    if mode.endswith("ema"):  # the adapter written at the end is the average, resumed exactly too
        extra += ["--ema", "0.5"]
    weights, state = (
        ("adapter.safetensors", "checkpoint/train_state.json")
        if extra
        else ("model.safetensors", "train_state.json")
    )
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(common(setup, ref, 8, *extra)) == 0

    calls = {"n": 0}
    real_next = SFTBatches.__next__

    def dying_next(self):  # the "kill": the 6th batch never comes; step 4's checkpoint is the last
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_next(self)

    monkeypatch.setattr(SFTBatches, "__next__", dying_next)
    with pytest.raises(KeyboardInterrupt):
        main(common(setup, run, 8, *extra))
    monkeypatch.undo()
    assert json.loads((run / state).read_text())["step"] == 4
    assert main(common(setup, run, 8, "--resume", *extra)) == 0

    a, b = load_file(str(ref / weights)), load_file(str(run / weights))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    if "--ema" in extra:  # and the adapter saved is not the last step's
        plain = tmp_path / "plain"
        assert main(common(setup, plain, 8, *extra[:-2])) == 0
        last = load_file(str(plain / weights))
        assert any(not torch.equal(a[k], last[k]) for k in a if k.endswith("lora_B"))

    def losses(p: Path) -> list:
        return [
            (r["step"], r.get("loss"), r.get("val_loss")) for r in read_metrics(p / "metrics.jsonl")
        ]

    assert losses(ref) == losses(run)


def test_lora_cli_writes_only_the_adapter_and_equals_merged(setup, tmp_path):
    from gptlab.model.lora import load_model_with_adapter
    from gptlab.stages.sft import main

    lora_flags = ["--lora-rank", "4", "--lora-targets", "q_proj,v_proj,down_proj"]
    out = tmp_path / "lora"
    assert main(common(setup, out, 6, *lora_flags)) == 0
    assert (out / "adapter.safetensors").exists() and (out / "adapter_config.json").exists()
    assert not (out / "model.safetensors").exists()
    adapter = load_file(str(out / "adapter.safetensors"))
    assert adapter and all(k.endswith((".lora_A", ".lora_B", ".rows")) for k in adapter)
    # the special tokens the conversations use train beside the adapters (in and out: untied head)
    rows = json.loads((out / "adapter_config.json").read_text())["token_rows"]
    tok = setup["tok"]
    assert tok.token_id("<|assistant|>") in rows and all(tok.is_special(i) for i in rows)
    base_rows = load_model(setup["root"] / "base").embed_tokens.weight[rows]
    assert adapter["embed_tokens.rows"].shape == base_rows.shape
    assert not torch.allclose(adapter["embed_tokens.rows"], base_rows)  # they trained
    assert any(
        float(v.abs().sum()) > 0 for k, v in adapter.items() if k.endswith("lora_B")
    )  # it trained
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert (cfg["rank"], cfg["alpha"], cfg["targets"]) == (
        4,
        8.0,
        ["q_proj", "v_proj", "down_proj"],
    )
    # The checkpoint for --resume holds the adapter alone, not a copy of the frozen base.
    assert set(load_file(str(out / "checkpoint" / "model.safetensors"))) == set(adapter)

    merged_out = tmp_path / "merged"
    assert main(common(setup, merged_out, 6, *lora_flags, "--merge")) == 0
    merged = load_model(merged_out).eval()
    with_adapter = load_model_with_adapter(out)
    idx = torch.randint(
        0, setup["tok"].vocab_size, (2, 20), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        torch.testing.assert_close(with_adapter(idx), merged(idx), rtol=1e-4, atol=1e-4)
        base = load_model(setup["root"] / "base").eval()
        assert not torch.allclose(base(idx), merged(idx), atol=1e-4)


def test_bad_data_file_names_file_and_line(setup, tmp_path):
    from gptlab.stages.sft import main

    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": setup["convs"][0]})
    bad.write_text(f'{good}\n{good}\n{{"messages": [{{"role": "robot", "content": "hi"}}]}}\n')
    argv = [
        "--from",
        str(setup["root"] / "base"),
        "--out",
        str(tmp_path / "o"),
        "--data",
        str(bad),
        "--mixture",
        "none",
        "--steps",
        "1",
    ]
    with pytest.raises(InputError, match=r"bad\.jsonl:3"):
        main(argv)


def test_mix_sets_one_tasks_count_and_rejects_what_it_cannot_read(setup, tmp_path):
    from gptlab.stages.sft import check_mix, gather_conversations, main
    from gptlab.tasks.mixture import DEFAULT_SIZES

    sizes = {name: 0 for name in DEFAULT_SIZES} | check_mix({"arithmetic": 7, "identity": 3})
    convs = gather_conversations("default", [], sizes=sizes)
    users = [c[0]["content"] for c in convs]
    assert len(convs) == 10 and len(set(users)) >= 7  # seven distinct arithmetic problems, identity repeats
    with pytest.raises(InputError, match="unknown task; the mixture has chitchat"):
        check_mix({"arith": 5})
    with pytest.raises(InputError, match="whole number"):
        check_mix({"arithmetic": -5})
    base = ["--from", str(setup["root"] / "base"), "--out", str(tmp_path / "o"), "--steps", "1"]
    # On the command line: TASK N pairs; an unknown task fails before anything loads.
    with pytest.raises(InputError, match="unknown task; the mixture has chitchat"):
        main([*base, "--mix", "arith", "5"])
    with pytest.raises(SystemExit) as e:
        main([*base, "--mix", "arithmetic", "many"])
    assert e.value.code == 2
    assert not (tmp_path / "o").exists()


def test_config_file_sets_the_run_a_flag_overrides_it_and_run_yaml_reruns_it(setup, tmp_path):
    """`gptlab sft --config file.yaml --lr X`: the file's values, the flag's override; the run
    writes <out>/run.yaml, and `--config <out>/run.yaml` is the same run, bit for bit."""
    import yaml

    from gptlab.stages.sft import main

    cfg = {
        "from": str(setup["root"] / "base"), "data": [str(setup["data"])], "mixture": "none",
        "steps": 6, "batch_size": 4, "seq_len": 48, "val_frac": 0.1, "lr": 5e-3, "warmup": 2,
        "eval_every": 3, "sample_every": None, "save_every": None, "seed": 7,
        "lora_rank": 2, "device": "cpu", "dtype": "fp32",
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    first = tmp_path / "first"
    assert main(["--config", str(path), "--lr", "3e-3", "--out", str(first)]) == 0
    state = json.loads((first / "checkpoint" / "train_state.json").read_text())
    train = state["train_config"]
    assert train["lr"] == 3e-3 and train["max_steps"] == 6 and train["warmup_steps"] == 2
    assert train["seed"] == 7 and train["sample_every"] is None and train["eval_every"] == 3
    assert (first / "adapter.safetensors").exists() and not (first / "samples.md").exists()
    resolved = yaml.safe_load((first / "run.yaml").read_text())
    assert resolved["lr"] == 3e-3 and resolved["batch_size"] == 4 and resolved["seq_len"] == 48
    assert resolved["from"] == str(setup["root"] / "base") and resolved["lora_rank"] == 2

    again = tmp_path / "again"
    assert main(["--config", str(first / "run.yaml"), "--out", str(again)]) == 0
    a, b = load_file(str(first / "adapter.safetensors")), load_file(str(again / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def losses(p: Path) -> list:
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in read_metrics(p / "metrics.jsonl")]

    assert losses(first) == losses(again) and len(losses(first)) == 9  # 6 train + 3 val records


def test_dropout_flag_replaces_the_bases_and_is_recorded(setup, tmp_path):
    """--dropout 0 turns off the base's residual dropout for the finetune (train-mode logits equal
    eval-mode logits) and config.json records it; without the flag the base's value is kept."""
    from gptlab.stages.sft import main

    base = tmp_path / "base"
    model = load_model(setup["root"] / "base")
    model.set_dropout(0.3)
    save_model(base, model)
    argv = [*common(setup, tmp_path / "x", 2), "--from", str(base), "--tokenizer", str(setup["root"] / "tokenizer")]
    for extra, expect in (((), 0.3), (("--dropout", "0"), 0.0)):
        out = tmp_path / f"sft{len(extra)}"
        assert main([*argv, "--out", str(out), *extra]) == 0
        assert json.loads((out / "config.json").read_text())["dropout"] == expect
    tuned = load_model(tmp_path / "sft2").train()
    x = torch.randint(0, setup["tok"].vocab_size, (2, 16))
    assert torch.equal(tuned(x), tuned.eval()(x))
    noisy = load_model(tmp_path / "sft0").train()
    assert not torch.equal(noisy(x), noisy.eval()(x))
    with pytest.raises(InputError, match="--dropout 1.5"):
        main([*argv, "--out", str(tmp_path / "bad"), "--dropout", "1.5"])
