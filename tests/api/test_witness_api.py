"""Witness endpoints (api/routes/witness.py) through the app of tests/api/conftest.py.

POST /v1/log/cosignatures stores a cosignature only if it verifies with the witness key
it names over the server's own checkpoint of that size; GET
/v1/log/checkpoints/witnessed serves the newest cosigned checkpoint with every line; a
verifier demanding a quorum of named witnesses gets exactly what they cosigned.
"""

from __future__ import annotations

import hashlib

import pytest

from ledger.core.checkpoint import cosign, verify_checkpoint, verify_cosignatures
from ledger.core.errors import InvalidSignature, NotFound, VerificationError
from ledger.core.witness import MAX_WITNESSES, verify_witnessed, witness_verifier_key
from ledger.store.remote import RemoteStore
from ledger.store.sql import SqlStore
from tests.api import world as w
from tests.api.conftest import TestClient

T = 1_790_000_000
LOG_KEY = w.log_signer().verifier_key


class Witness:
    def __init__(self, label: str) -> None:
        self.name = f"witness.{label}.example"
        self.seed = hashlib.sha256(b"api witness " + label.encode()).digest()
        self.key = witness_verifier_key(self.name, self.seed)

    def line(self, note: str, timestamp: int = T) -> str:
        return cosign(note, self.name, self.seed, timestamp)

    def body(self, size: int, note: str, timestamp: int = T) -> dict[str, object]:
        return {"size": size, "witness_key": self.key,
                "cosignature": self.line(note, timestamp)}


NFI, PJ = Witness("nfi"), Witness("pj")


@pytest.fixture
def grown(store: SqlStore) -> SqlStore:
    """The genesis'd ledger plus two entries: checkpoints of sizes 1, 2 and 3."""
    c = w.local_custody(store)
    c.add_org(w.key("admin-de"), "nfi", "NFI", "NL")
    c.add_org(w.key("admin-de"), "pj", "PJ", "FR")
    assert store.size() == 3
    return store


def note_of(store: SqlStore, size: int) -> str:
    return dict(store.checkpoints())[size]


def test_post_a_valid_cosignature_then_serve_it(client: TestClient, grown: SqlStore) -> None:
    note = note_of(grown, 3)
    body = NFI.body(3, note)
    resp = client.post("/v1/log/cosignatures", json=body)  # no token: public
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"size": 3, "witness_key": NFI.key,
                           "cosignature": body["cosignature"], "duplicate": False}
    got = client.get("/v1/log/checkpoints/witnessed")
    assert got.status_code == 200, got.text
    data = got.json()
    assert data["size"] == 3
    assert data["cosignatures"] == [{"witness_key": NFI.key,
                                     "cosignature": body["cosignature"]}]
    assert data["note"].startswith(note.rstrip("\n"))
    assert body["cosignature"] in data["note"]
    assert verify_checkpoint(data["note"], LOG_KEY).size == 3
    assert verify_cosignatures(data["note"], [NFI.key], 1) == [NFI.name]
    # The same checkpoint by size, and one without cosignatures.
    assert client.get("/v1/log/checkpoints/3/cosigned").json() == data
    plain = client.get("/v1/log/checkpoints/2/cosigned").json()
    assert plain == {"size": 2, "note": note_of(grown, 2), "cosignatures": []}


def test_no_witnessed_checkpoint_yet_is_404(client: TestClient, grown: SqlStore) -> None:
    resp = client.get("/v1/log/checkpoints/witnessed")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "not-found"


def test_bad_cosignatures_are_422_and_not_stored(client: TestClient, grown: SqlStore) -> None:
    note3, note2 = note_of(grown, 3), note_of(grown, 2)
    cases = [
        # a valid line, but over ANOTHER checkpoint than the one of that size
        ({"size": 3, "witness_key": NFI.key, "cosignature": NFI.line(note2)},
         "invalid-signature"),
        # a line by PJ presented as NFI's
        ({"size": 3, "witness_key": NFI.key, "cosignature": PJ.line(note3)},
         "verification-failed"),
        # a flipped signature byte
        ({"size": 3, "witness_key": NFI.key,
          "cosignature": NFI.line(note3)[:-6] + ("A" if NFI.line(note3)[-6] != "A" else "B")
          + NFI.line(note3)[-5:]}, None),
        # the log's own key (type 0x01) is not a witness key
        ({"size": 3, "witness_key": LOG_KEY, "cosignature": NFI.line(note3)}, None),
        ({"size": 3, "witness_key": NFI.key, "cosignature": "— not a line"}, None),
        ({"size": "3", "witness_key": NFI.key, "cosignature": NFI.line(note3)}, None),
        ({**NFI.body(3, note3), "extra": 1}, None),
    ]
    for body, code in cases:
        resp = client.post("/v1/log/cosignatures", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        if code is not None:
            assert resp.json()["code"] == code, resp.text
    assert grown.cosignatures(3) == {}
    assert client.get("/v1/log/checkpoints/witnessed").status_code == 404


def test_unknown_size_is_404(client: TestClient, grown: SqlStore) -> None:
    resp = client.post("/v1/log/cosignatures", json=NFI.body(99, note_of(grown, 3)))
    assert resp.status_code == 404, resp.text
    assert resp.json()["code"] == "not-found"
    assert client.get("/v1/log/checkpoints/99/cosigned").status_code == 404


def test_idempotent_and_the_first_line_is_kept(client: TestClient, grown: SqlStore) -> None:
    note = note_of(grown, 3)
    first = NFI.body(3, note)
    assert client.post("/v1/log/cosignatures", json=first).status_code == 201
    again = client.post("/v1/log/cosignatures", json=first)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    # The same witness cosigning the same checkpoint later: a different, valid line.
    later = NFI.body(3, note, T + 3600)
    assert later["cosignature"] != first["cosignature"]
    resp = client.post("/v1/log/cosignatures", json=later)
    assert resp.status_code == 200
    assert resp.json()["cosignature"] == first["cosignature"]
    assert grown.cosignatures(3) == {NFI.key: first["cosignature"]}


def test_witnesses_per_checkpoint_are_capped(client: TestClient, grown: SqlStore) -> None:
    note = note_of(grown, 2)
    crowd = [Witness(f"w{i}") for i in range(MAX_WITNESSES)]
    for wit in crowd:
        assert client.post("/v1/log/cosignatures", json=wit.body(2, note)).status_code == 201
    resp = client.post("/v1/log/cosignatures", json=NFI.body(2, note))
    assert resp.status_code == 422, resp.text
    assert "most kept" in resp.json()["detail"]
    assert len(grown.cosignatures(2)) == MAX_WITNESSES
    # A witness already stored is still answered; other checkpoints are not affected.
    assert client.post("/v1/log/cosignatures",
                       json=crowd[0].body(2, note)).status_code == 200
    assert client.post("/v1/log/cosignatures",
                       json=NFI.body(3, note_of(grown, 3))).status_code == 201
    served = client.get("/v1/log/checkpoints/2/cosigned").json()
    assert len(served["cosignatures"]) == MAX_WITNESSES
    assert verify_cosignatures(served["note"], [x.key for x in crowd], MAX_WITNESSES)


def test_quorum_of_two_needs_both_witnesses(client: TestClient, grown: SqlStore) -> None:
    note2, note3 = note_of(grown, 2), note_of(grown, 3)
    both = [NFI.key, PJ.key]
    assert client.post("/v1/log/cosignatures", json=NFI.body(3, note3)).status_code == 201
    served = client.get("/v1/log/checkpoints/witnessed").json()
    with pytest.raises(VerificationError, match="1 valid of 2 required"):
        verify_witnessed(served["note"], LOG_KEY, both, 2)
    assert client.get("/v1/log/checkpoints/witnessed",
                      params={"min_witnesses": 2}).status_code == 404
    # Both cosign the OLDER checkpoint 2: it is the newest with two witnesses.
    for wit in (NFI, PJ):
        assert client.post("/v1/log/cosignatures", json=wit.body(2, note2)).status_code == 201
    two = client.get("/v1/log/checkpoints/witnessed", params={"min_witnesses": 2}).json()
    assert two["size"] == 2
    assert verify_witnessed(two["note"], LOG_KEY, both, 2).witnesses == [NFI.name, PJ.name]
    assert client.get("/v1/log/checkpoints/witnessed").json()["size"] == 3
    for bad in (0, MAX_WITNESSES + 1, "x"):
        assert client.get("/v1/log/checkpoints/witnessed",
                          params={"min_witnesses": bad}).status_code == 422


def test_remote_store_round_trip(client: TestClient, grown: SqlStore) -> None:
    remote = RemoteStore(str(client.base_url), client=client)
    note = note_of(grown, 3)
    assert remote.witnessed_checkpoint() is None
    line = NFI.line(note)
    assert remote.add_cosignature(3, NFI.key, line) == line
    assert remote.add_cosignature(3, NFI.key, NFI.line(note, T + 1)) == line
    assert remote.cosignatures(3) == {NFI.key: line}
    size, cosigned = remote.witnessed_checkpoint() or (0, "")
    assert size == 3
    assert cosigned == remote.cosigned_note(3) == grown.cosigned_note(3)
    assert verify_cosignatures(cosigned, [NFI.key], 1) == [NFI.name]
    # Errors come back as the same ledger exceptions.
    with pytest.raises(NotFound):
        remote.add_cosignature(42, NFI.key, line)
    with pytest.raises(InvalidSignature):
        remote.add_cosignature(2, NFI.key, line)


def test_a_server_can_accept_only_its_configured_witnesses(grown: SqlStore) -> None:
    """Anyone may otherwise fill a checkpoint's witness slots with keys they made up."""
    from api.app import create_app

    app = create_app(grown, clock=w.now_ms, witness_keys=[NFI.key])
    with TestClient(app) as client:
        note = note_of(grown, 2)
        stranger = client.post("/v1/log/cosignatures", json=PJ.body(2, note))
        assert stranger.status_code == 403
        assert stranger.json()["type"].endswith("forbidden")
        assert client.post("/v1/log/cosignatures", json=NFI.body(2, note)).status_code == 201
    assert list(grown.cosignatures(2)) == [NFI.key]


def test_a_configured_witness_key_must_be_a_cosignature_key(grown: SqlStore) -> None:
    from api.app import create_app
    from ledger.core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        create_app(grown, witness_keys=[LOG_KEY])  # a log (0x01) key, not a witness key
