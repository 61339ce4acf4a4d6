"""The three files a court receives for one artefact, built from one verified bundle:
the report (HTML or PDF), the bundle file it reads (whose SHA-256 is printed on every
page), and the verification page that re-checks that bundle in a browser. Shared by
``custody report`` and ``GET /v1/reports``."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.core.bundle import Bundle, VerifyResult


@dataclass(frozen=True, slots=True)
class CourtDocuments:
    report: bytes
    bundle: bytes
    page: bytes
    bundle_sha256: str


def verify_command(bundle_name: str, log_key: str, evidence: str | None,
                   witnesses: Sequence[str], quorum: int) -> str:
    """The exact command a defence expert runs to check the bundle."""
    args = ["custody", "bundle", "verify", bundle_name, "--log-key", log_key]
    if evidence:
        args += ["--evidence", evidence]
    for key in witnesses:
        args += ["--witness", key]
    if quorum:
        args += ["--quorum", str(quorum)]
    return shlex.join(args)


def court_documents(bundle: Bundle, result: VerifyResult, *, fmt: str, lang: str,
                    log_key: str, bundle_name: str, page_name: str, evidence_name: str | None,
                    witnesses: Sequence[str], quorum: int, generated_at: int) -> CourtDocuments:
    """Render the report of ``result`` (verified from ``bundle``) as ``fmt`` (html|pdf)."""
    from ledger.court import render
    from ledger.court.model import build_report
    from ledger.court.verify_page import render_verify_page

    data = bundle.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    commands = (verify_command(bundle_name, log_key, evidence_name, witnesses, quorum),)
    model = build_report(bundle, result, log_key=log_key, bundle_sha256=digest,
                         bundle_name=bundle_name, verify_page_name=page_name,
                         generated_at=generated_at, evidence_name=evidence_name,
                         quorum=quorum, commands=commands)
    document = (render.render_pdf(model, lang) if fmt == "pdf"
                else render.render_html(model, lang).encode())
    page = render_verify_page(lang=lang, bundle=bundle.to_json(), log_key=log_key,
                              witnesses=tuple(witnesses), quorum=quorum,
                              title=model.exhibit or (model.artefact_id or ""))
    return CourtDocuments(document, data, page.encode(), digest)
