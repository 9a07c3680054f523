"""`gptlab rank label --web`: people order K answers per prompt in a browser (InstructGPT's
labeling interface, in small), written to the same `ranked` JSONL as the terminal labeler.

    app = create_rank_app(RankStore(load_candidates("candidates.jsonl"), "web.jsonl"))
    # GET /                       the ranking page (static/rank.html: plain HTML/CSS/JS, no build)
    # GET /api/info               the default rater name, the number of items, the rankings file
    # GET /api/next?rater=ada     the next item ada has not ranked (&after=ID skips past ID), progress
    # GET /api/items/{id}         one item (and ada's ranking of it, with ?rater=ada)
    # POST /api/rankings          {"rater": "ada", "item": 3, "order": [2, 0, 1]} -> 201, appended
    # GET /api/summary            rankings per rater, agreement of every two raters on shared items

Why its own small server, not a route on `gptlab serve`: ranking needs no model, so it starts in
a second on a laptop with only the candidates file, and it reads the same options (--run,
--candidates, --out, --rater) as the terminal labeler; `gptlab serve` loads a model to chat.

Every error is `{"error": {"message", "field", "code"}}` with a 4xx status; a request that fails
validation writes nothing (`gptlab.align.rank_store`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptlab.align.rank_store import RankRequestError, RankStore, check_rater

STATIC = Path(__file__).parent / "static"


class RankBody(BaseModel):
    """One ranking: the rater's name, the item's index, and its answer indices best first."""

    model_config = ConfigDict(extra="forbid")
    rater: str
    item: StrictInt
    order: list[StrictInt]


def _field(loc: tuple) -> str:
    """The request field a validation error is about, as a client would spell it.

    >>> _field(("body", "order", 1)), _field(("query", "rater")), _field(("body",))
    ('order[1]', 'rater', 'body')
    """
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def install_errors(app: FastAPI) -> None:
    """Every failure as `{"error": {"message", "field", "code"}}`: validation 400, our own checks
    their status (404 unknown item, 409 ranked twice), unknown routes 404."""

    @app.exception_handler(RankRequestError)
    async def ours(_: Request, e: RankRequestError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        err = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        field = _field(tuple(err.get("loc", ())))
        msg = f"{field}: {err.get('msg', 'invalid')}" if field != "body" else str(err.get("msg"))
        return JSONResponse(RankRequestError(400, msg, field).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(RankRequestError(e.status_code, str(e.detail), "path", "http").body(),
                            status_code=e.status_code)


def create_rank_app(store: RankStore, default_rater: str = "human", n_boot: int = 1000) -> FastAPI:
    """The ranking page and its JSON API over one `RankStore`. `default_rater` fills the page's
    name box until the person types their own (the page remembers it in localStorage)."""
    app = FastAPI(title="gptlab rank", version="1", summary="rank K answers per prompt for the reward model")
    install_errors(app)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "rank.html", media_type="text/html")

    @app.get("/api/info")
    def info() -> dict:
        """What the page needs before it knows who ranks: the default name, the item count, the file."""
        return {"default_rater": default_rater, "total": len(store.cands), "out": str(store.out)}

    @app.get("/api/next")
    def next_item(rater: str, after: int | None = None) -> dict:
        """The next item `rater` has not ranked (None when all are done) and their progress."""
        rater = check_rater(rater)
        store.refresh()
        i = store.next_item(rater, after)
        return {"item": None if i is None else store.item_json(i, rater), **store.progress(rater)}

    @app.get("/api/items/{item}")
    def get_item(item: int, rater: str | None = None) -> dict:
        store.refresh()
        return store.item_json(item, check_rater(rater) if rater is not None else None)

    @app.post("/api/rankings", status_code=201)
    def save(body: RankBody) -> dict:
        """Validate and append one ranking; the answer carries the rater's new progress."""
        r = store.save(body.rater, body.item, body.order)
        return {"saved": {"item": body.item, "order": r.order}, **store.progress(r.meta["rater"])}

    @app.get("/api/summary")
    def summary() -> dict:
        """Rankings per rater and, for every two raters with shared items, their agreement."""
        store.refresh()
        return store.summary(n_boot)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
