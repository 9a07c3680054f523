"""Options from dataclasses: flags, `--config` files (YAML/JSON/TOML) with flags overriding them,
clear errors naming the file and the option, and the resolved config that re-runs a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest
import tyro

from gptlab.commandline import RESOLVED_NAME, from_dict, load_file, parse, to_dict, write_resolved
from gptlab.errors import InputError


@dataclass
class Toy:
    """A toy command."""

    from_: Annotated[Path | None, tyro.conf.arg(name="from")] = None  # input folder
    steps: int | None = None  # the budget
    lr: float = 3e-4  # peak learning rate
    optimizer: Literal["adamw", "muon"] = "adamw"  # which optimizer
    tasks: tuple[str, ...] = ("a",)  # tasks to mix
    resume: bool = False  # continue
    mix: dict[str, int] | None = None  # counts per task


def test_flags_fill_the_dataclass():
    cfg = parse(Toy, ["--from", "x", "--steps", "5", "--tasks", "b", "c", "--resume"], "toy")
    assert cfg == Toy(from_=Path("x"), steps=5, tasks=("b", "c"), resume=True)


def test_a_config_file_sets_fields_and_flags_after_it_override(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("from: data/base\nsteps: 40\nlr: 0.001\ntasks: [x, y]\noptimizer: muon\nmix: {x: 3}\n")
    cfg = parse(Toy, ["--config", str(f), "--lr", "3e-3"], "toy")
    assert cfg == Toy(from_=Path("data/base"), steps=40, lr=3e-3, tasks=("x", "y"), optimizer="muon",
                      mix={"x": 3})
    assert parse(Toy, [f"--config={f}"], "toy").lr == 0.001


@pytest.mark.parametrize("suffix,text", [
    (".json", json.dumps({"steps": 7, "max-lr": 1})),
    (".toml", "steps = 7\nmax-lr = 1\n"),
])
def test_unknown_option_in_a_file_names_the_file_and_the_key(tmp_path, suffix, text):
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        parse(Toy, ["--config", str(f)], "toy")
    assert str(f) in str(e.value) and "'max-lr'" in str(e.value) and "unknown option" in str(e.value)


@pytest.mark.parametrize("data,bad", [
    ({"steps": "ten"}, "'steps'"), ({"lr": True}, "'lr'"), ({"optimizer": "sgd"}, "'optimizer'"),
    ({"tasks": 3}, "'tasks'"), ({"resume": "yes"}, "'resume'"),
])
def test_a_wrong_type_names_the_option(data, bad):
    with pytest.raises(InputError) as e:
        from_dict(Toy, data, "my.yaml")
    assert str(e.value).startswith("my.yaml: option") and bad in str(e.value)


def test_malformed_files_are_clear_errors(tmp_path):
    for name, text in (("a.yaml", "steps: [1,\n"), ("b.json", "{"), ("c.yaml", "- 1\n- 2\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError) as e:
            load_file(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(InputError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="needs a file"):
        parse(Toy, ["--config"], "toy")


def test_the_resolved_config_parses_back_to_the_same_config(tmp_path):
    cfg = Toy(from_=Path("runs/x/sft"), steps=3, lr=1e-4, optimizer="muon", tasks=("p", "q"), resume=True,
              mix={"p": 2})
    path = write_resolved(cfg, tmp_path, "toy")
    assert path.name == RESOLVED_NAME and path.read_text().startswith("# ")
    assert to_dict(cfg)["from"] == "runs/x/sft"
    assert parse(Toy, ["--config", str(path)], "toy") == cfg


def test_a_list_option_given_twice_is_refused_not_truncated():
    with pytest.raises(InputError, match=r"--tasks is given 2 times.*--tasks A B"):
        parse(Toy, ["--tasks", "a", "--tasks=b"], "toy")
    assert parse(Toy, ["--lr", "1", "--lr", "2"], "toy").lr == 2.0  # one value: the last wins, as usual


@pytest.mark.parametrize("name,text", [("deep.json", "[" * 100_000), ("deep.yaml", "[" * 100_000),
                                       ("deep.toml", "a = " + "[" * 100_000)])
def test_a_deeply_nested_config_file_is_a_clear_error(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match="not a valid config file") as e:
        load_file(tmp_path / name)
    assert name in str(e.value)


def test_a_recipe_preset_sets_size_and_training_settings_and_flags_still_win(tmp_path):
    from gptlab.commandline import recipe_names
    from gptlab.stages.pretrain import PretrainConfig, model_config

    assert "shakespeare-char" in recipe_names("pretrain")
    cfg = parse(PretrainConfig, ["--preset", "shakespeare-char", "--lr", "1e-3"], prog="gptlab pretrain")
    assert (cfg.optimizer, cfg.batch_size, cfg.ema, cfg.time_budget, cfg.lr) == ("muon", 16, 0.98, 300, 1e-3)
    m = model_config(cfg, vocab_size=267)
    assert (m.n_layer, m.n_embd, m.n_head) == (4, 128, 4)
    # A --config file sits above the recipe; a size preset is left alone.
    (tmp_path / "c.yaml").write_text("batch_size: 8\n")
    cfg = parse(PretrainConfig, ["--preset=shakespeare-char", "--config", str(tmp_path / "c.yaml")], prog="gptlab pretrain")
    assert (cfg.batch_size, cfg.optimizer) == (8, "muon")
    plain = parse(PretrainConfig, ["--preset", "nano"], prog="gptlab pretrain")
    assert (plain.preset, plain.optimizer, plain.ema) == ("nano", "adamw", None)
    with pytest.raises(InputError, match="unknown preset"):
        model_config(parse(PretrainConfig, ["--preset", "shakespeare"], prog="gptlab pretrain"), 267)
