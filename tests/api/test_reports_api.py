"""``GET /v1/reports``: the court report's three files over HTTP, at one checkpoint size."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from ledger.core.bundle import Bundle, verify_bundle
from tests.api import world as w


def test_the_three_files_agree_at_one_size(world: w.World, client: TestClient) -> None:
    h = world.headers("court-nl")
    html = client.get("/v1/reports", params={"artefact": "art-1"}, headers=h)
    assert html.status_code == 200, html.text
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["x-custody-verdict"] == "verified"
    size = html.headers["x-custody-tree-size"]
    sha = html.headers["x-custody-bundle-sha256"]
    assert f'name="custody-bundle-sha256" content="{sha}"' in html.text
    assert f"art-1-{size}.bundle.json" in html.text
    bundle = client.get("/v1/reports", params={"artefact": "art-1", "format": "bundle",
                                               "size": size}, headers=h)
    assert bundle.headers["content-type"] == "application/json"
    assert hashlib.sha256(bundle.content).hexdigest() == sha
    # What the court downloads verifies with the key it pinned, to the report's verdict.
    result = verify_bundle(Bundle.from_json(json.loads(bundle.content)),
                           log_key=w.log_signer().verifier_key)
    assert result.verdict == "verified"
    page = client.get("/v1/reports", params={"artefact": "art-1", "format": "verify-page",
                                             "size": size, "lang": "fr"}, headers=h)
    assert page.status_code == 200
    assert 'lang="fr"' in page.text
    assert "embedded-bundle" in page.text
    # A later entry does not change the files at the same size.
    world.custody("exam-de").register(w.key("exam-de"), case="CASE-1",
                                      digests=w.digests_of(b"another exhibit"),
                                      kind="file", exhibit="E-2", artefact_id="art-2")
    again = client.get("/v1/reports", params={"artefact": "art-1", "format": "bundle",
                                              "size": size}, headers=h)
    assert again.content == bundle.content


def test_pdf_in_german(world: w.World, client: TestClient) -> None:
    pytest.importorskip("weasyprint")
    pdf = client.get("/v1/reports", params={"artefact": "art-1", "format": "pdf",
                                            "lang": "de"}, headers=world.headers("court-nl"))
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert "attachment" in pdf.headers["content-disposition"]


def test_refusals_are_problems(world: w.World, client: TestClient) -> None:
    outsider = client.get("/v1/reports", params={"artefact": "art-1"},
                          headers=world.headers("exam-us"))
    assert outsider.status_code == 404
    assert outsider.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/reports", params={"artefact": "art-1"}).status_code == 401
    h = world.headers("court-nl")
    for params in ({"artefact": "art-1", "format": "docx"},
                   {"artefact": "art-1", "lang": "xx"}, {}):
        r = client.get("/v1/reports", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
    unknown = client.get("/v1/reports", params={"artefact": "nope"}, headers=h)
    assert unknown.status_code == 404
