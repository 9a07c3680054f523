"""The OpenAI-compatible server: the official `openai` client against a real uvicorn on loopback,
continuous batching, cancellation, limits and errors, RAG citations, and schema fuzzing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Self

import httpx
import pytest
import torch

from gptlab.errors import InputError
from gptlab.infer.engine import Engine, SamplingParams
from gptlab.infer.loading import load_for_inference, make_engine
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.serve.api import create_app
from gptlab.serve.reply import ReplyDecoder, StopMatcher
from gptlab.serve.schemas import Limits
from gptlab.serve.worker import EngineWorker
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat import parse_assistant, render_prompt

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

TEXT = (
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
    "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. "
    "Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day. "
) * 20


def make_run(root: Path, max_seq_len: int = 512) -> Path:
    """A run folder like a real one: runs/x/tokenizer + runs/x/chat (a tiny random GPT)."""
    tok = Tokenizer.train([TEXT], 300)
    tok.save(root / "tokenizer", hf=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, n_kv_head=2,
                      intermediate_size=64, max_seq_len=max_seq_len)
    save_model(root / "chat", GPT(cfg))
    return root / "chat"


class Server:
    """uvicorn serving `app` in a background thread on a free loopback port."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def serve(stage: Path, **kw):
    """(Server, worker, tok) for a stage folder, built the way `gptlab serve` builds it."""
    model, tok = load_for_inference(stage, device="cpu")
    worker = EngineWorker(make_engine(model, tok, max_batch=kw.pop("max_batch", 8)))
    app = create_app(worker, tok, model_name="tiny-test", **kw)
    return Server(app), worker, tok


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "x")


@pytest.fixture(scope="module")
def server(run):
    srv, worker, tok = serve(run, limits=Limits(max_messages=8, max_chars=2000, max_tokens=200,
                                                 max_request_bytes=20_000))
    with srv:
        srv.worker, srv.tok, srv.stage = worker, tok, run
        yield srv
    worker.stop()
    assert not worker.alive


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)


HELLO = [{"role": "user", "content": "To be or not to be?"}]


def direct_greedy(stage: Path, messages: list[dict], n: int) -> str:
    """The reply text straight from a fresh Engine, to compare the server against."""
    model, tok = load_for_inference(stage, device="cpu")
    ids = make_engine(model, tok).generate_all([render_prompt(tok, messages)], n, temperature=0)[0]
    return "".join(p["text"] for p in parse_assistant(tok, ids) if p["type"] == "text")


# ---------------------------------------------------------------------------- contract (openai client)


def test_chat_non_streaming_matches_the_engine(server, client) -> None:
    r = client.chat.completions.create(model="tiny-test", messages=HELLO, max_tokens=12, temperature=0)
    assert r.object == "chat.completion" and r.model == "tiny-test"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert choice.message.content == direct_greedy(server.stage, HELLO, 12)
    prompt_len = len(render_prompt(server.tok, HELLO))
    assert r.usage.prompt_tokens == prompt_len and 1 <= r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == prompt_len + r.usage.completion_tokens


def test_chat_streaming_equals_non_streaming(client) -> None:
    full = client.chat.completions.create(model="tiny-test", messages=HELLO, max_tokens=15, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny-test", messages=HELLO, max_tokens=15, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_seeded_sampling_is_reproducible(client) -> None:
    kw = {"model": "tiny-test", "messages": HELLO, "max_tokens": 10, "temperature": 1.0, "top_p": 0.9, "seed": 123}
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    assert a == b


def test_completions_stream_and_not(client) -> None:
    r = client.completions.create(model="tiny-test", prompt="To be", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens <= 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny-test", prompt="To be", max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text
    echoed = client.completions.create(model="tiny-test", prompt="To be", max_tokens=8, temperature=0, echo=True)
    assert echoed.choices[0].text == "To be" + r.choices[0].text


def test_stop_strings(client) -> None:
    base = client.completions.create(model="tiny-test", prompt="a", max_tokens=40, temperature=0).choices[0].text
    assert len(base) > 4
    stop = base[2:4]
    r = client.completions.create(model="tiny-test", prompt="a", max_tokens=40, temperature=0, stop=[stop])
    assert r.choices[0].text == base[: base.index(stop)] and r.choices[0].finish_reason == "stop"


def test_tiny_temperature_is_greedy_not_an_error(client) -> None:
    """Found by the fuzzer: logits / 1e-300 overflow to inf and sampling failed."""
    greedy = client.completions.create(model="tiny-test", prompt="a", max_tokens=6, temperature=0)
    tiny = client.completions.create(model="tiny-test", prompt="a", max_tokens=6, temperature=1e-300)
    assert tiny.choices[0].text == greedy.choices[0].text


def test_models_and_health(server, client) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny-test"]
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["slots"] == 8 and h["rag"] is False


# ---------------------------------------------------------------------------- batching, slow clients, cancel


def test_concurrent_requests_share_decode_steps(server) -> None:
    async def one(c: httpx.AsyncClient) -> str:
        body = {"messages": HELLO, "max_tokens": 30, "temperature": 0, "stream": True}
        text = ""
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    d = json.loads(line[6:])["choices"][0]["delta"]
                    text += d.get("content", "")
        return text

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            return await asyncio.gather(*[one(c) for _ in range(8)])

    steps0, tokens0 = server.worker.steps, server.worker.tokens
    texts = asyncio.run(main())
    assert len(set(texts)) == 1  # greedy: batching changes nothing
    steps, tokens = server.worker.steps - steps0, server.worker.tokens - tokens0
    assert tokens / steps > 2, f"{tokens} tokens in {steps} steps: requests were not batched"


def endless_server(root: Path, max_batch: int = 4) -> tuple[Server, EngineWorker]:
    """A server whose engine has no end-of-turn ids: every reply runs its whole max_tokens
    (a random model says <|end|> within a few tokens), so tests can act mid-generation."""
    model, tok = load_for_inference(make_run(root, max_seq_len=4096), device="cpu")
    worker = EngineWorker(Engine(model, eos_ids=set(), max_batch=max_batch))
    limits = Limits(max_tokens=4000)
    return Server(create_app(worker, tok, model_name="endless", limits=limits)), worker


@pytest.fixture(scope="module")
def endless(tmp_path_factory):
    srv, worker = endless_server(tmp_path_factory.mktemp("endless") / "x")
    with srv:
        srv.worker = worker
        yield srv
    worker.stop()


def _wait_idle(server, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.worker.active == 0 and server.worker.waiting == 0:
            return True
        time.sleep(0.02)
    return False


LONG = {"messages": HELLO, "max_tokens": 4000, "temperature": 1.0}


def test_slow_client_does_not_block_others_and_disconnect_cancels(endless) -> None:
    tokens0 = endless.worker.tokens
    with httpx.Client(base_url=endless.url, timeout=30) as slow, \
            slow.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as r:
        lines = r.iter_lines()  # (kept: a dropped iterator closes the connection)
        next(lines)  # the role chunk; then this client stops reading
        quick = httpx.post(endless.url + "/v1/chat/completions", timeout=30,
                           json={"messages": HELLO, "max_tokens": 5}).json()
        assert quick["usage"]["completion_tokens"] == 5
        assert endless.worker.active == 1  # the slow one is still generating
    # leaving the `with` closes the connection mid-stream: the worker frees its slot
    assert _wait_idle(endless), "a disconnected client's request kept running"
    assert endless.worker.tokens - tokens0 < 4000 + 5


def test_abandoned_non_streaming_request_is_cancelled(endless) -> None:
    tokens0 = endless.worker.tokens
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(endless.url + "/v1/chat/completions", json=LONG, timeout=0.3)
    assert _wait_idle(endless, 8), "an abandoned non-streaming request kept running"
    assert endless.worker.tokens - tokens0 < 4000


# ---------------------------------------------------------------------------- limits and errors


@pytest.mark.parametrize(("kw", "param"), [
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 201}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x" * 2001}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}] * 5
      + [{"role": "user", "content": "z"}]}, "messages"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"seed": 309894001749900066816}, "seed"),  # found by a 3,000-example fuzz run: was a 503
])
def test_bad_chat_requests_get_openai_400(client, kw, param) -> None:
    args = {"model": "tiny-test", "messages": HELLO, **kw}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**args)
    err = e.value.body
    assert e.value.status_code == 400 and err["type"] == "invalid_request_error"
    assert err["message"] and (err["param"] or "").startswith(param)


def test_unknown_model_is_404_and_omitted_model_is_the_served_one(server, client) -> None:
    """As OpenAI and vLLM: a model name /v1/models does not list is 404 model_not_found, on both routes."""
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=2)
    err = e.value.body
    assert e.value.status_code == 404 and err["code"] == "model_not_found"
    assert err["type"] == "invalid_request_error" and err["param"] == "model" and "gpt-4o" in err["message"]
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="tiny-test-2", prompt="a", max_tokens=2)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # streaming: refused before any event is sent
        client.chat.completions.create(model="TINY-TEST", messages=HELLO, max_tokens=2, stream=True)
    tokens0 = server.worker.tokens
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "", "messages": HELLO, "max_tokens": 2})
    assert r.status_code == 404 and server.worker.tokens == tokens0  # nothing was generated
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": 2})
    assert r.status_code == 200 and r.json()["model"] == "tiny-test"


def test_malformed_oversized_and_unknown_requests(server) -> None:
    url = server.url + "/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(url, json={"messages": [{"role": "user", "content": "x" * 30_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the cap must still hold
        for _ in range(30):
            yield b" " * 1000

    r = httpx.post(url, content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(url)
    assert r.status_code == 405 and "error" in r.json()


def test_context_too_long_is_400(tmp_path) -> None:
    srv, worker, _ = serve(make_run(tmp_path / "short", max_seq_len=32))
    with srv:
        r = httpx.post(srv.url + "/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": "tomorrow " * 40}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    worker.stop()


def test_api_key(run, monkeypatch) -> None:
    srv, worker, _ = serve(run, api_key="s3cret")
    with srv:
        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            bad.models.list()
        assert e.value.body["code"] == "invalid_api_key"
        assert httpx.post(srv.url + "/v1/completions", json={"prompt": "a"}).status_code == 401
        good = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(model="tiny-test", prompt="a", max_tokens=2).usage.completion_tokens >= 1
        assert httpx.get(srv.url + "/health").status_code == 200  # liveness stays open
    worker.stop()


# ---------------------------------------------------------------------------- RAG


def test_rag_citations(run, tmp_path) -> None:
    from gptlab.rag.index import build_index
    from gptlab.rag.retrieve import Retriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fruit.md").write_text("# Fruit\n\nBananas are yellow.\n\nThe durian smells strongly.\n")
    (docs / "sea.md").write_text("# Sea\n\nThe ocean is salty.\n\nWhales sing under water.\n")
    build_index(docs, tmp_path / "idx", chunk_chars=40, overlap=0, progress=False)
    srv, worker, tok = serve(run, retriever=Retriever.load(tmp_path / "idx"), rag_k=2)
    with srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        ask = [{"role": "user", "content": "Why does the durian smell?"}]
        r = c.chat.completions.create(model="tiny-test", messages=ask, max_tokens=4)
        cites = r.model_extra["citations"]
        assert cites[0]["file"] == "fruit.md" and cites[0]["line"] == 5 and "durian" in cites[0]["snippet"]
        # the passages went into the prompt
        assert r.usage.prompt_tokens > len(render_prompt(tok, ask)) + 20
        chunks = list(c.chat.completions.create(model="tiny-test", messages=ask, max_tokens=4, stream=True))
        final = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert final[0].model_extra["citations"] == cites
        off = c.chat.completions.create(model="tiny-test", messages=ask, max_tokens=4, extra_body={"rag": False})
        assert "citations" not in off.model_extra and off.usage.prompt_tokens == len(render_prompt(tok, ask))
    worker.stop()


def test_rag_without_index_is_400(client) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-test", messages=HELLO, max_tokens=2, extra_body={"rag": True})
    assert e.value.body["param"] == "rag"


# ---------------------------------------------------------------------------- pieces


def test_reply_decoder_splits_tool_spans(server) -> None:
    tok = server.tok
    ids = tok.encode("It is<|tool_call|>calculator: 2+2<|tool_call_end|><|tool_result|>4<|tool_result_end|>"
                     " 4.<|end|>", allowed_special="all")
    dec = ReplyDecoder(tok)
    events = [e for i in ids for e in dec.push(i)] + dec.finish()
    text = "".join(s for k, s in events if k == "text")
    assert text == "It is 4."
    assert [e for e in events if e[0] != "text"] == [("tool_call", "calculator: 2+2"), ("tool_result", "4")]
    é = tok.encode("é")  # one character over two byte tokens: no replacement character midway
    dec = ReplyDecoder(tok)
    assert "".join(s for i in é for _, s in dec.push(i)) == "é"


def test_stop_matcher_catches_split_stops() -> None:
    m = StopMatcher(["\n\n", "END"])
    assert m.feed("ab\n") == ("ab", False)
    assert m.feed("c E") == ("\nc ", False)
    assert m.feed("N") == ("", False)
    assert m.feed("x") == ("ENx", False)
    assert m.feed("\n\nzz") == ("", True)


def test_worker_reports_engine_errors_and_survives() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, n_layer=1, n_embd=16, n_head=2, n_kv_head=2,
                            intermediate_size=32, max_seq_len=16))
    worker = EngineWorker(Engine(model, eos_ids={0}, max_batch=2))

    async def collect(prompt: list[int], n: int) -> list[tuple]:
        job = worker.submit(prompt, SamplingParams(max_new_tokens=n, temperature=0))
        events = []
        while not events or events[-1][0] == "token":
            events.append(await asyncio.wait_for(job.events.get(), 10))
        return events

    async def main():
        return await asyncio.gather(collect([1] * 20, 3), collect([1, 2], 4))

    too_long, ok = asyncio.run(main())
    assert too_long[-1][0] == "error" and "max_len" in too_long[-1][1]
    assert ok[-1] in (("done", "stop"), ("done", "length")) and len(ok) >= 2
    worker.stop()


def test_cli_help(capsys) -> None:
    from gptlab.serve.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--from", "--max-batch", "--api-key", "--rag", "--host", "GPTLAB_API_KEY"):
        assert flag in out


def test_cli_config_keeps_the_defaults_and_picks_the_most_aligned_stage(tmp_path) -> None:
    """`gptlab serve` options: the argparse version's defaults; --from else runs/<run>/{chat,grpo,rl,sft}."""
    import os

    from gptlab.commandline import parse
    from gptlab.serve.cli import ServeConfig, check, limits_of, stage_of

    cfg = parse(ServeConfig, ["--run", str(tmp_path / "r")], "gptlab serve")
    assert (cfg.host, cfg.port, cfg.max_batch, cfg.rag_k, cfg.device) == ("127.0.0.1", 8000, 16, 4, "auto")
    assert cfg.threads == max(1, (os.cpu_count() or 2) - 1) and cfg.log_level == "info"
    assert limits_of(cfg) == Limits()
    assert stage_of(cfg) == tmp_path / "r" / "chat"  # none exists: the first
    (tmp_path / "r" / "rl").mkdir(parents=True)
    assert stage_of(cfg) == tmp_path / "r" / "rl"
    cfg.max_batch = 0
    with pytest.raises(InputError, match="--max-batch must be at least 1"):
        check(cfg)


def test_cli_dtype_and_int8_decode_reach_the_engine(run, monkeypatch) -> None:
    """`gptlab serve --dtype bf16 --int8-decode`: the served engine runs prompts under bf16 autocast on
    matrices stored in bf16 once and decodes from int8 copies (uvicorn stubbed out: nothing listens)."""
    import uvicorn

    from gptlab.serve import cli

    built, served = [], []
    monkeypatch.setattr("gptlab.infer.loading.make_engine", lambda *a, **kw: built.append(make_engine(*a, **kw)) or built[-1])
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))
    assert cli.main(["--from", str(run), "--device", "cpu", "--dtype", "bf16", "--int8-decode", "--port", "1"]) == 0
    (engine,) = built
    assert served and served[0]["port"] == 1
    assert engine.autocast_dtype == torch.bfloat16 and engine._decode is not None and engine._decode.int8
    assert engine.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    default = cli.parse(cli.ServeConfig, ["--from", str(run)], "gptlab serve")
    assert default.dtype == "fp32" and not default.int8_decode  # exact by default, as before


def test_cli_serves_a_run_folder_with_env_api_key(run) -> None:
    import os
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "GPTLAB_API_KEY": "from-env"}
    proc = subprocess.Popen([sys.executable, "-m", "gptlab.serve.cli", "--from", str(run), "--port", str(port),
                             "--max-batch", "2", "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                health = httpx.get(url + "/health", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        assert health["slots"] == 2 and health["model"] == "x"
        assert httpx.get(url + "/v1/models").status_code == 401
        c = openai.OpenAI(base_url=url + "/v1", api_key="from-env", max_retries=0)
        assert c.models.list().data[0].id == "x"
        assert "<title>" in httpx.get(url + "/").text
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------------------- schema fuzzing


def test_openapi_fuzzing_never_gives_5xx(server) -> None:
    """25 generated requests per operation in CI; a long hunt: GPTLAB_FUZZ_EXAMPLES=2000."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    app = create_app(server.worker, server.tok, limits=Limits(max_tokens=4, default_max_tokens=4))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures, statuses = [], []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=int(os.environ.get("GPTLAB_FUZZ_EXAMPLES", "25")), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code, response.text))

        check()
    assert not failures, failures[:3]
    assert len(statuses) > 50 and any(s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
