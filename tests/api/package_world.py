"""A sealed dispatch in the API test world: NFI's encryption key, an artefact of BKA's
dispatched to NFI with a package, and the package's bytes uploaded by exam-de.

The server treats a package as opaque bytes named by their SHA-256, so random bytes
stand in for the age file here (tests/integration/test_package_exchange.py moves real
sealed packages)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pyrage  # type: ignore[import-untyped]

from ledger.core import events as ev
from tests.api import world as w
from tests.conftest import digests_of


def nfi_key(world: w.World) -> str:
    """NFI's current encryption key id (enrolled by admin-nl on first use)."""
    store = world.store("admin-nl")
    record = store.state("orgkey/nfi")
    if record is None or record.get("current") is None:
        recipient = str(pyrage.x25519.Identity.generate().to_public())
        w.local_custody(store).enrol_org_key(w.key("admin-nl"), "nfi", recipient)
        return ev.org_key_id(recipient)
    return str(record["current"])


def package_of(data: bytes, plaintext_digests: dict[str, str], recipient: str
               ) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "format": "age-v1", "recipient": recipient, "also_to": [],
            "digests": plaintext_digests}


def sealed_dispatch(world: w.World, artefact: str, data: bytes | None = None, *,
                    upload: bool = True) -> str:
    """Register ``artefact`` (bka, CASE-1), dispatch it to nfi under lb-1 with a package
    of ``data`` (random by default), upload the package; return its SHA-256."""
    data = os.urandom(50_000) if data is None else data
    exam = world.custody("exam-de")
    digests = digests_of(w.EVIDENCE + artefact.encode())
    exam.register(w.key("exam-de"), case="CASE-1", digests=digests, artefact_id=artefact)
    package = package_of(data, digests.as_dict(), nfi_key(world))
    exam.dispatch(w.key("exam-de"), artefact=artefact, to_org="nfi", purpose="analysis",
                  legal_basis="lb-1", transfer_id="tr-" + artefact, package=package)
    if upload:
        assert world.client is not None
        resp = world.client.put(f"/v1/packages/{package['sha256']}", content=data,
                                headers={**world.headers("exam-de"),
                                         "Upload-Length": str(len(data))})
        assert resp.status_code == 201, resp.text
    return str(package["sha256"])
