"""The operator page: ``GET /ui/`` (``/`` leads there) and its key login.

The page is one server-rendered Jinja2 template (autoescaped: every text a client sent is
escaped) plus one small script of Kensa's own, ``static/kensa.js``, that talks to the same
``/v1`` API as any client. With KENSA_API_KEYS set, ``/ui/`` answers 401 with a login form
until ``POST /ui/session`` has put a valid key in an HttpOnly, SameSite=Strict cookie; the key
never appears in a URL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..deps import PAGE_HEADER, SESSION_COOKIE, valid_key
from ..errors import Forbidden, Unauthorized
from ..store.records import GOOD, Filters
from ..ui import STATIC_URL, TEMPLATES

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES)
COOKIE_MAX_AGE_S = 12 * 3600  # one shift and a half; then the page asks again
RECENT = 200  # records the page looks at for known sources and defect names


class Login(BaseModel):
    key: str = Field(min_length=1, max_length=512)


def signed_in(request: Request) -> bool:
    keys = request.app.state.settings.api_keys
    return not keys or valid_key(request.cookies.get(SESSION_COOKIE) or "", keys)


def known_names(store) -> tuple[list[str], list[str]]:
    """Sources and defect names (review labels other than good) of recent records, sorted."""
    if store is None:
        return [], []
    sources, defects = set(), set()
    rows, _ = store.records.page(Filters(), RECENT, None)
    reviewed, _ = store.records.page(Filters(reviewed=True), RECENT, None)
    for row in rows:
        if row["source"]:
            sources.add(row["source"])
    for row in reviewed:
        if row["review_label"] and row["review_label"] != GOOD:
            defects.add(row["review_label"])
    return sorted(sources), sorted(defects)[:9]


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    common = {"static": STATIC_URL, "page_header": PAGE_HEADER,
              "keys_on": bool(settings.api_keys)}
    if not signed_in(request):
        return templates.TemplateResponse(request, "login.html", common, status_code=401)
    store = request.app.state.store
    sources, defects = await run_in_threadpool(known_names, store)
    inspector = request.app.state.inspector
    info = inspector.info if inspector is not None else {}
    return templates.TemplateResponse(request, "page.html", common | {
        "sources": sources, "defects": defects, "records_on": store is not None,
        "model_name": info.get("name", ""), "model_version": str(info.get("version", ""))})


@router.post("/ui/session", status_code=204)
async def sign_in(request: Request, body: Login, x_kensa_page: Annotated[
        str | None, Header(alias=PAGE_HEADER)] = None) -> Response:
    if x_kensa_page is None:
        raise Forbidden(f"sign in from the page: the call must carry {PAGE_HEADER}")
    keys = request.app.state.settings.api_keys
    if keys and not valid_key(body.key, keys):
        raise Unauthorized("that is not a valid key for this server")
    response = Response(status_code=204)
    response.set_cookie(SESSION_COOKIE, body.key, max_age=COOKIE_MAX_AGE_S, path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.delete("/ui/session", status_code=204)
async def sign_out() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
