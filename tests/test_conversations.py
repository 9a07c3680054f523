"""Conversation and preference readers: formats, file:line errors, lenient counts, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptlab.data.chats import Chat, Turn
from gptlab.data.conversations import chitchat_conversations, load_conversations
from gptlab.data.preferences import Ranking, load_preferences, load_rankings, save_rankings
from gptlab.errors import InputError

OPENAI = {
    "messages": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "assistant", "content": "hello"},
    ]
}
SHAREGPT = {
    "conversations": [
        {"from": "human", "value": "2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "thanks"},
        {"from": "gpt", "value": "welcome"},
    ]
}
ALPACA = {"instruction": "Translate to French", "input": "cat", "output": "chat"}
ALPACA_NO_INPUT = {"instruction": "Say hi", "input": "", "output": "hi"}


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- conversations


def test_auto_detects_each_format_per_record(tmp_path):
    p = write_jsonl(tmp_path / "mixed.jsonl", [OPENAI, SHAREGPT, "", ALPACA, ALPACA_NO_INPUT])
    convs, counts = load_conversations(p)
    assert convs[0] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},  # extra keys dropped
        {"role": "assistant", "content": "hello"},
    ]
    assert [m["role"] for m in convs[1]] == ["user", "assistant", "user", "assistant"]
    assert convs[1][3]["content"] == "welcome"
    assert convs[2] == [
        {"role": "user", "content": "Translate to French\n\ncat"},
        {"role": "assistant", "content": "chat"},
    ]
    assert convs[3][0] == {"role": "user", "content": "Say hi"}
    assert counts == {
        "records": 4,
        "kept": 4,
        "formats": {"messages": 1, "sharegpt": 1, "alpaca": 2},
        "skipped": {},
    }


def test_tool_parts_pass_through(tmp_path):
    rec = {
        "messages": [
            {"role": "user", "content": "12*7?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_call", "text": "calculator: 12*7"},
                    {"type": "tool_result", "text": "84"},
                    {"type": "text", "text": "84"},
                ],
            },
        ]
    }
    convs, _ = load_conversations(write_jsonl(tmp_path / "t.jsonl", [rec]))
    assert convs[0][1]["content"][0]["type"] == "tool_call"


def test_json_array_file_reports_lines(tmp_path):
    p = tmp_path / "data.json"
    p.write_text(
        json.dumps(
            [
                OPENAI,
                SHAREGPT,
                {"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]},
            ],
            indent=2,
        )
    )
    with pytest.raises(InputError) as e:
        load_conversations(p)
    text = p.read_text().splitlines()
    assert e.value.line is not None and text[e.value.line - 1].strip() == "{"
    assert "two user messages in a row" in str(e.value) and str(e.value).startswith(
        f"{p}:{e.value.line}:"
    )
    convs, counts = load_conversations(p, lenient=True)
    assert len(convs) == 2 and counts["skipped"] == {"invalid_conversation": 1}
    # the line is where the bad element starts: lines before it hold the two good records
    assert e.value.line > len(json.dumps(OPENAI, indent=2).splitlines())


def test_single_object_json_file(tmp_path):
    p = tmp_path / "one.json"
    p.write_text(json.dumps(SHAREGPT, indent=1))
    convs, counts = load_conversations(p)
    assert len(convs) == 1 and counts["formats"] == {"sharegpt": 1}


@pytest.mark.parametrize(
    "record, line_text, reason",
    [
        ("{not json", "line is not valid JSON", "bad_json"),
        ({"text": "plain"}, "not messages / sharegpt / alpaca", "unknown_format"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]},
            "two user messages in a row",
            "invalid_conversation",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": "hi"},
                    {"role": "system", "content": "late"},
                ]
            },
            "first message after any system message must be user",
            "invalid_conversation",
        ),
        (
            {"messages": [{"role": "tool", "content": "42"}]},
            "unknown role 'tool'",
            "invalid_conversation",
        ),
        ({"messages": []}, "empty conversation", "invalid_conversation"),
        (
            {"messages": [{"role": "user", "content": 5}]},
            "content must be a string",
            "invalid_conversation",
        ),
        (
            {"messages": [{"role": "user", "content": "only a question"}]},
            "no assistant message",
            "no_reply",
        ),
        (
            {
                "conversations": [
                    {"from": "human", "value": "hi"},
                    {"from": "function_call", "value": "x"},
                ]
            },
            "unknown speaker 'function_call'",
            "unknown_role",
        ),
        (
            {"conversations": [{"speaker": "human", "text": "hi"}]},
            "turn 0 is not",
            "invalid_conversation",
        ),
        ({"instruction": "Do", "input": None, "output": 3}, "'output' is a int", "not_string"),
        (["a", "list"], "got list", "unknown_format"),
    ],
)
def test_bad_record_names_file_and_line(tmp_path, record, line_text, reason):
    p = write_jsonl(tmp_path / "bad.jsonl", [OPENAI, "", record, ALPACA])
    with pytest.raises(InputError) as e:
        load_conversations(p)
    assert e.value.line == 3 and line_text in e.value.message
    assert str(e.value).startswith(f"{p}:3: ")
    convs, counts = load_conversations(p, lenient=True)
    assert len(convs) == 2
    assert counts["skipped"] == {reason: 1} and counts["records"] == 3 and counts["kept"] == 2


def test_forced_format_and_prompt_sets(tmp_path):
    p = write_jsonl(tmp_path / "f.jsonl", [ALPACA, OPENAI])
    with pytest.raises(InputError, match=r":2: alpaca record has no 'instruction'"):
        load_conversations(p, fmt="alpaca")
    convs, counts = load_conversations(p, fmt="alpaca", lenient=True)
    assert len(convs) == 1 and counts["skipped"] == {"missing_field": 1}
    with pytest.raises(InputError, match="unknown conversation format"):
        load_conversations(p, fmt="csv")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": "q?"}]}])
    assert load_conversations(prompts, require_reply=False)[0] == [
        [{"role": "user", "content": "q?"}]
    ]


def test_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_conversations(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    with pytest.raises(InputError, match="file is empty"):
        load_conversations(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(json.dumps(ALPACA).encode() + b'\n{"x": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not UTF-8") as e:
        load_conversations(tmp_path / "latin.jsonl")
    assert e.value.line == 2
    (tmp_path / "broken.json").write_text("[\n" + json.dumps(ALPACA) + ',\n{"instruction": \n')
    with pytest.raises(InputError, match="invalid JSON array") as e:
        load_conversations(tmp_path / "broken.json", lenient=True)
    assert e.value.line == 4


def test_chitchat_conversations():
    chats = [
        Chat(
            "a",
            "topic",
            None,
            [
                Turn("A", "hi"),
                Turn("B", "hey"),
                Turn("B", "how are you?"),
                Turn("A", "good"),
                Turn("B", "nice"),
                Turn("A", "bye"),
            ],
        ),
        Chat("b", None, None, [Turn("A", "anyone?")]),  # no reply at all: dropped
        Chat("c", None, None, []),
        Chat(
            "d", None, None, [Turn("B", "I start"), Turn("A", "ok"), Turn("B", " ")]
        ),  # opener is the user
    ]
    convs = chitchat_conversations(chats)
    assert convs == [
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hey\nhow are you?"},
            {"role": "user", "content": "good"},
            {"role": "assistant", "content": "nice"},
        ],
        [{"role": "user", "content": "I start"}, {"role": "assistant", "content": "ok"}],
    ]
    assert len(chitchat_conversations(chats, min_exchanges=2)) == 1


def test_chitchat_conversations_render(tmp_path):
    """Every conversation made from chats is valid input for the renderer."""
    from gptlab.tokenizer.chat import validate_messages

    chats = [
        Chat(str(i), None, None, [Turn("AB"[j % 3 % 2], f"t{j}") for j in range(i)])
        for i in range(8)
    ]
    for conv in chitchat_conversations(chats):
        validate_messages(conv)
        assert conv[-1]["role"] == "assistant"


# ---------------------------------------------------------------------------- preferences


def test_ranking_pairs_and_validation():
    prompt = [{"role": "user", "content": "?"}]
    r = Ranking(prompt, ["a", "b", "c", "d"], [3, 1, 0, 2])
    assert r.pairs() == [(3, 1), (3, 0), (3, 2), (1, 0), (1, 2), (0, 2)]
    assert len(r.pairs()) == 4 * 3 // 2
    assert r.conversation(3) == prompt + [{"role": "assistant", "content": "d"}]
    with pytest.raises(ValueError, match="at least 2 responses"):
        Ranking(prompt, ["a"], [0])
    with pytest.raises(ValueError, match="ties are not supported"):
        Ranking(prompt, ["a", "b", "c"], [0, 0, 1])
    with pytest.raises(ValueError, match="each of the 2 response indices"):
        Ranking(prompt, ["a", "b"], [0, 2])


def test_pair_and_ranked_formats(tmp_path):
    records = [
        {"prompt": "Tell a joke", "chosen": "A pun.", "rejected": "No."},
        {
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        },
        {
            "chosen": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "no"}],
        },
        {"prompt": "Rank these", "responses": ["mid", "worst", "best"], "ranking": [2, 0, 1]},
    ]
    rankings, counts = load_preferences(write_jsonl(tmp_path / "prefs.jsonl", records))
    assert rankings[0] == Ranking(
        [{"role": "user", "content": "Tell a joke"}], ["A pun.", "No."], [0, 1]
    )
    assert rankings[1].prompt[0]["role"] == "system" and rankings[1].responses == ["good", "bad"]
    assert rankings[2].prompt == [{"role": "user", "content": "q2"}] and rankings[2].responses == [
        "yes",
        "no",
    ]
    assert [rankings[3].responses[i] for i in rankings[3].order] == ["best", "mid", "worst"]
    assert counts == {
        "records": 4,
        "kept": 4,
        "pairs": 1 + 1 + 1 + 3,
        "formats": {"pair": 3, "ranked": 1},
        "skipped": {},
    }


@pytest.mark.parametrize(
    "record, message, reason",
    [
        ({"prompt": "q", "chosen": "a"}, "no 'rejected' field", "missing_field"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt is empty", "empty_prompt"),
        (
            {
                "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "chosen": "a",
                "rejected": "b",
            },
            "must end with a user message",
            "invalid_prompt",
        ),
        ({"prompt": 7, "chosen": "a", "rejected": "b"}, "not int", "invalid_prompt"),
        (
            {"prompt": "q", "chosen": {"text": "a"}, "rejected": "b"},
            "chosen must be a string",
            "not_string",
        ),
        (
            {"prompt": "q", "responses": ["a", "b"], "ranking": [0, 0]},
            "ties are not supported",
            "bad_ranking",
        ),
        (
            {"prompt": "q", "responses": ["a", "b"], "ranking": "0,1"},
            "'ranking' must be a list",
            "bad_ranking",
        ),
        (
            {"prompt": "q", "responses": ["a"], "ranking": [0]},
            "at least 2 responses",
            "bad_ranking",
        ),
        ({"prompt": "q", "answer": "a"}, "neither prompt/chosen/rejected", "unknown_format"),
    ],
)
def test_bad_preference_record(tmp_path, record, message, reason):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    p = write_jsonl(tmp_path / "bad.jsonl", [good, record, good])
    with pytest.raises(InputError) as e:
        load_preferences(p)
    assert e.value.line == 2 and message in e.value.message
    rankings, counts = load_preferences(p, lenient=True)
    assert len(rankings) == 2 and counts["skipped"] == {reason: 1}


def test_forced_preference_format(tmp_path):
    p = write_jsonl(tmp_path / "f.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(InputError, match=r":1: ranked record has no 'responses'"):
        load_preferences(p, fmt="ranked")
    with pytest.raises(InputError, match="unknown preference format"):
        load_preferences(p, fmt="tsv")


def test_save_load_round_trip(tmp_path):
    rankings = [
        Ranking(
            [{"role": "user", "content": "Grüße 🎉\nline two"}],
            ["x", "y", "z"],
            [1, 2, 0],
            meta={"rater": "rule", "scores": [0.1, 0.9, 0.5]},
        ),
        Ranking(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            ["a", "b"],
            [0, 1],
        ),
    ]
    path = tmp_path / "sub" / "rankings.jsonl"
    save_rankings(path, rankings)
    assert load_rankings(path) == rankings
    assert [p.name for p in path.parent.iterdir()] == ["rankings.jsonl"]  # no temp file left behind
    save_rankings(path, rankings[:1])  # overwrite in place
    assert load_rankings(path) == rankings[:1]


def test_parquet_and_hf_loader_read_whole_records(tmp_path):
    """Web-scale chat data (speedrun) comes as parquet or hub datasets: same records, same checks."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
        for i in range(5)
    ]
    path = tmp_path / "chats.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    convs, counts = load_conversations(path)
    assert counts["kept"] == 5 and convs[3][1]["content"] == "hello 3"
    pytest.importorskip("datasets")
    convs, _ = load_conversations(f"hf:parquet@data_files={path},limit=2")
    assert [c[0]["content"] for c in convs] == ["hi 0", "hi 1"]
    with pytest.raises(InputError, match="not a parquet file"):
        (tmp_path / "bad.parquet").write_text("nope")
        load_conversations(tmp_path / "bad.parquet")
