"""``/docs`` (Swagger UI) and ``/redoc`` served from the package's own copies of their
JavaScript and CSS, so that they work on a network without internet (FastAPI's defaults load
them from a public CDN, which a closed factory network shows as a blank page).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from ..ui import STATIC_URL

VENDOR = f"{STATIC_URL}/vendor"

def docs_on(request: Request) -> None:
    """404 when KENSA_PUBLIC_DOCS is off (then there is no /openapi.json either), as for a
    path that does not exist."""
    if request.app.openapi_url is None:
        raise HTTPException(404)  # answered as every unknown path is (service/errors.py)


router = APIRouter(include_in_schema=False, dependencies=[Depends(docs_on)])


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png", with_google_fonts=False)
