"""The chat page in a real headless Chromium: type, send, watch the answer stream in, stop it
mid-stream (and the server frees the slot), conversations kept in localStorage, temperature
sent, retrieved sources and tool calls shown. Skipped when Chromium or Playwright is absent."""

from __future__ import annotations

import json
import time

import pytest
from test_serve_api import Server, make_run

from gptlab.infer.engine import Engine
from gptlab.infer.loading import load_for_inference
from gptlab.serve.api import create_app
from gptlab.serve.schemas import Limits
from gptlab.serve.worker import EngineWorker


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """An engine with no end-of-turn ids (every answer runs to max_tokens, so Stop lands
    mid-stream) and a small RAG index, so answers carry sources."""
    from gptlab.rag.index import build_index
    from gptlab.rag.retrieve import Retriever

    root = tmp_path_factory.mktemp("browser")
    docs = root / "docs"
    docs.mkdir()
    (docs / "plays.md").write_text("# Macbeth\n\nTomorrow, and tomorrow, and tomorrow.\n")
    build_index(docs, root / "idx", chunk_chars=60, overlap=0, progress=False)
    model, tok = load_for_inference(make_run(root / "x", max_seq_len=4096), device="cpu")
    worker = EngineWorker(Engine(model, eos_ids=set(), max_batch=4))
    app = create_app(worker, tok, model_name="browser-test", limits=Limits(max_tokens=4000),
                     retriever=Retriever.load(root / "idx"), rag_k=1)
    with Server(app) as srv:
        srv.worker = worker
        yield srv
    worker.stop()


def _set(page, selector: str, value: str) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input'));"
                          " el.dispatchEvent(new Event('change')); }", value)


def test_chat_page_streams_stops_and_remembers(site, browser) -> None:
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(site.url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent.includes('browser-test')")
    assert page.is_checked("#rag")  # the server has an index: RAG starts on

    # 1. a short answer streams in; the request carries the temperature we set
    sent = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/completions") else None)
    _set(page, "#temperature", "0.3")
    _set(page, "#max-tokens", "30")
    page.fill("#input", "Who says tomorrow?")
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.user >> text=Who says tomorrow?")
    page.wait_for_selector("#send:not([hidden])")  # finished
    answer = page.locator(".msg.assistant").last
    assert len(answer.locator(".body").inner_text()) > 0
    assert "plays.md:1" in answer.locator(".sources").inner_text()  # the retrieved source
    assert sent[-1]["temperature"] == 0.3 and sent[-1]["max_tokens"] == 30 and sent[-1]["stream"] is True

    # 2. a long answer: stop it mid-stream; the server cancels the request
    tokens0 = site.worker.tokens
    _set(page, "#max-tokens", "4000")
    page.fill("#input", "Tell me everything.")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.assistant')[1]?.innerText.length > 30")
    assert page.is_visible("#stop"), page.locator(".msg.assistant").last.inner_text()[-300:]
    page.click("#stop", timeout=2000)
    page.wait_for_selector(".msg.assistant .status >> text=stopped")
    deadline = time.time() + 5
    while site.worker.active and time.time() < deadline:
        time.sleep(0.05)
    assert site.worker.active == 0 and site.worker.tokens - tokens0 < 4000
    stopped_text = page.locator(".msg.assistant").last.locator(".body").inner_text()
    time.sleep(0.3)
    assert page.locator(".msg.assistant").last.locator(".body").inner_text() == stopped_text  # no more tokens

    # 3. the conversation survives a reload (localStorage); a new chat starts empty
    page.reload()
    page.wait_for_selector("#conversations li")
    assert page.locator(".msg").count() == 4
    assert "Who says tomorrow?" in page.locator("#conversations li").first.inner_text()
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0 and page.locator("#conversations li").count() == 2
    page.close()


def test_chat_page_shows_tool_calls(site, browser) -> None:
    """Tool parts arrive as `delta.tool` (the server's stream extension); the page must show them.
    A random model never writes a tool call, so this one answer is a canned stream in that format."""
    page = browser.new_page()
    page.set_default_timeout(15_000)
    chunks = [{"choices": [{"index": 0, "delta": {"content": "It is"}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"tool": {"type": "tool_call", "text": "calculator: 6*7"}},
                            "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"tool": {"type": "tool_result", "text": "42"}},
                            "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"content": " 42."}, "finish_reason": "stop"}]}]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    page.route("**/v1/chat/completions",
               lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    page.goto(site.url + "/")
    page.fill("#input", "What is 6*7?")
    page.click("#send")
    page.wait_for_selector(".part.tool_result")
    msg = page.locator(".msg.assistant").last
    assert "calculator: 6*7" in msg.locator(".part.tool_call").inner_text()
    assert msg.locator(".part.tool_result").inner_text().endswith("42")
    assert msg.locator(".body").inner_text().startswith("It is") and "42." in msg.locator(".body").inner_text()
    # the next request sends the tool parts back as the assistant's content (the chat contract)
    page.unroute("**/v1/chat/completions")
    stored = page.evaluate("JSON.parse(localStorage.getItem('gptlab.conversations'))[0].messages[1]")
    assert [p["type"] for p in stored["parts"]] == ["text", "tool_call", "tool_result", "text"]
    page.close()
