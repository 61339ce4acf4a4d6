"""The interactive API documentation at ``/docs``, served offline.

FastAPI's default ``/docs`` page loads Swagger UI from a CDN, which an air-gapped police
network cannot reach. :func:`install_offline_docs` serves the same page with Swagger UI
from ``api/static/swagger-ui/`` (``swagger-ui-dist``, vendored byte for byte; version,
integrity and checksums in that directory's README.md) under ``/docs/assets/``, plus
FastAPI's own OAuth2 redirect page. ``/redoc`` (ReDoc exists only on a CDN) redirects to
``/docs``. Create the app with ``docs_url=None, redoc_url=None`` and call this once.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

ASSETS_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: Swagger UI options beyond FastAPI's defaults: no online validator (its badge would
#: call validator.swagger.io).
PARAMETERS = {"validatorUrl": None}


def install_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI from vendored assets), ``/docs/assets/*``,
    ``/docs/oauth2-redirect`` and a ``/redoc`` redirect on ``app``."""
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():  # pragma: no cover - packaging
        raise RuntimeError(f"the vendored Swagger UI is missing from {ASSETS_DIR}")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="swagger-ui-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + str(app.openapi_url), title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **PARAMETERS})

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(root + DOCS_URL, status_code=307)

    app.add_route(DOCS_URL, docs, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
