"""The ranking page (`gptlab rank label --web`) in a real headless Chromium: rank one item by
keyboard and one by drag-and-drop, check the JSONL written, reload and resume, see two raters'
agreement. Skipped when Chromium or Playwright is absent (as tests/test_serve_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_serve_api import Server

from gptlab.align.candidates import Candidates
from gptlab.align.rank_store import RankStore
from gptlab.align.rank_web import create_rank_app


@pytest.fixture
def site(tmp_path):
    items = [Candidates([{"role": "user", "content": f"Question {i}?"}], [f"Answer {i}{x}" for x in "ABC"])
             for i in range(3)]
    out = tmp_path / "web.jsonl"
    with Server(create_rank_app(RankStore(items, out), default_rater="ada", n_boot=200)) as srv:
        srv.out = out
        yield srv


def letters(page) -> str:
    """The answers' letters in screen order, best first: 'cab'."""
    return "".join(page.eval_on_selector_all("#answers li", "els => els.map(e => e.dataset.letter)"))


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_rank_by_keyboard_and_drag_then_resume(site, browser) -> None:
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(site.url + "/")
    page.wait_for_selector("#item-id >> text=#0")
    assert page.input_value("#rater") == "ada"  # the server's --rater, until the person types another
    assert page.inner_text("#progress") == "0 of 3 ranked" and letters(page) == "abc"

    # 1. keyboard: letters pick best first (the last is implied), Shift+arrows move, a digit sets the rank
    page.keyboard.press("c")
    page.keyboard.press("a")
    assert letters(page) == "cab"
    page.keyboard.press("ArrowUp")           # focus a (rank 2)
    page.keyboard.press("Shift+ArrowDown")   # a to rank 3
    assert letters(page) == "cba"
    page.keyboard.press("1")                 # the focused a to rank 1
    assert letters(page) == "acb"
    page.keyboard.press("Enter")
    page.wait_for_selector("#item-id >> text=#1")
    assert page.inner_text("#progress") == "1 of 3 ranked"
    [rec] = records(site.out)
    assert rec["ranking"] == [0, 2, 1] and rec["meta"] == {"source": "human", "rater": "ada", "item": 0}
    assert rec["responses"] == ["Answer 0A", "Answer 0B", "Answer 0C"]

    # 2. drag-and-drop: a dropped on c (rank 3) goes to rank 3; then the Save button
    page.locator("#answers li[data-letter=a]").drag_to(page.locator("#answers li[data-letter=c]"))
    assert letters(page) == "bca"
    page.click("#save")
    page.wait_for_selector("#item-id >> text=#2")
    assert [r["ranking"] for r in records(site.out)] == [[0, 2, 1], [1, 2, 0]]
    assert page.inner_text("#status") == "saved #1: b > c > a"

    # 3. a reload resumes at the first item ada has not ranked
    page.reload()
    page.wait_for_selector("#item-id >> text=#2")
    assert page.inner_text("#progress") == "2 of 3 ranked"

    # 4. a second rater on the same items: the summary shows their agreement
    page.fill("#rater", "bob")
    page.press("#rater", "Enter")
    page.wait_for_function("document.getElementById('progress').textContent === '0 of 3 ranked'")
    page.keyboard.press("a")
    page.keyboard.press("c")
    page.keyboard.press("Enter")  # item 0: a c b, as ada
    page.wait_for_selector("#item-id >> text=#1")
    page.click("#show-summary")
    row = page.locator("#agreement tbody tr").first
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[:4] == ["ada · bob", "1", "3", "1.00 [1.00, 1.00]"], cells
    assert cells[5].startswith("1.00") and cells[6].startswith("1.00")  # Kendall tau, top-1
    assert page.locator("#raters tbody tr").all_inner_texts() == ["ada\t2 of 3", "bob\t1 of 3"]
    assert page.is_hidden("#error")
    page.close()
