"""``/docs`` works offline: Swagger UI is served from ``api/static/swagger-ui`` (vendored
``swagger-ui-dist``), never from a CDN.

The page names no ``http://`` or ``https://`` asset and every asset it names is served
with its content type; a headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright; no browser is ever downloaded) that may reach nothing but 127.0.0.1 renders
the operations from a real uvicorn server.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.docs_ui import ASSETS_DIR
from tests.api.server_proc import running

CHROMIUM = Path("/usr/bin/chromium")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_page_names_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html, "a CDN or external URL"
    assert "https://" not in html, "a CDN or external URL"
    assets = referenced(html)
    assert sorted(Path(a).suffix for a in assets) == [".css", ".js", ".png"]
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        got = client.get(url)
        assert got.status_code == 200, url
        assert CONTENT_TYPES[Path(url).suffix] in got.headers["content-type"], url
        assert got.content == (ASSETS_DIR / Path(url).name).read_bytes()
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html  # no online validator badge (validator.swagger.io)
    assert client.get("/openapi.json").status_code == 200


def test_oauth2_redirect_and_redoc(client: TestClient) -> None:
    page = client.get("/docs/oauth2-redirect")
    assert page.status_code == 200
    assert "http://" not in page.text
    assert "https://" not in page.text
    moved = client.get("/redoc", follow_redirects=False)
    assert moved.status_code == 307
    assert moved.headers["location"] == "/docs"
    assert client.head("/redoc").status_code == 200  # followed to /docs
    assert client.get("/docs/assets/no-such-file.js").status_code == 404


def test_vendored_files_match_their_readme() -> None:
    readme = (ASSETS_DIR / "README.md").read_text()
    listed = dict(re.findall(r"\| `([^`]+)` \| `([0-9a-f]{64})` \|", readme))
    files = {p.name for p in ASSETS_DIR.iterdir() if p.name != "README.md"}
    assert set(listed) == files
    for name, sha in listed.items():
        assert hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest() == sha, name
    assert "**5." in readme
    assert "Apache-2.0" in readme
    assert "sha512-" in readme


def test_swagger_ui_renders_offline_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    blocked: list[str] = []
    failed: list[str] = []
    with running(tmp_path) as server, sync_api.sync_playwright() as pw:
        spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
        expected = sum(1 for ops in spec["paths"].values() for method in ops
                       if method in ("get", "put", "post", "delete", "patch", "head"))
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()

            def only_loopback(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                if url.startswith(("http://127.0.0.1:", "data:")):
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    blocked.append(url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", only_loopback)
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(server.url + "/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock", timeout=30_000)
            operations = page.locator(".opblock").count()
            title = page.locator(".info .title").first.inner_text()
        finally:
            browser.close()
    assert operations == expected > 0  # every operation of the API, rendered
    assert "Custody Ledger API" in title
    assert blocked == [], f"the page tried to reach: {blocked}"
    assert failed == [], f"requests that failed: {failed}"
