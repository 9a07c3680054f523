"""The web labeler's API (`gptlab rank label --web`): save, resume, bad input refused with the
field named and the file untouched, the same records as the terminal labeler, two raters' agreement."""

from __future__ import annotations

import doctest
import json

import pytest
from fastapi.testclient import TestClient

from gptlab.align import label_cli, rank_store, rank_web
from gptlab.align.agreement import agreement
from gptlab.align.candidates import Candidates, save_candidates
from gptlab.align.labeler import Labeler
from gptlab.align.rank_store import RankStore
from gptlab.align.rank_web import create_rank_app
from gptlab.data.preferences import load_preferences, load_rankings
from gptlab.errors import InputError


def cands(n: int = 4, k: int = 3) -> list[Candidates]:
    out = [Candidates([{"role": "user", "content": f"q{i}"}], [f"answer {i}.{j}" for j in range(k)],
                      meta={"task": "demo"}) for i in range(n)]
    out[1].contents = [[{"type": "text", "text": f"part {j}"}] for j in range(k)]  # tool parts are kept
    return out


def client(out, items=None, **kw) -> TestClient:
    return TestClient(create_rank_app(RankStore(items or cands(), out), **kw))


def post(c: TestClient, rater, item, order):
    return c.post("/api/rankings", json={"rater": rater, "item": item, "order": order})


def test_saves_each_ranking_at_once_and_resumes(tmp_path):
    out = tmp_path / "web.jsonl"
    c = client(out, default_rater="ada")
    assert c.get("/api/info").json() == {"default_rater": "ada", "total": 4, "out": str(out)}
    nxt = c.get("/api/next", params={"rater": "ada"}).json()
    assert nxt["item"]["id"] == 0 and nxt["done"] == 0 and nxt["total"] == 4
    assert nxt["item"]["responses"] == ["answer 0.0", "answer 0.1", "answer 0.2"]
    r = post(c, "ada", 0, [2, 0, 1])
    assert r.status_code == 201 and r.json()["done"] == 1 and r.json()["saved"]["order"] == [2, 0, 1]
    assert [x.order for x in load_rankings(out)] == [[2, 0, 1]]  # on disk before the answer came back
    assert post(c, "ada", 2, [0, 1, 2]).status_code == 201
    # skipping item 1 (after=0) goes on to the next unranked, wrapping round
    assert c.get("/api/next", params={"rater": "ada", "after": 0}).json()["item"]["id"] == 1
    assert c.get("/api/next", params={"rater": "ada", "after": 1}).json()["item"]["id"] == 3
    # a new server on the same file (a reload, another day) resumes: ada's items are skipped, bob's are not
    c2 = client(out)
    nxt = c2.get("/api/next", params={"rater": "ada"}).json()
    assert nxt["item"]["id"] == 1 and nxt["done"] == 2
    assert c2.get("/api/next", params={"rater": "bob"}).json()["item"]["id"] == 0
    assert c2.get("/api/items/0", params={"rater": "ada"}).json()["ranking"] == [2, 0, 1]
    for i in (1, 3):
        assert post(c2, "ada", i, [0, 1, 2]).status_code == 201
    done = c2.get("/api/next", params={"rater": "ada"}).json()
    assert done["item"] is None and done["done"] == done["total"] == 4


def test_records_equal_the_terminal_labelers(tmp_path):
    """Same candidates and orders -> the same records, so every reader of human.jsonl reads web.jsonl."""
    items = cands()
    keys = iter(["cab", "bac", "s", "acb", "q"])
    Labeler(items, tmp_path / "human.jsonl", ask=lambda _: next(keys), show=lambda s: None, rater="ada").run()
    c = client(tmp_path / "web.jsonl", items)
    for i, order in [(3, [0, 2, 1]), (0, [2, 0, 1]), (1, [1, 0, 2])]:  # any order of answering
        assert post(c, "ada", i, order).status_code == 201

    def records(name):
        lines = (tmp_path / name).read_text().splitlines()
        return sorted((json.loads(x) for x in lines), key=lambda r: r["meta"]["item"])

    assert records("web.jsonl") == records("human.jsonl")
    assert records("web.jsonl")[1]["meta"]["contents"][0] == [{"type": "text", "text": "part 0"}]
    assert load_preferences(tmp_path / "web.jsonl")[1]["pairs"] == 9  # what `reward train --data` reads


@pytest.mark.parametrize("body, status, field", [
    ({"rater": "ada", "item": 0, "order": [0, 1]}, 400, "order"),            # not all K answers
    ({"rater": "ada", "item": 0, "order": [0, 0, 1]}, 400, "order"),         # a repeat
    ({"rater": "ada", "item": 0, "order": [0, 1, 3]}, 400, "order"),         # no answer 3
    ({"rater": "ada", "item": 0, "order": [0, 1, "2"]}, 400, "order[2]"),    # not an integer
    ({"rater": "ada", "item": 0, "order": [0, 1, True]}, 400, "order[2]"),
    ({"rater": "ada", "item": 0, "order": "012"}, 400, "order"),
    ({"rater": "ada", "item": 9, "order": [0, 1, 2]}, 404, "item"),          # no such item
    ({"rater": "ada", "item": -1, "order": [0, 1, 2]}, 404, "item"),
    ({"rater": "ada", "item": "0", "order": [0, 1, 2]}, 400, "item"),
    ({"rater": "ada", "order": [0, 1, 2]}, 400, "item"),
    ({"rater": " ", "item": 0, "order": [0, 1, 2]}, 400, "rater"),
    ({"rater": "a" * 65, "item": 0, "order": [0, 1, 2]}, 400, "rater"),
    ({"rater": "a\nb", "item": 0, "order": [0, 1, 2]}, 400, "rater"),
    ({"item": 0, "order": [0, 1, 2]}, 400, "rater"),
    ({"rater": "ada", "item": 0, "order": [0, 1, 2], "extra": 1}, 400, "extra"),
    ([1, 2], 400, "body"),
])
def test_bad_rankings_get_4xx_naming_the_field_and_write_nothing(tmp_path, body, status, field):
    out = tmp_path / "web.jsonl"
    c = client(out)
    assert post(c, "ada", 1, [0, 1, 2]).status_code == 201
    before = out.read_bytes()
    r = c.post("/api/rankings", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"], err
    assert out.read_bytes() == before


def test_other_bad_requests(tmp_path):
    out = tmp_path / "web.jsonl"
    c = client(out)
    assert post(c, "ada", 1, [0, 1, 2]).status_code == 201
    r = post(c, "ada", 1, [2, 1, 0])  # one rater ranks an item once
    assert r.status_code == 409 and r.json()["error"]["field"] == "item"
    assert len(load_rankings(out)) == 1
    assert c.post("/api/rankings", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert c.get("/api/next").json()["error"]["field"] == "rater"
    assert c.get("/api/next", params={"rater": "ada", "after": "x"}).json()["error"]["field"] == "after"
    assert c.get("/api/items/7").status_code == 404 and c.get("/api/items/7").json()["error"]["field"] == "item"
    assert c.get("/api/nothing").status_code == 404


def test_summary_shows_two_raters_agreement(tmp_path):
    c = client(tmp_path / "web.jsonl", cands(4, 3))
    ada = {0: [0, 1, 2], 1: [2, 1, 0], 2: [1, 0, 2], 3: [0, 2, 1]}
    bob = {0: [0, 1, 2], 1: [2, 0, 1], 2: [0, 1, 2]}  # item 3 only ada ranked
    for i, o in ada.items():
        post(c, "ada", i, o)
    for i, o in bob.items():
        post(c, "bob", i, o)
    s = c.get("/api/summary").json()
    assert s["raters"] == {"ada": 4, "bob": 3} and s["total"] == 4
    [pair] = s["agreement"]
    assert (pair["a"], pair["b"], pair["items"]) == ("ada", "bob", 3)
    rs = load_rankings(tmp_path / "web.jsonl")
    want = agreement([r for r in rs if r.meta["rater"] == "ada" and r.meta["item"] < 3],
                     [r for r in rs if r.meta["rater"] == "bob"], n_boot=1000)
    assert pair["pairs"] == want["pairs"] and pair["rankings"] == want["rankings"]
    assert pair["pairs"]["n"] == 9 and pair["pairs"]["agreement"] == pytest.approx(7 / 9)
    assert pair["rankings"]["top1"] == pytest.approx(2 / 3)
    assert pair["rankings"]["kendall_tau"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)  # one swap in 3 pairs: tau 1/3


def test_refuses_files_it_cannot_safely_append_to(tmp_path):
    out = tmp_path / "human.jsonl"
    Labeler(cands(), out, ask=lambda _: "q", show=lambda s: None).save()
    with pytest.raises(InputError, match="terminal labeler"):  # its next save would drop ours
        RankStore(cands(), out)
    other = tmp_path / "web.jsonl"
    c = client(other)
    post(c, "ada", 0, [0, 1, 2])
    with pytest.raises(InputError, match="another candidates file"):
        RankStore(cands()[1:], other)
    rule = tmp_path / "rule.jsonl"
    rule.write_text(json.dumps({"prompt": "q0", "responses": ["a", "b"], "ranking": [1, 0]}) + "\n")
    with pytest.raises(InputError, match="not a labeler's file"):
        RankStore(cands(), rule)


def test_appends_after_a_hand_edit_and_rereads_a_changed_file(tmp_path):
    out = tmp_path / "web.jsonl"
    c = client(out)
    post(c, "ada", 0, [0, 1, 2])
    out.write_text(out.read_text().rstrip("\n"))  # a hand edit dropped the last newline
    other = client(out)  # a second server on the same file
    assert post(other, "bob", 0, [1, 0, 2]).status_code == 201
    assert post(c, "bob", 0, [1, 0, 2]).status_code == 409  # the first server sees bob's ranking
    assert [r.meta["rater"] for r in load_rankings(out)] == ["ada", "bob"]


def test_terminal_labeler_refuses_to_overwrite_web_rankings(tmp_path):
    save_candidates(tmp_path / "c.jsonl", cands())
    c = client(tmp_path / "web.jsonl")
    post(c, "ada", 0, [0, 1, 2])
    with pytest.raises(InputError, match="did not write"):
        label_cli.main(["--candidates", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "web.jsonl")])


def test_page_and_its_files_are_served(tmp_path):
    c = client(tmp_path / "web.jsonl")
    page = c.get("/")
    assert page.status_code == 200 and "/static/rank.js" in page.text
    for name in ("rank.js", "rank.css"):
        assert c.get(f"/static/{name}").status_code == 200


def test_docstring_examples():
    assert doctest.testmod(rank_store).failed == 0 and doctest.testmod(rank_web).failed == 0
